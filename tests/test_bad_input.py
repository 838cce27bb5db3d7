"""CLIs that read users' files fail with one line naming the file and line (exit 2), never a
traceback: `eval --scores/--samples`, `data prep`. (`score` keeps a status per line: test_score_cli;
recipes: test_config.)"""

from __future__ import annotations

import json

import pytest

from rl_prm.cli import main


def _one_line(capsys) -> str:
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("content, message", [
    (b'{"id": "gsm8k-0", "p_yes": [[0.9]]}\n{"id": "gsm8k-1", "p_y\xe9s": 1}\n', ":2: not UTF-8 (byte 0xe9"),
    (b'\n\n{"id": "a", "step_scores": [0.5]}\n{oops\n', ":4: not JSON"),
    (b'{"id": "a", "p_yes": [["0.9"]]}\n', ":1: id 'a': 'p_yes' must be a list"),
    (b'{"id": "a", "step_scores": 0.5}\n', ":1: id 'a': 'step_scores' must be a list"),
    (b'{"step_scores": [0.5]}\n', ":1: no 'id'"),
    (b'[{"id": "a"}]\n', ":1: expected a JSON object, got array"),
    (b'{"id": "a", "step_scores": [1]}\n{"id": "a", "step_scores": [1]}\n', ":2: duplicate id 'a'"),
    (b'{"id": "a", "step_scores": [NaN]}\n', ":1: not JSON (NaN is not a JSON value)"),
])
def test_eval_scores_file_errors_name_the_line(tmp_path, capsys, content, message):
    scores = tmp_path / "scores.jsonl"
    scores.write_bytes(content)
    out = tmp_path / "out"
    rc = main(["eval", "processbench", "--scores", str(scores), "--splits", "gsm8k", "--limit", "2", "--out", str(out)])
    line = _one_line(capsys)
    assert rc == 2 and line.startswith("rl-prm eval processbench: ") and f"{scores}{message}" in line, line
    assert not out.exists()  # a failed run leaves no empty output dir


def test_eval_scores_path_that_is_a_directory(tmp_path, capsys):
    assert main(["eval", "prmbench", "--scores", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "Is a directory" in _one_line(capsys)


def test_eval_math_samples_with_wrong_types(tmp_path, capsys):
    samples = tmp_path / "samples.jsonl"
    samples.write_text(json.dumps({"id": "math500-0", "responses": "not a list"}) + "\n")
    assert main(["eval", "math", "--samples", str(samples), "--limit", "1", "--out", str(tmp_path / "o")]) == 2
    assert f"{samples}:1: id 'math500-0': 'responses' must be a list of strings" in _one_line(capsys)


@pytest.mark.parametrize("args, message", [
    (["--out", "{file}"], "is a file, not a folder"),
    (["--out", "{file}/sub"], "is a file, not a folder"),
    (["--out", "{dir}/p", "--datasets", "nope"], "unknown dataset 'nope'"),
])
def test_data_prep_bad_invocation(tmp_path, capsys, args, message):
    (tmp_path / "f").write_text("x")
    args = [a.format(file=tmp_path / "f", dir=tmp_path) for a in args]
    assert main(["data", "prep", *args]) == 2
    assert message in _one_line(capsys) and not (tmp_path / "p").exists()


def test_data_prep_limit_must_be_positive(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["data", "prep", "--out", str(tmp_path / "p"), "--limit", "0"])
    assert e.value.code == 2 and "expected a positive integer, got '0'" in capsys.readouterr().err
