"""Process metrics and the oracle judge: right answers through wrong steps are counted as miracles,
the oracle scores exactly the checker's verdicts, and it is refused outside the world."""

from __future__ import annotations

import random

import pytest

from rl_prm.world.process import process_flags, process_metrics, reward_extra_flags
from rl_prm.world.tasks import corrupt, miracle, problems


def _three(seed=0):
    """A gold, a miracle (right answer, wrong step) and a flawed (wrong answer) solution of one problem."""
    rng = random.Random(seed)
    p = problems("test", 1, seed=seed)[0]
    return p, p.solution, miracle(p, rng, kind="misquote").solution, corrupt(p, rng, kind="slip").solution


def test_process_flags_tell_miracles_from_right_reasoning():
    from reward_fns.math_verify_reward import compute_score

    p, gold, mir, bad = _three()
    graded = [compute_score("world", t, str(p.answer)) for t in (gold, mir, bad)]
    assert graded == [1.0, 1.0, 0.0]  # the outcome reward pays the miracle like the gold solution
    flags = [process_flags(p.question, t, g > 0.5) for t, g in zip((gold, mir, bad), graded)]
    assert flags == [{"answer": 1.0, "trace": 1.0, "miracle": 0.0}, {"answer": 1.0, "trace": 0.0, "miracle": 1.0},
                     {"answer": 0.0, "trace": 0.0, "miracle": 0.0}]
    m = process_metrics([p.question] * 4, [gold, mir, bad, gold], [1.0, 1.0, 0.0, 1.0])
    assert m == {"eval/trace_accuracy": 0.5, "eval/answer_accuracy": 0.75, "eval/miracle_rate": 0.25}
    assert m["eval/answer_accuracy"] == m["eval/trace_accuracy"] + m["eval/miracle_rate"]
    assert process_metrics([], [], []) == {}


def test_verl_reward_extra_flags_only_for_world_rows():
    p, gold, mir, _ = _three(1)
    row = {"data_source": "world", "extra_info": {"question": p.question}}
    assert reward_extra_flags(row, mir, 1.0) == {"trace_correct": 0.0, "answer_correct": 1.0, "miracle": 1.0}
    assert reward_extra_flags(row, gold, 1.0)["trace_correct"] == 1.0
    assert reward_extra_flags({**row, "data_source": "openai/gsm8k"}, gold, 1.0) == {}
    assert reward_extra_flags(row, gold, None) == {}  # no graded outcome: no flags for any row of the batch


def test_oracle_scores_the_checkers_verdicts_through_the_scorer_interface():
    from rl_prm.steps import split_steps
    from rl_prm.world.oracle import OracleScorer

    p, gold, mir, bad = _three(2)
    res = OracleScorer().score([{"question": p.question, "steps": split_steps(t)} for t in (gold, mir, bad)]
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

    scores, m = OracleScorer(fallback_score=0.5).score_responses(
        [p.question, p.question, "not a world question"], [Spans(gold), Spans(""), Spans("a\n\nb")])
    assert scores == [[1.0] * len(split_steps(gold)), [], [0.5, 0.5]]
    assert m["prm/steps_fallback"] == 2.0 and m["prm/items_not_ok"] == 1.0


def test_oracle_judge_needs_world_data_and_the_local_backend():
    from rl_prm.backends.engines import Engines
    from rl_prm.config import load_recipe
    from rl_prm.models import resolve_model
    from rl_prm.world.oracle import OracleScorer

    cfg = load_recipe("recipes/tiny_cpu.yaml", ["model.judge=oracle"])
    assert resolve_model(cfg.model.judge, "judge") == "oracle"
    assert isinstance(Engines().prm(cfg, "oracle"), OracleScorer)  # no engine is started
    for bad in (["data.train=tiny_arith"], ["data.test=tiny_arith"]):
        with pytest.raises(ValueError, match="model.judge=oracle .* needs data.train=world"):
            load_recipe("recipes/tiny_cpu.yaml", ["model.judge=oracle", *bad])
    with pytest.raises(ValueError, match="oracle"):
        resolve_model("oracle", "policy")
