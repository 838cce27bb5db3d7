"""Miniature world task: exact first-error labels, determinism, disjoint splits, gradable answers."""

from __future__ import annotations

import random
import re

import pytest

from rl_prm.world.plugin import TASK
from rl_prm.world.tasks import (ERROR_KINDS, MIRACLE_KINDS, corrupt, eval_items, final_answer, first_wrong_step,
                                miracle, policy_examples, problems, processbench, question_ops)

_STEP = re.compile(r"has (-?\d+) ([+*-]) (-?\d+) = (-?\d+) ")


def _arith_ok(step: str) -> bool:
    """Independent recomputation of an operation step's own arithmetic ("a op b = c")."""
    a, sym, b, c = _STEP.search(step).groups()
    a, b, c = int(a), int(b), int(c)
    return c == {"+": a + b, "-": a - b, "*": a * b}[sym]


def test_gold_solutions_are_all_correct_and_graded_correct():
    from reward_fns.math_verify_reward import compute_score

    for p in problems("test", 60, seed=3):
        assert p.label == -1 and first_wrong_step(p.question, p.step_texts) == -1
        start, ops = question_ops(p.question)
        val = start
        for op, b in ops:
            val = {"add": val + b, "sub": val - b, "mul": val * b}[op]
        assert val == p.answer
        assert all(_arith_ok(s) for s in p.step_texts[1:-1])
        assert p.solution.split("\n\n") == p.step_texts
        assert compute_score("world", p.solution, str(p.answer)) == 1.0
        assert compute_score("world", p.solution, str(p.answer + 1)) == 0.0


@pytest.mark.parametrize("kind", ERROR_KINDS)
def test_each_error_kind_is_labelled_at_the_first_wrong_step(kind):
    rng = random.Random(kind)
    n_checked = 0
    for p in problems("train", 80, seed=1):
        at = rng.choice([i for i, s in enumerate(p.steps) if s.op in ("add", "sub", "mul")])
        try:
            q = corrupt(p, rng, at=at, kind=kind)
        except RuntimeError:  # e.g. dropping one of two identical operations is undetectable there
            continue
        n_checked += 1
        assert q.label == at and q.meta["error_kind"] == kind
        # steps before the label are exactly the gold steps; the labelled step differs from gold
        assert q.step_texts[:at] == p.step_texts[:at]
        assert q.step_texts[at] != p.step_texts[at]
        assert first_wrong_step(q.question, q.step_texts[:at] + p.step_texts[at:]) == -1
        assert first_wrong_step(q.question, q.step_texts) == at
        assert [s.correct for s in q.steps] == [i < at for i in range(len(q.steps))]
        wrong = q.step_texts[at]
        if kind == "slip" or kind == "wrong_op":
            assert not _arith_ok(wrong)  # the arithmetic written in the step is false
        elif kind == "wrong_number":
            assert _arith_ok(wrong)  # right arithmetic on a number the question does not give there
            assert int(_STEP.search(wrong).group(3)) != question_ops(q.question)[1][at - 1][1]
        else:  # dropped: one operation fewer, the final answer is wrong
            assert len(q.steps) == len(p.steps) - 1
        if kind != "dropped":
            assert len(q.steps) == len(p.steps)
        assert f"\\boxed{{{p.answer}}}" not in q.step_texts[-1]
    assert n_checked >= 60


def test_checker_flags_a_bad_answer_step_and_a_missing_answer():
    p = problems("train", 1, seed=0)[0]
    steps = p.step_texts
    assert first_wrong_step(p.question, steps[:-1] + [f"The answer is \\boxed{{{p.answer + 1}}}."]) == len(steps) - 1
    assert first_wrong_step(p.question, steps[:-1]) == len(steps) - 2
    assert first_wrong_step(p.question, ["nonsense"] + steps[1:]) == 0
    with pytest.raises(ValueError, match="not a world question"):
        first_wrong_step("What is 2+2?", steps)


def test_bad_arguments_are_named():
    p = problems("train", 1, seed=0)[0]
    with pytest.raises(ValueError, match="unknown error kind 'typo'"):
        corrupt(p, random.Random(0), kind="typo")
    with pytest.raises(ValueError, match="not an operation step"):
        corrupt(p, random.Random(0), at=0)
    with pytest.raises(ValueError, match="unknown world split 'dev'"):
        problems("dev", 3)


def test_deterministic_and_seeds_differ():
    assert processbench("test", 40, seed=0) == processbench("test", 40, seed=0)
    assert processbench("test", 40, seed=0) != processbench("test", 40, seed=1)
    a = [(e.problem, e.solution) for e in policy_examples("train", 50, seed=2)]
    assert a == [(e.problem, e.solution) for e in policy_examples("train", 50, seed=2)]


def test_splits_are_disjoint_and_questions_distinct():
    train = {p.question for p in problems("train", 800, seed=0)} | {p.question for p in problems("train", 400, seed=5)}
    test = {p.question for p in problems("test", 200, seed=0)} | {r["problem"] for r in processbench("test", 200, seed=2)}
    assert not train & test
    assert len({p.question for p in problems("test", 200, seed=0)}) == 200


def test_processbench_records_match_the_loader_shape_and_evaluator():
    from rl_prm.eval.metrics import predict_first_error, processbench_metrics

    recs = processbench("test", 100, seed=0)
    for r in recs:
        assert set(r) >= {"id", "problem", "steps", "label", "final_answer_correct"}
        assert r["label"] == first_wrong_step(r["problem"], r["steps"])
        # a propagated error makes the answer wrong; a miracle keeps it right (as in ProcessBench)
        assert r["final_answer_correct"] == (r["label"] == -1 or r["error_kind"] in MIRACLE_KINDS)
    n_err = sum(r["label"] != -1 for r in recs)
    assert 30 <= n_err <= 70 and {r["error_kind"] for r in recs} <= set(ERROR_KINDS) | set(MIRACLE_KINDS) | {None}
    assert {r["error_kind"] for r in processbench("test", 300, seed=0)} == set(ERROR_KINDS) | set(MIRACLE_KINDS) | {None}
    items = eval_items(recs)
    assert all(len(it["steps"]) == (it["n_steps"] if it["label"] < 0 else it["label"] + 1) for it in items)
    # an oracle scorer built from the recomputation checker gets F1 = 100 on the mini-ProcessBench
    preds = []
    for it in items:
        lab = first_wrong_step(it["question"], it["steps"])
        scores = [0.0 if i == lab else 1.0 for i in range(len(it["steps"]))]
        preds.append(predict_first_error(scores, 0.5))
    assert processbench_metrics([it["label"] for it in items], preds)["f1"] == pytest.approx(100.0)


def test_policy_examples_mix_gold_flawed_and_miracles():
    ex = policy_examples("train", 400, seed=0, flawed_fraction=0.3, miracle_fraction=0.2)
    n_flawed = sum(not e.answer_correct for e in ex)
    n_miracle = sum(e.answer_correct and not e.correct for e in ex)
    assert 90 <= n_flawed <= 150 and 50 <= n_miracle <= 110
    for e in ex:
        steps = e.solution.split("\n\n")
        assert (first_wrong_step(e.problem, steps) == -1) == e.correct
        assert (f"\\boxed{{{e.answer}}}" in steps[-1]) == e.answer_correct
    assert all(e.correct for e in policy_examples("train", 50, seed=0, flawed_fraction=0.0))


def test_policy_miracles_follow_their_kind_weights():
    # misquotes only: every step computes what gold computes (the stated amount is the only slip); cancels only:
    # some intermediate result differs from gold's
    def results(text):
        return re.findall(r"= (-?\d+) ", text)

    gold = {p.question: p.solution for p in problems("train", 200, seed=0)}
    mis = policy_examples("train", 200, seed=0, flawed_fraction=0.0, miracle_fraction=1.0, miracle_weights=(1, 0, 0))
    can = policy_examples("train", 200, seed=0, flawed_fraction=0.0, miracle_fraction=1.0, miracle_weights=(0, 0, 1))
    assert all(e.answer_correct and not e.correct for e in mis + can)
    assert all(results(e.solution) == results(gold[e.problem]) for e in mis)
    assert all(results(e.solution) != results(gold[e.problem]) for e in can)
    rng = random.Random(0)
    assert {miracle(p, rng, weights=(0, 1, 0)).meta["error_kind"] for p in problems("train", 30, seed=1)} == {"jump"}


@pytest.mark.parametrize("kind", MIRACLE_KINDS)
def test_each_miracle_has_a_wrong_step_and_the_right_answer(kind):
    """A miracle is what an outcome reward cannot see: the boxed answer is the gold one, yet the
    checker finds the labelled step wrong (and every step before it right)."""
    from reward_fns.math_verify_reward import compute_score

    rng = random.Random(kind)
    for p in problems("train", 60, seed=2):
        q = miracle(p, rng, kind=kind)
        assert q.meta["error_kind"] == kind and q.label > 0
        assert final_answer(q) == p.answer and compute_score("world", q.solution, str(p.answer)) == 1.0
        assert first_wrong_step(q.question, q.step_texts) == q.label
        assert q.step_texts[: q.label] == p.step_texts[: q.label]
        assert TASK.step_verdicts(q.question, q.step_texts) == [i < q.label for i in range(len(q.steps))]
        if kind == "misquote":  # the stated amount is off, the arithmetic is the gold one
            assert _STEP.search(q.step_texts[q.label]).groups() == _STEP.search(p.step_texts[q.label]).groups()
        elif kind == "cancel":  # two wrong calculations, the amount after them is the gold one again
            assert not _arith_ok(q.step_texts[q.label]) and not _arith_ok(q.step_texts[q.label + 1])
            assert q.step_texts[q.label + 2:] == p.step_texts[q.label + 2:]
        else:  # jump: the chain stays wrong, only the boxed answer is right
            assert q.step_texts[-2] != p.step_texts[-2] or len(q.steps) != len(p.steps)
    with pytest.raises(ValueError, match="unknown miracle kind"):
        miracle(p, rng, kind="luck")


def test_step_verdicts_of_gold_and_of_an_early_end():
    p = problems("test", 1, seed=5)[0]
    assert TASK.step_verdicts(p.question, p.step_texts) == [True] * len(p.steps)
    assert TASK.step_verdicts(p.question, p.step_texts[:-2]) == [True] * (len(p.steps) - 3) + [False]
