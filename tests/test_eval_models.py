"""Evaluators end to end with the tiny models on CPU (slow: they run the session's vLLM engines)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rl_prm.commands.eval import run_math, run_processbench
from rl_prm.eval.scoring import ScorerSource

pytestmark = pytest.mark.slow


def _scorer(judge_llm, k):
    from rl_prm.score.engines import VLLMJudgeEngine
    from rl_prm.score.scorer import RPRMScorer, ScoreConfig

    return RPRMScorer(VLLMJudgeEngine(judge_llm), ScoreConfig(k=k, max_critique_tokens=256))


def test_processbench_with_tiny_judge_k_1_2(judge_llm, tmp_path):
    out = tmp_path / "pb"
    res = run_processbench(ScorerSource(_scorer(judge_llm, 2), "tiny-judge"), ks=[1, 2], splits=["gsm8k"],
                           limit=20, out=out, progress=False)
    for name in ("results.json", "table.txt", "scores.jsonl", "f1_vs_k.png"):
        assert (out / name).stat().st_size > 0, name
    assert res["n_items"] == 20 and sum(res["status_counts"].values()) == 20
    disk = json.loads((out / "results.json").read_text())
    assert set(disk["per_k"]) == {"1", "2"}
    m = disk["per_k"]["2"]["splits"]["gsm8k"]
    assert (m["n_error"], m["n_correct"]) == (10, 10)
    assert 0.0 <= m["error_acc"] <= 100.0 and 0.0 <= m["correct_acc"] <= 100.0
    assert "ProcessBench" in (out / "table.txt").read_text()
    rows = [json.loads(line) for line in (out / "scores.jsonl").open()]
    ok = [r for r in rows if r["status"] == "ok"]
    assert ok, "the tiny judge scored no item"
    for r in ok:
        # scored prefix: erroneous items only up to their label
        assert all(len(s) <= 2 for s in r["p_yes"])
        assert all(0.0 <= p <= 1.0 for s in r["p_yes"] for p in s)
    # K=1 predictions are the first-sample predictions
    from rl_prm.eval.metrics import predict_first_error

    for r in ok:
        first = [s[0] if s else sc for s, sc in zip(r["p_yes"], r["step_scores"])]
        assert disk["predictions"]["1"][r["id"]] == predict_first_error(first, 0.5)


def test_math_with_tiny_policy_and_judge(policy_llm, judge_llm, tmp_path):
    out = tmp_path / "math"
    res = run_math(datasets=["math500"], n=4, limit=10, policy_llm=policy_llm,
                   source=ScorerSource(_scorer(judge_llm, 1), "tiny-judge"), max_tokens=48, search=True,
                   search_n=2, max_steps=2, max_step_tokens=24, out=out, progress=False)
    d = res["datasets"]["math500"]
    assert d["n_problems"] == 10 and res["ks"] == [1, 2, 4]
    for key in ("pass@1", "pass@4", "maj@4", "bon_min@4", "bon_last@4", "guided_search"):
        assert 0.0 <= d[key] <= 100.0, key
    assert d["pass@1"] <= d["pass@4"]
    for name in ("results.json", "table.txt", "samples.jsonl", "scores.jsonl", "search.jsonl"):
        assert (out / name).stat().st_size > 0, name
    samples = [json.loads(line) for line in (out / "samples.jsonl").open()]
    assert len(samples) == 10 and all(len(s["responses"]) == 4 == len(s["step_scores"]) for s in samples)
    search = [json.loads(line) for line in (out / "search.jsonl").open()]
    assert len(search) == 10
    for s in search:
        assert 1 <= len(s["steps"]) <= 2 and len(s["step_scores"]) == len(s["steps"])
        assert s["finished"] in ("answer", "eos", "step_cap", "no_candidate")


def test_cli_math_starts_and_stops_its_own_engines(tiny_policy_dir, tiny_judge_dir, tmp_path):
    """The one subprocess test: `rl-prm eval math` making the policy engine, then the judge's."""
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "rl_prm", "eval", "math", "--policy", tiny_policy_dir, "--judge", tiny_judge_dir,
           "--judge-k", "1", "--datasets", "math500", "--n", "2", "--limit", "2", "--max-tokens", "32",
           "--max-model-len", "2048", "--out", str(out), "--no-progress"]
    env = dict(os.environ, WANDB_MODE="offline")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert res["datasets"]["math500"]["n_problems"] == 2 and "bon_min@2" in res["datasets"]["math500"]
    assert "pass@1" in (out / "table.txt").read_text()
