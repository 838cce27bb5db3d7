"""Miniature R-PRM world (issue #7): a task with exact first-error labels, a tiny SFT policy and a
tiny R-PRM judge, all built on a CPU.

    rl_prm.world.tasks   problems / corrupt (4 error kinds) / first_wrong_step / mini-ProcessBench / SFT examples
    rl_prm.world.policy  tiny Qwen2 policy SFT'd on gold + flawed solutions (cached, build.json has its accuracy)
    rl_prm.world.judge   tiny R-PRM judge SFT'd on recomputing teacher critiques (cached) + mini-ProcessBench eval
    python -m rl_prm.world --out DIR   build/reuse both, evaluate the judge at K=1,2,4,8, write report.md + PNG

Status (measured 2026-11-23 on 2 CPU cores): NOT yet at the issue's targets.
Policy (700 SFT steps, half flawed targets, 241 s): held-out greedy 90.5%, sampled T=1 34%.
Judge (600 SFT steps from the policy, 238 s; answer step checked by counting operations):
mini-ProcessBench F1 at T=0.6 = 33.6 / 16.3 / 21.2 / 24.6 for K = 1 / 2 / 4 / 8 -- it does not
rise with K: its false "No"s on correct steps are systematic, not sampling noise.
RL, 15 steps x 2 seeds (rl-prm world, 652 s): sampled accuracy 34.8% -> min-form 38.8% [32.5, 45.0],
VR-only 37.8% [33.5, 42.0], sum-form 32.0% [29.0, 35.0]; greedy accuracy falls in every arm.
"""
