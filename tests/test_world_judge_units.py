"""The judge's DPO targets: the policy's own samples labelled by recomputation, mixed with synthetic
ones at the stated share, and no target whose teacher critique contradicts its label."""

from __future__ import annotations

import random
import re

from rl_prm.world import judge_units as ju
from rl_prm.world.tasks import corrupt, first_wrong_step, problems


def _gold_text(p) -> str:
    return "\n\n".join(p.step_texts)


def test_teacher_supports_rejects_a_wrong_step_whose_checks_all_pass():
    p = next(p for p in problems("train", 50, seed=2) if len(p.step_texts) >= 4)
    steps = list(p.step_texts)
    assert ju.teacher_supports(p.question, steps, 1, True)
    bad = list(steps)
    bad[2] = re.sub(r"^\w+,", "Fourth,", bad[2])  # a wrong ordinal: wrong by recomputation, no check sees it
    assert first_wrong_step(p.question, bad) == 2
    assert not ju.teacher_supports(p.question, bad, 2, False)
    slip = corrupt(p, random.Random(0), at=1, kind="slip")
    assert ju.teacher_supports(p.question, slip.step_texts, 1, False)


def test_policy_units_label_the_policys_samples_by_recomputation(monkeypatch):
    def fake_generate(model, tok, questions, *, do_sample, seed=0, **kw):
        by_q = {p.question: p for p in problems("train", len(questions), seed=31 + seed)}  # policy_units' questions
        out = []
        for i, q in enumerate(questions):
            p = by_q[q]
            kind = i % 4
            if kind == 0:
                out.append(_gold_text(p))
            elif kind == 1:
                out.append(_gold_text(corrupt(p, random.Random(i), at=1, kind="slip")))
            elif kind == 2:
                steps = list(p.step_texts)
                steps[1] = re.sub(r"^\w+,", "Fourth,", steps[1])
                out.append("\n\n".join(steps))
            else:
                out.append("   ")
        return out

    monkeypatch.setattr(ju, "generate", fake_generate)
    units, facts = ju.policy_units(None, None, 40, seed=0, at_error=1.0)
    assert len(units) == 40
    assert facts["empty"] > 0 and facts["unsupported"] > 0 and facts["flawed"] >= facts["unsupported"]
    for q, steps, k, correct in units:
        w = first_wrong_step(q, steps)
        assert correct == (w < 0 or k < w)
        if w >= 0:
            assert k == w  # at_error=1: judged at the first wrong step
        assert not any(s.startswith("Fourth,") for s in steps[: k + 1])  # the unsupported ones are left out
    assert any(not c for *_, c in units) and any(c for *_, c in units)


def test_training_units_mix_the_stated_share(monkeypatch):
    fake = [("q", ["s"], 0, True)] * 50
    monkeypatch.setattr(ju, "policy_units", lambda m, t, n, seed: (fake[:n], {"sampled": n}))
    units, facts = ju.training_units(100, 3, 0.25, None, None)
    assert len(units) == 100 and facts["policy_units"] == 25 and facts["synthetic_units"] == 75
    assert sum(u == fake[0] for u in units) == 25
    again, _ = ju.training_units(100, 3, 0.25, None, None)
    assert again == units  # deterministic for a seed
    none, f0 = ju.training_units(10, 3, 0.0, None, None)
    assert f0["policy_units"] == 0 and len(none) == 10
