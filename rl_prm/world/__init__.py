"""Miniature R-PRM world (issue #7): a task with exact first-error labels, a tiny SFT policy and a
tiny R-PRM judge that really learn on a CPU.

    rl_prm.world.tasks   problems / corrupt / first_wrong_step / mini-ProcessBench / SFT examples
    rl_prm.world.policy  tiny Qwen2 policy SFT'd on gold + flawed solutions (cached)
    rl_prm.world.judge   tiny R-PRM judge SFT'd on recomputing teacher critiques (cached)
"""
