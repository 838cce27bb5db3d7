"""The judge's targets: synthetic flawed solutions (SFT and DPO) and the world policy's own samples (DPO).

    units = synthetic_units(n, seed, UnitMix())                                # [(question, steps, k, correct)]
    units, facts = training_units(n, seed, policy_share, policy_model, tok)   # DPO's: both, mixed

A unit is one judged step: (question, solution steps, k, correct), `correct` in the ProcessBench sense
(k is before the solution's first wrong step, found by recomputation). Two sources:

    synthetic   ``synthetic_units``: gold solutions and flawed copies of them, made as ``UnitMix`` says
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
from dataclasses import dataclass
from typing import Any

from rl_prm.steps import split_steps
from rl_prm.world.policy import generate
from rl_prm.world.tasks import corrupt, first_wrong_step, miracle, problems
from rl_prm.world.teacher import critique_parts

Unit = tuple[str, list[str], int, bool]


@dataclass(frozen=True)
class UnitMix:
    """What the judge's synthetic targets are made of (``synthetic_units``)."""

    flawed_fraction: float = 0.55  # targets from a flawed solution (the rest: a random step of a gold one)
    miracle_share: float = 0.3  # of the flawed ones, miracles (a wrong step, the right answer)
    # miracle kinds (misquote, jump, cancel); misquote-heavy weights (0.7, 0.15, 0.15) did not teach the judge to
    # catch the policy's misquotes (docs/world.md)
    miracle_weights: tuple = (0.5, 0.25, 0.25)
    at_error: float = 0.75  # a flawed solution is judged at its first wrong step with this probability


def synthetic_units(n: int, seed: int, mix: UnitMix = UnitMix()) -> list[Unit]:
    """n (question, steps, k, correct) judge targets from the "train" split: ``mix.flawed_fraction`` of
    them from a flawed solution (``mix.miracle_share`` of those a miracle: wrong step, right answer,
    its kind drawn with ``mix.miracle_weights``), judged at its first wrong step (``mix.at_error``) or a
    step before it; the rest a random step of a gold solution. Steps after the first error are never
    targets (their teacher verdict "wrong" would not follow from a local check)."""
    rng = random.Random(f"world-judge-{seed}")
    pool = problems("train", max(n // 4, 200), seed=seed + 7)
    out = []
    while len(out) < n:
        p = rng.choice(pool)
        if rng.random() < mix.flawed_fraction:
            p = (miracle(p, rng, weights=tuple(mix.miracle_weights)) if rng.random() < mix.miracle_share
                 else corrupt(p, rng))
            k = p.label if rng.random() < mix.at_error else rng.randrange(0, p.label + 1)
        else:
            k = rng.randrange(len(p.steps))
        out.append((p.question, p.step_texts, k, p.label == -1 or k < p.label))
    return out


def teacher_supports(question: str, steps: list[str], k: int, correct: bool) -> bool:
    """True when the teacher critique's check decisions (all but the conclusion) AND to ``correct``."""
    decisions = [t.strip() for t, crit in critique_parts(question, steps, k, correct) if crit and t.strip() in ("correct", "wrong")]
    return all(d == "correct" for d in decisions[:-1]) == correct


def labelled_samples(model: Any, tok: Any, questions: list[str], seed: int) -> list[tuple[str, str, list[str], int]]:
    """``model``'s (the world policy's) sampled solutions (T=1) to ``questions``, each with its steps and
    first wrong step by recomputation (-1: none; 0 for an empty solution):
    [(question, text, steps, first wrong step)]."""
    texts = generate(model, tok, questions, do_sample=True, seed=seed)
    out = []
    for q, text in zip(questions, texts):
        steps = split_steps(text)
        out.append((q, text, steps, first_wrong_step(q, steps)))
    return out


def policy_units(model: Any, tok: Any, n: int, seed: int, at_error: float = 0.75) -> tuple[list[Unit], dict]:
    """n judge units from ``model``'s (the world policy's) own sampled solutions to "train" questions
    (see the module doc). Returns (units, facts: sampled, flawed, empty, unsupported)."""
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


def training_units(n: int, seed: int, policy_share: float, policy_model: Any, tok: Any, mix: UnitMix | None = None
                   ) -> tuple[list[Unit], dict]:
    """n units: round(n * policy_share) from the policy (``policy_units``), the rest synthetic
    (``synthetic_units`` with ``mix``; None: UnitMix's default), shuffled together. Returns (units, facts)."""
    n_policy = round(n * float(policy_share))
    units, facts = (policy_units(policy_model, tok, n_policy, seed) if n_policy else ([], {}))
    units = units + synthetic_units(n - n_policy, seed, mix or UnitMix())
    random.Random(f"world-judge-mix-{seed}").shuffle(units)
    return units, {"policy_units": n_policy, "synthetic_units": n - n_policy, **facts}
