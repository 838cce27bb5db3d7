"""Miniature R-PRM world (issue #7): a task with exact first-error labels, a tiny SFT policy and a
tiny R-PRM judge, all built on a CPU.

    rl_prm.world.tasks   problems / corrupt (4 error kinds) / first_wrong_step / mini-ProcessBench / SFT examples
    rl_prm.world.policy  tiny Qwen2 policy SFT'd on gold + flawed solutions (cached, build.json has its accuracy)
    rl_prm.world.judge   tiny R-PRM judge SFT'd on recomputing teacher critiques (cached) + mini-ProcessBench eval
    python -m rl_prm.world --out DIR   build/reuse both, evaluate the judge at K=1,2,4,8, write report.md + PNG

Status (measured 2026-11-23 on 2 CPU cores with `rl-prm world`): NOT yet at the issue's targets.
Policy (700 SFT steps, half flawed targets, 241 s): held-out greedy 90.5%, sampled T=1 34%.
Judge (600 SFT steps from the policy; 238 s alone, 561 s beside the test suite): mini-ProcessBench
F1 at T=0.6 = 20.4 / 34.1 / 31.8 / 30.0 for K = 1 / 2 / 4 / 8 (K=8 > K=1, but it peaks at K=2:
most false "No"s on correct steps are systematic, not sampling noise).
RL, 15 steps x 2 seeds, shared engines (609 s): sampled held-out accuracy 34.8% -> min-form 35.0%
[34.5, 35.5], VR-only 37.8% [33.5, 42.0], sum-form 37.8% [35.0, 40.5]; greedy falls in every arm.
"""
