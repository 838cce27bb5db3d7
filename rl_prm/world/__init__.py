"""Miniature R-PRM world (issue #7): a task with exact first-error labels, a tiny SFT policy and a
tiny R-PRM judge, all built on a CPU.

    rl_prm.world.tasks   problems / corrupt (4 error kinds) / first_wrong_step / mini-ProcessBench / SFT examples
    rl_prm.world.policy  tiny Qwen2 policy SFT'd on gold + flawed solutions (cached, build.json has its accuracy)
    rl_prm.world.judge   tiny R-PRM judge SFT'd on recomputing teacher critiques (cached) + mini-ProcessBench eval
    python -m rl_prm.world --out DIR   build/reuse both, evaluate the judge at K=1,2,4,8, write report.md + PNG

Status (measured 2026-11-23, 2 shared CPU cores, one torch thread): NOT yet at the issue's targets.
Policy (700 SFT steps, 30% flawed targets, ~9 min): held-out greedy 6%, sampled 4% (digit-split
tokenizer as loaded from disk; the same recipe on the in-memory merged-number tokenizer reached 19% /
7.5%). Judge (500 SFT steps, ~8.5 min): mini-ProcessBench (60 items) F1 at threshold 0.5 =
18.1 / 24.8 / 10.7 / 10.9 for K = 1 / 2 / 4 / 8. No GRPO comparison yet.
"""
