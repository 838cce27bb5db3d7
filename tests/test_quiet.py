"""A quiet console: library and engine chatter goes to log files (rl_prm.logs), `--verbose` keeps it,
and vLLM's misleading rotary-embedding reload warning is filtered where it is made."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from rl_prm import logs

BIN = Path(sys.executable).with_name("rl-prm")


def test_session_sends_library_loggers_and_warnings_to_the_log_dir(tmp_path, capfd):
    ray_logger = logging.getLogger("ray")
    before = (ray_logger.propagate, list(ray_logger.handlers), ray_logger.level)
    with logs.session("x"):
        logging.getLogger("transformers.modeling_utils").warning("chatter before the dir is known")
        logs.set_dir(tmp_path / "logs")
        logging.getLogger("ray.worker").error("ray chatter")
        warnings.warn("a library FutureWarning", FutureWarning)
        print("our line", file=sys.stderr)
    out, err = capfd.readouterr()
    assert "our line" in err and "chatter" not in out + err and "FutureWarning" not in out + err
    assert f"engine and library logs in {(tmp_path / 'logs').resolve()}" in err
    text = (tmp_path / "logs" / "python.log").read_text()
    assert "chatter before the dir is known" in text and "ray chatter" in text and "a library FutureWarning" in text
    # the session is over: the library loggers are theirs again
    assert (ray_logger.propagate, list(ray_logger.handlers), ray_logger.level) == before and not logs.routing()


def test_engine_output_redirects_file_descriptors_and_children(tmp_path, capfd):
    with logs.session("x"):
        logs.set_dir(tmp_path)
        with logs.engine_output("engine") as path:
            os.write(1, b"C-level stdout chatter\n")
            os.write(2, b"C-level stderr chatter\n")
            subprocess.run([sys.executable, "-c", "import sys; print('child chatter', file=sys.stderr)"], check=True)
        os.write(2, b"back on the console\n")
    out, err = capfd.readouterr()
    assert "chatter" not in out + err and "back on the console" in err
    text = Path(path).read_text()
    assert all(s in text for s in ("C-level stdout chatter", "C-level stderr chatter", "child chatter"))


def test_an_engine_that_fails_to_start_names_its_log(tmp_path):
    with logs.session("x"):
        logs.set_dir(tmp_path)
        with pytest.raises(RuntimeError) as e:
            with logs.engine_output("engine"):
                raise RuntimeError("engine core failed")
    assert f"engine log: {(tmp_path / 'engine.log').resolve()}" in e.value.__notes__


def test_verbose_routes_nothing(tmp_path, capfd, monkeypatch):
    monkeypatch.delenv("RL_PRM_VERBOSE", raising=False)
    with logs.session("x", verbose_flag=True):
        assert logs.verbose() and not logs.routing() and logs.log_file("rollout") is None
        with logs.engine_output("engine") as path:
            os.write(2, b"engine chatter\n")
    assert path is None and "engine chatter" in capfd.readouterr().err
    assert "RL_PRM_VERBOSE" not in os.environ  # not left set for what runs next in this process


def test_cli_strips_verbose_anywhere_on_the_line(tmp_path, capsys, monkeypatch):
    from rl_prm.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["data", "list", "--verbose"]) == 0 and "gsm8k" in capsys.readouterr().out
    assert main(["--verbose", "data", "list"]) == 0


class RotaryEmbedding(torch.nn.Module):  # vLLM's layer in miniature: one computed, non-persistent buffer
    def __init__(self):
        super().__init__()
        self.register_buffer("cos_sin_cache", torch.zeros(4, 2), persistent=False)


class Norm(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(2))


def test_reload_filter_drops_only_computed_buffer_layers():
    from rl_prm.generate import _ComputedBufferFilter

    model = torch.nn.Sequential(RotaryEmbedding(), Norm())
    f = _ComputedBufferFilter(model)

    def rec(name):
        return logging.LogRecord("vllm", logging.WARNING, "layerwise.py", 266, "%s: Failed to load weights", (name,), None)

    assert not f.filter(rec("RotaryEmbedding"))  # the misleading line
    assert f.filter(rec("Norm"))  # a layer with parameters that did not load is still reported


@pytest.mark.slow
def test_score_console_shows_only_our_lines(tmp_path, tiny_judge_dir):
    """`rl-prm score` starts a vLLM engine: the console keeps its progress bar and summary; the
    engine's start-up warnings are in runs/logs/score-*/ (and --verbose would print them)."""
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"question": "Ann has 2 pens and buys 3. How many?", "steps": ["2 + 3 = 5."]}) + "\n")
    proc = subprocess.run([str(BIN), "score", "--judge", str(tiny_judge_dir), "--input", str(inp), "--output",
                           str(tmp_path / "out.jsonl"), "--k", "1", "--max-critique-tokens", "16",
                           "--max-model-len", "1024"], cwd=tmp_path, capture_output=True, text=True, timeout=900,
                          env={k: v for k, v in os.environ.items() if k != "RL_PRM_VERBOSE"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [x for x in (proc.stdout + proc.stderr).replace("\r", "\n").splitlines() if x.strip()]
    ours = [x for x in lines if x.startswith(("rl-prm", "R-PRM scoring"))]
    assert ours == lines, [x for x in lines if x not in ours]
    (log_dir,) = (tmp_path / "runs" / "logs").iterdir()
    text = "".join(p.read_text() for p in log_dir.glob("*.log"))
    assert "EngineCore" in text and "WARNING" in text  # the chatter is kept, in the file
