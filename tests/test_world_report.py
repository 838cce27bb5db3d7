"""The world report states what the numbers say: every sentence is computed from the values it
describes (a curve that peaks is not called rising; overlapping seeds are not called a win)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rl_prm.world.report import compare, greedy_check, k_trend, recovered


def test_k_trend_names_a_peak_instead_of_calling_it_a_rise():
    assert k_trend({1: 20.0, 2: 30.0, 4: 45.5, 8: 61.0}) == "F1 rises with K at every step (20.0 < 30.0 < 45.5 < 61.0)."
    peak = k_trend({1: 20.4, 2: 34.1, 4: 31.8, 8: 30.0})
    assert peak.startswith("F1 does NOT rise monotonically with K") and "peaks at K=2" in peak
    assert "does not rise at K=4, K=8" in peak
    flat = k_trend({1: 50.0, 2: 50.0, 4: 55.0, 8: 60.0})
    assert "NOT" in flat and "ends highest at K=8" in flat and "does not rise at K=2." in flat


def test_compare_calls_a_difference_clear_only_when_the_seed_ranges_are_disjoint():
    t, d = compare([0.45, 0.47, 0.46], [0.40, 0.41, 0.43], "A", "B", "trace accuracy")
    assert d["better"] and d["disjoint"] and d["diff"] == pytest.approx(0.0467, abs=1e-4)
    assert "A better than B; the seeds' ranges are disjoint" in t and "+4.7 points" in t
    t, d = compare([0.45, 0.40, 0.46], [0.42, 0.41, 0.44], "A", "B", "trace accuracy")
    assert d["better"] and not d["disjoint"] and "overlap: not a clear difference" in t
    t, d = compare([0.05, 0.06], [0.10, 0.12], "A", "B", "miracle rate", higher_is_better=False)
    assert d["better"] and d["disjoint"] and "A better than B" in t  # fewer miracles is better
    t, d = compare([0.30], [0.35], "A", "B", "answer accuracy")
    assert not d["better"] and "A worse than B" in t


def test_recovered_share_of_the_oracle_gain_and_no_gain():
    t, d = recovered([0.44, 0.46], [0.50, 0.50], [0.40, 0.40], "trace accuracy")
    assert d["share"] == pytest.approx(0.5) and "recovers 50% of the oracle's trace accuracy gain" in t
    t, d = recovered([0.44], [0.39], [0.40], "trace accuracy")
    assert d["share"] is None and "does not beat VR-only" in t


def test_greedy_check_is_decided_by_the_worst_seed():
    t, d = greedy_check("VR only", [0.88, 0.86], 0.87)
    assert d["ok"] and "within 2 points" in t
    t, d = greedy_check("VR only", [0.88, 0.80], 0.87)
    assert not d["ok"] and "MORE than 2 points below" in t and "worst seed -7.0" in t
    t, d = greedy_check("sum", [0.98, 1.0], 1.0)  # exactly 2 points below: within (0.98 - 1.0 is not -0.02 in floats)
    assert d["ok"] and "worst seed -2.0: within 2 points" in t


def _run(d: Path, evals: dict) -> Path:
    d.mkdir(parents=True)
    rows = [{"step": s, **{f"eval/{k}": v for k, v in e.items()}, "timing/step": 1.0} for s, e in sorted(evals.items())]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def _evals(trace, answer, greedy):
    return {"trace_accuracy": trace, "answer_accuracy": answer, "miracle_rate": round(answer - trace, 6),
            "accuracy": greedy, "sampled_accuracy": answer}


def test_report_json_shape_and_markdown_verdicts(tmp_path):
    from rl_prm.world.compare import summarize
    from rl_prm.world.report import report_json, report_md

    start = _evals(0.30, 0.40, 0.90)
    runs = {}
    for s, (m, o, v) in enumerate([(0.45, 0.50, 0.38), (0.46, 0.52, 0.40), (0.44, 0.51, 0.39)]):
        runs[("min_form", s)] = _run(tmp_path / f"m{s}", {0: start, 10: _evals(m, 0.50, 0.90)})
        runs[("oracle", s)] = _run(tmp_path / f"o{s}", {10: _evals(o, 0.53, 0.91)})
        runs[("vr_only", s)] = _run(tmp_path / f"v{s}", {10: _evals(v, 0.51, 0.89)})
    results = {"timing_s": {"policy": 1.0, "total": 9.0}, "policy": {"build": {}}, "judge": {"build": {}, "processbench": {
        "n_items": 120, "temperature": 0.6, "f1_per_k": {"1": 40.0, "2": 50.0, "4": 58.0, "8": 62.0},
        "per_k": {k: {"world_test": {"error_acc": 50.0, "correct_acc": 60.0}} for k in ("1", "2", "4", "8")},
        "step_accuracy": {"8": {"correct_steps_yes": 90.0, "n_correct_steps": 300, "error_steps_no": 80.0,
                                "n_error_steps": 60}},
        "greedy": {"f1": 61.0, "splits": {"world_test": {"error_acc": 55.0, "correct_acc": 70.0}}}}},
        "rl": {"recipe": "recipes/tiny_cpu.yaml", "overrides": [], "eval_samples": 4, "arms": summarize(runs),
               "judge_scoring": {"k": 4, "adaptive_k": True, "adaptive_min_k": 1, "adaptive_rule": "confirm_no",
                                 "temperature": 0.6}}}
    rep = report_json(results)
    assert rep["judge"]["f1_by_k"] == {"1": 0.4, "2": 0.5, "4": 0.58, "8": 0.62} and rep["judge"]["f1_greedy"] == 0.61
    assert rep["start"] == pytest.approx({"trace_accuracy": 0.3, "answer_accuracy": 0.4, "miracle_rate": 0.1,
                                          "greedy_accuracy": 0.9})
    assert rep["arms"]["min_form"]["seeds"] == [0, 1, 2] and rep["arms"]["min_form"]["trace_accuracy"] == [0.45, 0.46, 0.44]
    assert set(rep["arms"]) == {"min_form", "oracle", "vr_only"}
    assert all(0 <= x <= 1 for a in rep["arms"].values() for k in ("trace_accuracy", "miracle_rate") for x in a[k])
    c = rep["comparisons"]
    assert c["min_form_vs_vr_only/trace_accuracy"]["disjoint"] and c["min_form_answer_within_margin"]
    assert c["oracle_gain_recovered"]["share"] == pytest.approx((0.45 - 0.39) / (0.51 - 0.39))
    assert c["greedy/vr_only"]["ok"] and c["greedy/oracle"]["ok"]
    text = report_md(results)
    assert "F1 rises with K at every step (40.0 < 50.0 < 58.0 < 62.0)." in text
    assert "One greedy critique per step (temperature 0): F1 61.0 (error-sample acc 55.0, correct-sample acc 70.0)." in text
    assert "R-PRM min-form + VR vs VR only on trace accuracy: 45.0 [44.0, 46.0] vs 39.0 [38.0, 40.0]" in text
    assert "recovers 50% of the oracle's trace accuracy gain over VR-only (+6.0 of +12.0 points)" in text
    assert "| R-PRM min-form + VR (step 10) | 45.0 [44.0, 46.0] | 50.0 [50.0, 50.0] | 5.0 [4.0, 6.0] | 90.0 [90.0, 90.0] |" in text
    # how the judge scored the R-PRM arms is stated with the numbers it produced
    assert "The R-PRM arms score a step with 1 critique (4 where it rejects) sampled at T=0.6" in text
    json.dumps(rep)  # serialisable as written


def test_scoring_text_names_each_critique_rule():
    from rl_prm.world.report import scoring_text

    base = {"k": 4, "adaptive_min_k": 2, "temperature": 0.6}
    assert scoring_text({**base, "adaptive_k": False, "adaptive_rule": "disagree"}).startswith("4 critiques sampled")
    assert scoring_text({**base, "k": 1, "adaptive_k": False, "adaptive_rule": "disagree"}).startswith("1 critique sampled")
    assert scoring_text({**base, "adaptive_k": True, "adaptive_rule": "disagree"}).startswith(
        "2 critiques (4 where they disagree)")
    assert scoring_text({**base, "adaptive_k": True, "adaptive_rule": "confirm_no"}).startswith(
        "2 critiques (4 where one rejects)")
    greedy = {**base, "k": 1, "temperature": 0.0, "adaptive_k": False, "adaptive_rule": "disagree"}
    assert scoring_text(greedy) == "1 greedy critique, the step's score its P(Yes)"


@pytest.mark.parametrize("world", ["build", "rebuild", "shipped"])
def test_world_command_builds_no_judge_for_oracle_and_vr_only_arms(tmp_path, monkeypatch, world):
    """--arms oracle,vr_only --skip-judge-eval: nothing scores with the R-PRM judge, so it is neither
    built (RL_PRM_WORLD=build or --rebuild: minutes saved) nor loaded (the shipped world); the report says
    so and still compares the arms."""
    import rl_prm.world.compare as compare
    import rl_prm.world.judge as judge
    import rl_prm.world.policy as policy
    from rl_prm.world import ship
    from rl_prm.world.__main__ import main

    def no_judge(*a, **k):
        raise AssertionError("the judge was built")

    flags = ["--rebuild"] if world == "rebuild" else []
    if world == "build":
        monkeypatch.setenv(ship.ENV, ship.BUILD)
    else:
        monkeypatch.delenv(ship.ENV, raising=False)
    if world in ("build", "rebuild"):
        monkeypatch.setattr(policy, "policy_path", lambda *a, **k: tmp_path / "policy")
        monkeypatch.setattr(judge, "sft_judge_path", no_judge)
        monkeypatch.setattr(judge, "judge_path", no_judge)
    else:
        monkeypatch.setattr(ship, "world_model", lambda kind: no_judge() if kind == "judge" else tmp_path / "policy")
    start = _evals(0.30, 0.40, 0.90)
    runs = {("oracle", 0): _run(tmp_path / "o0", {0: start, 10: _evals(0.5, 0.6, 0.9)}),
            ("vr_only", 0): _run(tmp_path / "v0", {10: _evals(0.4, 0.6, 0.9)})}
    seen = {}
    monkeypatch.setattr(compare, "run_arms", lambda recipe, out, **kw: seen.update(kw, world=os.environ.get(ship.ENV))
                        or runs)
    assert main(["--out", str(tmp_path / "w"), "--seeds", "0", "--arms", "oracle,vr_only", "--skip-judge-eval",
                 *flags]) == 0
    assert seen["arms"] == ["oracle", "vr_only"]
    assert seen["world"] == (ship.BUILD if world != "shipped" else None)  # the arms' runs load the same world
    assert world != "rebuild" or ship.ENV not in os.environ  # --rebuild sets it only while the command runs
    text = (tmp_path / "w" / "report.md").read_text()
    assert "judge: not used" in text and "oracle PRM min-form + VR vs VR only on trace accuracy" in text
    assert "The R-PRM arms score a step" not in text  # no R-PRM arm ran
    rep = json.loads((tmp_path / "w" / "report.json").read_text())
    assert "judge" not in rep and rep["arms"]["oracle"]["trace_accuracy"] == [0.5]
    # an arm that scores with the judge needs it
    with pytest.raises(AssertionError, match="the judge was built"):
        main(["--out", str(tmp_path / "w2"), "--seeds", "0", "--arms", "min_form", "--skip-judge-eval", *flags])


def test_report_shows_the_judges_work_and_what_gating_costs_and_buys(tmp_path):
    """The gated arm is compared with judging every response on the process metrics and on critique tokens per
    step; the judge-work table lists the R-PRM arms only (the oracle generates no critiques)."""
    from rl_prm.world.compare import summarize
    from rl_prm.world.report import report_json, report_md

    def run(d, trace, work):
        d.mkdir(parents=True)
        rows = [{"step": 0, "eval/trace_accuracy": 0.3, "eval/answer_accuracy": 0.5, "eval/miracle_rate": 0.2,
                 "eval/accuracy": 1.0}]
        rows += [{"step": s, "timing/step": 1.0, **work} for s in range(1, 11)]
        rows += [{"step": 10, "eval/trace_accuracy": trace, "eval/answer_accuracy": 0.7,
                  "eval/miracle_rate": 0.7 - trace, "eval/accuracy": 1.0}]
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return d

    work = lambda prompts, distinct, gated, tokens: {  # noqa: E731
        "prm/judge_prompts": prompts, "prm/judge_prompts_distinct": distinct, "prm/gated_responses": gated,
        "prm/dedup_frac": 1 - distinct / prompts, "prm/critiques": distinct, "prm/critique_tokens": tokens}
    runs = {}
    for s in range(2):
        runs[("gated", s)] = run(tmp_path / f"g{s}", 0.55 + 0.01 * s, work(96.0, 53.0, 11.0, 9000.0))
        runs[("min_form", s)] = run(tmp_path / f"m{s}", 0.54 + 0.01 * s, work(144.0, 82.0, 0.0, 15000.0))
        runs[("oracle", s)] = run(tmp_path / f"o{s}", 0.55, work(144.0, 144.0, 0.0, 0.0))
    results = {"timing_s": {"total": 1.0}, "policy": {"build": {}},
               "rl": {"recipe": "recipes/tiny_cpu.yaml", "overrides": [], "eval_samples": 4, "arms": summarize(runs)}}
    rep = report_json(results)
    assert rep["comparisons"]["gated_vs_min_form/critique_tokens_ratio"] == pytest.approx(0.6)
    assert rep["comparisons"]["gated_vs_min_form/trace_accuracy"]["diff"] == pytest.approx(0.01)
    assert rep["judge_work"]["gated"]["prm/gated_responses"] == 11.0
    text = report_md(results)
    assert "| R-PRM min-form + VR, answer-gated | 96.0 | 53.0 | 44.8% | 11.0 | 53.0 | 9000 |" in text
    assert "| oracle PRM" not in text.split("judge's work per training step")[1].split("###")[0]
    assert "generates 0.60x the critique tokens per step of R-PRM min-form + VR (9000 vs 15000)" in text
