"""The judge's DPO targets: synthetic flawed solutions mixed with the world policy's own samples.

    units, facts = training_units(n, seed, policy_share, policy_model, tok)   # [(question, steps, k, correct)]

A unit is one judged step: (question, solution steps, k, correct), `correct` in the ProcessBench sense
(k is before the solution's first wrong step, found by recomputation). Two sources:

    synthetic   rl_prm.world.judge.judge_units: gold solutions and flawed copies of them
    policy      ``policy_units``: the policy's own sampled solutions (T=1, "train" questions) judged at
                their first wrong step (``at_error``) or a step before it; solutions without an error
                at a random step. These are the errors RL asks the judge about (on the world's SFT
                policy mostly off-by-a-few arithmetic slips).

A policy unit whose teacher critique would not support its label (every check right but the step
wrong, e.g. a wrong ordinal the checklist does not check) is left out and counted, so no target's
conclusion contradicts its own checks.
"""

from __future__ import annotations

import random
from typing import Any

Unit = tuple[str, list[str], int, bool]


def teacher_supports(question: str, steps: list[str], k: int, correct: bool) -> bool:
    """True when the teacher critique's check decisions (all but the conclusion) AND to ``correct``."""
    from rl_prm.world.judge import critique_parts

    decisions = [t.strip() for t, crit in critique_parts(question, steps, k, correct) if crit and t.strip() in ("correct", "wrong")]
    return all(d == "correct" for d in decisions[:-1]) == correct


def labelled_samples(model: Any, tok: Any, questions: list[str], seed: int) -> list[tuple[str, str, list[str], int]]:
    """``model``'s (the world policy's) sampled solutions (T=1) to ``questions``, each with its steps and
    first wrong step by recomputation (-1: none; 0 for an empty solution):
    [(question, text, steps, first wrong step)]."""
    from rl_prm.steps import split_steps
    from rl_prm.world.policy import generate
    from rl_prm.world.tasks import first_wrong_step

    texts = generate(model, tok, questions, do_sample=True, seed=seed)
    out = []
    for q, text in zip(questions, texts):
        steps = split_steps(text)
        out.append((q, text, steps, first_wrong_step(q, steps)))
    return out


def policy_units(model: Any, tok: Any, n: int, seed: int, at_error: float = 0.75) -> tuple[list[Unit], dict]:
    """n judge units from ``model``'s (the world policy's) own sampled solutions to "train" questions
    (see the module doc). Returns (units, facts: sampled, flawed, empty, unsupported)."""
    from rl_prm.world.tasks import problems

    rng = random.Random(f"world-judge-policy-{seed}")
    units: list[Unit] = []
    facts = {"sampled": 0, "flawed": 0, "empty": 0, "unsupported": 0}
    round_ = 0
    while len(units) < n:
        want = max(64, int((n - len(units)) * 1.1))
        qs = [p.question for p in problems("train", want, seed=seed + 31 + round_)]
        samples = labelled_samples(model, tok, qs, seed=seed + round_)
        round_ += 1
        for q, _, steps, w in samples:
            facts["sampled"] += 1
            if not steps:
                facts["empty"] += 1
                continue
            if w >= 0:
                facts["flawed"] += 1
                k = w if rng.random() < at_error else rng.randrange(0, w + 1)
            else:
                k = rng.randrange(len(steps))
            correct = w < 0 or k < w
            if not teacher_supports(q, steps, k, correct):
                facts["unsupported"] += 1
                continue
            units.append((q, steps, k, correct))
    return units[:n], facts


def training_units(n: int, seed: int, policy_share: float, policy_model: Any, tok: Any, mix: Any = None
                   ) -> tuple[list[Unit], dict]:
    """n units: round(n * policy_share) from the policy (``policy_units``), the rest synthetic
    (rl_prm.world.judge.judge_units with ``mix``, a UnitMix; None: its default), shuffled together.
    Returns (units, facts)."""
    from rl_prm.world.judge import UnitMix, judge_units

    n_policy = round(n * float(policy_share))
    units, facts = (policy_units(policy_model, tok, n_policy, seed) if n_policy else ([], {}))
    units = units + judge_units(n - n_policy, seed, mix or UnitMix())
    random.Random(f"world-judge-mix-{seed}").shuffle(units)
    return units, {"policy_units": n_policy, "synthetic_units": n - n_policy, **facts}
