"""Miniature R-PRM world (issue #7): a task with exact first-error labels, a tiny SFT policy and a
tiny R-PRM judge, all built on a CPU.

    rl_prm.world.tasks   problems / corrupt (4 error kinds) / first_wrong_step / mini-ProcessBench / SFT examples
    rl_prm.world.policy  tiny Qwen2 policy SFT'd on gold + flawed solutions (cached, build.json has its accuracy)
    rl_prm.world.judge   tiny R-PRM judge SFT'd on recomputing teacher critiques (cached) + mini-ProcessBench eval
    python -m rl_prm.world --out DIR   build/reuse both, evaluate the judge at K=1,2,4,8, write report.md + PNG

Status (measured 2026-12-01 on 2 CPU cores: `rl-prm world` from an empty cache, alone on the
machine, 671 s wall = policy 136 s + judge 148 s + judge eval 57 s + RL 326 s; peak RSS 2.1 GB):
Policy (700 SFT steps, half flawed targets): held-out greedy 90.5%, sampled T=1 34%.
Judge (600 SFT steps from the policy): mini-ProcessBench (60 items, T=0.6) F1 = 20.4 / 34.1 / 31.8 /
30.0 at K = 1 / 2 / 4 / 8: K=8 > K=1, but it peaks at K=2. Step by step at K=8 it calls 77.6% of
correct steps correct and 62.1% of first-error steps wrong (K=1: 73.4% / 44.8%). Its weakness is
measured: it copies a step's claimed result instead of recomputing it (the policy computes "a op b"
right 103/111 times in its own prompt, 21/111 times inside the 590-token R-PRM prompt).
RL (recipes/tiny_cpu.yaml: RLOO, lr 5e-5 x 4 PPO epochs, 10 steps x 8 prompts x 4 samples, 2 seeds):
sampled held-out accuracy (4 samples/problem) 34.4% -> min-form 44.1% [43.0, 45.2] (+9.8, every seed
improves), VR-only 45.6% [43.5, 47.8] (+11.2; ranges overlap with min-form: no clear difference),
sum-form 35.4% [33.2, 37.5] (+1.0; min-form beats it, ranges disjoint). Greedy accuracy falls in
every arm (87 -> 74.5 / 73.0 / 63.5). Steps per response 4.42 -> 4.6-4.8 in every arm (no hacking).
"""
