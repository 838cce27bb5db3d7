"""Tasks (rl_prm.tasks) and what a step checker buys: right answers through wrong steps are counted as
miracles, the judge's verdicts are scored against the checker, the oracle scores exactly the checker's
verdicts and is refused for a task without one."""

from __future__ import annotations

import random

import pytest

from rl_prm.metrics import judge_truth_metrics, process_flags, truth_row
from rl_prm.metrics.judge import RATE_COUNT, pooled_rate
from rl_prm.steps import split_steps
from rl_prm.tasks import TASKS, find_task, first_wrong, process_metrics, task_of, truth_rows
from rl_prm.world.tasks import corrupt, miracle, problems

WORLD = TASKS.get("world")


def _three(seed=0):
    """A gold, a miracle (right answer, wrong step) and a flawed (wrong answer) solution of one problem."""
    rng = random.Random(seed)
    p = problems("test", 1, seed=seed)[0]
    return p, p.solution, miracle(p, rng, kind="misquote").solution, corrupt(p, rng, kind="slip").solution


def test_the_world_is_a_task_plugin_found_by_name_and_by_its_rows():
    assert "world" in TASKS.names() and WORLD.has_checker  # the "rl_prm.tasks" entry point registered it
    rows = WORLD.rows("test", 5, 0)
    assert all(r["source"] == "world" for r in rows) and task_of(rows) is WORLD
    assert task_of(rows + [{"source": "tiny_arith"}]) is None and find_task("data/train.parquet") is None
    assert not TASKS.get("tiny_arith").has_checker
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        TASKS.get("nope")


def test_process_flags_tell_miracles_from_right_reasoning():
    from reward_fns.math_verify_reward import compute_score

    p, gold, mir, bad = _three()
    graded = [compute_score("world", t, str(p.answer)) for t in (gold, mir, bad)]
    assert graded == [1.0, 1.0, 0.0]  # the outcome reward pays the miracle like the gold solution
    flags = [process_flags(first_wrong(WORLD, p.question, split_steps(t)), g > 0.5) for t, g in zip((gold, mir, bad), graded)]
    assert flags == [{"answer": 1.0, "trace": 1.0, "miracle": 0.0}, {"answer": 1.0, "trace": 0.0, "miracle": 1.0},
                     {"answer": 0.0, "trace": 0.0, "miracle": 0.0}]
    m = process_metrics(WORLD, [p.question] * 4, [gold, mir, bad, gold], [1.0, 1.0, 0.0, 1.0])
    assert m == {"eval/trace_accuracy": 0.5, "eval/answer_accuracy": 0.75, "eval/miracle_rate": 0.25}
    assert process_metrics(WORLD, [], [], []) == {}
    assert process_metrics(TASKS.get("tiny_arith"), [p.question], [gold], [1.0]) == {}  # no checker: no flags
    assert first_wrong(WORLD, "What is 2+2?", ["4"]) == 0  # a question the checker cannot read: wrong at step 0


def test_the_judge_is_scored_against_the_checker_on_its_own_verdicts():
    p, gold, mir, bad = _three(3)
    steps = [split_steps(t) for t in (gold, mir, bad)]
    w = [first_wrong(WORLD, p.question, s) for s in steps]
    assert w[0] == -1 and w[1] >= 0 and w[2] >= 0
    # a judge that passes everything: every first error accepted, the miracle and the flawed answer passed whole
    yes = [[0.9] * len(s) for s in steps]
    m = judge_truth_metrics(truth_rows(WORLD, [p.question] * 3, steps, [1.0, 1.0, 0.0], yes))
    assert m["judge/false_accept_rate"] == 1.0 and m["judge/false_reject_rate"] == 0.0
    assert m["judge/flawed_passed_rate"] == 1.0 and m["judge/miracles_passed_rate"] == 1.0
    assert m["judge/first_errors"] == 2.0 and m["judge/miracles"] == 1.0
    assert m["judge/right_steps"] == len(steps[0]) + w[1] + w[2]  # steps after a first error are not counted
    assert m["process/trace_rate"] == pytest.approx(1 / 3) and m["process/miracle_rate"] == pytest.approx(1 / 3)
    # the checker's own verdicts as P(Yes): no error of either kind
    exact = [[1.0 if ok else 0.0 for ok in WORLD.step_verdicts(p.question, s)] for s in steps]
    m = judge_truth_metrics(truth_rows(WORLD, [p.question] * 3, steps, [1.0, 1.0, 0.0], exact))
    assert m["judge/false_accept_rate"] == m["judge/false_reject_rate"] == m["judge/flawed_passed_rate"] == 0.0
    # a gated response's floor scores are not the judge's: it counts in process rates, not in judge/*
    m = judge_truth_metrics(truth_rows(WORLD, [p.question] * 3, steps, [1.0, 1.0, 0.0], yes, [True, True, False]))
    assert m["judge/first_errors"] == 1.0 and m["process/answer_rate"] == pytest.approx(2 / 3)
    # no judge at all: only the process rates; nothing to divide leaves a rate out
    m = judge_truth_metrics(truth_rows(WORLD, [p.question], steps[:1], [1.0]))
    assert m == {"process/trace_rate": 1.0, "process/answer_rate": 1.0, "process/miracle_rate": 0.0,
                 "judge/first_errors": 0.0, "judge/right_steps": 0.0, "judge/flawed_responses": 0.0, "judge/miracles": 0.0}
    assert truth_row(2, True, [0.9, float("nan"), 0.2], True)["truth_first_errors"] == 1.0
    # a rate over several steps pools their counts: the steps' metrics give the rate of all their rows together
    rows = truth_rows(WORLD, [p.question] * 3, steps, [1.0, 1.0, 0.0], yes)
    per_step = [judge_truth_metrics(rows[:1]), judge_truth_metrics(rows[1:])]
    for rate in RATE_COUNT:
        assert pooled_rate(per_step, rate) == pytest.approx(judge_truth_metrics(rows)[rate])
    assert pooled_rate([{"judge/first_errors": 0.0}], "judge/false_accept_rate") is None
    assert judge_truth_metrics([]) == {} and truth_rows(None, [p.question], steps[:1], [1.0]) == []


def test_oracle_scores_the_checkers_verdicts_through_the_scorer_interface():
    from rl_prm.score.oracle import OracleScorer

    p, gold, mir, bad = _three(2)
    res = WORLD.oracle_scorer().score([{"question": p.question, "steps": split_steps(t)} for t in (gold, mir, bad)]
                               + [{"question": "What is 2+2?", "steps": ["4"]}, {"question": p.question, "steps": []}])
    assert [r.status for r in res] == ["ok", "ok", "ok", "bad_input", "no_steps"]
    assert res[0].step_scores == [1.0] * len(split_steps(gold))
    for r, text in zip(res[1:3], (mir, bad)):
        lab = next(i for i, s in enumerate(r.step_scores) if s == 0.0)
        assert r.step_scores == [1.0] * lab + [0.0] * (len(split_steps(text)) - lab)

    class Spans:  # what the local backend hands a scorer: the response's step texts
        def __init__(self, text):
            self.texts = split_steps(text)
            self.num_steps = len(self.texts)

    assert isinstance(WORLD.oracle_scorer(), OracleScorer)
    scores, m = WORLD.oracle_scorer(fallback_score=0.5).score_responses(
        [p.question, p.question, "not a world question"], [Spans(gold), Spans(""), Spans("a\n\nb")])
    assert scores == [[1.0] * len(split_steps(gold)), [], [0.5, 0.5]]
    assert m["prm/steps_fallback"] == 2.0 and m["prm/items_not_ok"] == 1.0


def test_oracle_judge_needs_a_task_with_a_checker_and_the_local_backend():
    from rl_prm.backends.engines import Engines
    from rl_prm.config import load_recipe
    from rl_prm.models import resolve_model
    from rl_prm.score.oracle import OracleScorer

    cfg = load_recipe("recipes/tiny_cpu.yaml", ["model.judge=oracle"])
    assert isinstance(Engines().prm(cfg, None), OracleScorer)  # a scorer, not a model: no engine is started
    with pytest.raises(ValueError, match="'oracle' is not a model"):
        resolve_model(cfg.model.judge, "judge")
    with pytest.raises(ValueError, match="model.judge=oracle .* data.train='tiny_arith' has none .*world"):
        load_recipe("recipes/tiny_cpu.yaml", ["model.judge=oracle", "data.train=tiny_arith"])
    with pytest.raises(ValueError, match="oracle"):
        resolve_model("oracle", "policy")
