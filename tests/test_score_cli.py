"""`rl-prm score` end to end (in-process, reusing the session's judge engine)."""

from __future__ import annotations

import json

import pytest

from rl_prm.cli import main
from rl_prm.score.engines import VLLMJudgeEngine
from rl_prm.score.scorer import RPRMScorer


@pytest.fixture
def reuse_judge(judge_llm, monkeypatch):
    """`RPRMScorer.from_path` -> the session's engine (no second engine in the test session)."""
    engine = VLLMJudgeEngine(judge_llm)
    monkeypatch.setattr(RPRMScorer, "from_path", classmethod(lambda cls, path, config, **kw: cls(engine, config)))


@pytest.mark.slow
def test_score_cli_on_20_processbench_items(tmp_path, tiny_judge_dir, reuse_judge, capsys):
    from rl_prm.data import load_processbench

    items = load_processbench("gsm8k")[:20]
    inp = tmp_path / "pb.jsonl"
    inp.write_text("".join(json.dumps(x) + "\n" for x in items))
    out = tmp_path / "scores.jsonl"
    rc = main(["score", "--judge", str(tiny_judge_dir), "--input", str(inp), "--output", str(out),
               "--k", "1", "--max-critique-tokens", "64", "--max-model-len", "2048"])
    assert rc == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 20
    for item, rec in zip(items, lines):
        assert rec["id"] == item["id"] and rec["status"] == "ok"
        assert len(rec["step_scores"]) == len(item["steps"])
        assert all(0.0 <= s <= 1.0 for s in rec["step_scores"])
        assert all(len(p) == 1 for p in rec["p_yes"]) and rec["generated_tokens"] > 0
    assert "20 items" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_score_cli_bad_lines_keep_one_output_line_each(tmp_path, tiny_judge_dir, reuse_judge):
    inp = tmp_path / "in.jsonl"
    inp.write_text(
        json.dumps({"question": "Ann has 2 pens and buys 3. How many?", "response": "2 + 3 = 5.\n\nThe answer is 5."}) + "\n"
        + "{not json\n"
        + json.dumps({"question": "q", "steps": []}) + "\n"
        + "\n"
        + json.dumps({"problem": "Bob has 1 cat.", "steps": ["He has 1 cat.", " "]}) + "\n"
    )
    out = tmp_path / "out.jsonl"
    assert main(["score", "--judge", str(tiny_judge_dir), "--input", str(inp), "--output", str(out), "--k", "1",
                 "--max-critique-tokens", "32", "--max-model-len", "2048", "--limit", "4"]) == 0
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["status"] for r in recs] == ["ok", "bad_input", "no_steps", "empty_step"]
    assert "line 2" in recs[1]["error"] and len(recs[0]["step_scores"]) == 2


def test_score_cli_rejects_missing_judge(tmp_path):
    with pytest.raises(SystemExit, match="not a model directory"):
        main(["score", "--judge", str(tmp_path / "nope"), "--input", "x", "--output", "y"])
