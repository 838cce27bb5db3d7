"""Miniature R-PRM world: a task with exact first-error labels (and miracle solutions: a wrong step,
the right answer), a tiny SFT policy and a tiny R-PRM judge, all built on a CPU; the built policy and
judge ship in the package (shipped/: `model.policy: world` / `model.judge: world` load them).

    rl_prm.world.tasks       problems / corrupt / miracles / first_wrong_step / mini-ProcessBench / SFT examples
    rl_prm.world.policy      tiny Qwen2 policy SFT'd on gold, flawed and miracle solutions (cached)
    rl_prm.world.teacher     the checklist critique a step should get (the judge's SFT targets), by rule
    rl_prm.world.judge_units the judge's targets: synthetic flawed solutions and the policy's own samples
    rl_prm.world.judge       tiny R-PRM judge: SFT on teacher critiques, then DPO (rl_prm.world.dpo)
    rl_prm.world.judge_eval  mini-ProcessBench F1 at K = 1, 2, 4, 8 with rl_prm.eval.processbench
    rl_prm.world.plugin      the world as a plugin: its task (problems, step checker) and its models
    rl_prm.world.compare     the RL arms (R-PRM min-form, oracle, VR-only, R-PRM sum-form) x seeds
    rl_prm.world.report      report.md / report.json from the measured numbers
    rl_prm.world.ship        the shipped policy and judge (shipped/, sha256-checked); $RL_PRM_WORLD picks another world
    rl_prm.world.release     the build hash, the build cards, writing shipped/ (= rl-prm world build)
    python -m rl_prm.world --out DIR   the RL comparison on the shipped world (= rl-prm world; --rebuild: on a local build)

Measured numbers live in docs/world.md and in each run's report.
"""
