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
    """Every input line gets exactly one output line, in order, with a status naming the line."""
    good = {"id": "a", "question": "Ann has 2 pens and buys 3. How many?", "response": "2 + 3 = 5.\n\nThe answer is 5."}
    lines = [
        json.dumps(good).encode(),
        b"{not json",
        json.dumps({"question": "q", "steps": []}).encode(),
        b"",  # blank
        b'{"question": "caf\xe9", "steps": ["x"]}',  # a latin-1 byte: not UTF-8
        b"[1, 2]",
        json.dumps({"question": "q", "steps": "one step"}).encode(),
        b'{"question": "q", "steps": [NaN]}',
        b'{"id": "s", "question": "\\ud800", "steps": ["x"]}',  # a lone surrogate escape
        json.dumps({"problem": "Bob has 1 cat.", "steps": ["He has 1 cat.", " "]}).encode(),
        b"   ",  # blank, last line without a newline
    ]
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(b"\n".join(lines))
    out = tmp_path / "out.jsonl"
    assert main(["score", "--judge", str(tiny_judge_dir), "--input", str(inp), "--output", str(out), "--k", "1",
                 "--max-critique-tokens", "32", "--max-model-len", "2048"]) == 0
    recs = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in recs] == list(range(1, 12))
    assert [r["status"] for r in recs] == ["ok", "bad_input", "no_steps", "bad_input", "bad_input", "bad_input",
                                           "bad_input", "bad_input", "bad_input", "empty_step", "bad_input"]
    assert recs[0]["id"] == "a" and len(recs[0]["step_scores"]) == 2 and "id" not in recs[8]
    for r, why in zip(recs[1:], ["not JSON", "no steps", "blank line", "not UTF-8 (byte 0xe9", "mapping",
                                 "list of strings", "NaN", "lone surrogate", "step 2 is empty",
                                 "blank line"]):
        assert r["error"].startswith(f"line {r['line']}: ") and why in r["error"], r


@pytest.mark.parametrize("make_args, message", [
    (lambda d, j: ["--judge", str(d / "nope"), "--input", "x", "--output", "y"], "is not a model directory"),
    (lambda d, j: ["--judge", j, "--input", str(d / "missing.jsonl"), "--output", str(d / "o")], "does not exist"),
    (lambda d, j: ["--judge", j, "--input", str(d), "--output", str(d / "o")], "is not a file"),
    (lambda d, j: ["--judge", j, "--input", str(d / "in.jsonl"), "--output", str(d)], "is a directory"),
    (lambda d, j: ["--judge", j, "--input", str(d / "in.jsonl"), "--output", str(d / "in.jsonl" / "o")],
     "is not a writable directory"),
])
def test_score_cli_bad_invocation_exits_2_before_any_engine(tmp_path, tiny_judge_dir, capsys, make_args, message):
    (tmp_path / "in.jsonl").write_text("{}\n")
    assert main(["score", *make_args(tmp_path, str(tiny_judge_dir))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rl-prm score: ") and message in err[0], err


def test_score_cli_rejects_bad_numbers(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["score", "--judge", str(tmp_path), "--input", "x", "--output", "y", "--k", "0"])
    assert e.value.code == 2 and "expected a positive integer, got '0'" in capsys.readouterr().err
