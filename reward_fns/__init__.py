"""Reward functions loadable by verl's custom_reward_function (path=reward_fns/<file>.py, name=compute_score).

reward_fns.math_verify_reward: verifiable 0/1 math reward on math_verify (compute_score, score_detail,
STATS/get_stats/reset_stats).
"""
