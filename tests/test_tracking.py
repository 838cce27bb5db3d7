"""rl_prm.tracking.Tracker: offline W&B run + JSONL history, resume without duplicate steps."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from rl_prm.tracking import Tracker


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def read_wandb_records(path: Path):
    """Records of a .wandb transaction log (LevelDB log format: 7-byte file header, 32 KiB
    blocks, each record chunk = crc32 u32, length u16, type u8 (1 full, 2 first, 3 middle,
    4 last); payload = wandb_internal_pb2.Record)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a .wandb file"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 2):
            buf = chunk
        elif kind in (3, 4):
            buf += chunk
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(buf)
            yield rec


def wandb_history(run_file: Path) -> dict[int, dict[str, str]]:
    """step -> {key: value_json} from the history records of an offline run."""
    out: dict[int, dict[str, str]] = {}
    for rec in read_wandb_records(run_file):
        if rec.WhichOneof("record_type") == "history":
            items = {(i.key or "/".join(i.nested_key)): i.value_json for i in rec.history.item}
            out[int(items["_step"])] = items
    return out


@pytest.fixture(scope="module")
def offline_runs(tmp_path_factory):
    """One W&B offline run killed after step 4 (its last checkpoint was at step 2), then resumed
    from the checkpoint: steps 3..6 are logged again. Two wandb.init calls for the module."""
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "offline")
    run_dir = tmp_path_factory.mktemp("run")
    cfg = {"algo": {"credit": "min_form", "lr": 1e-6}}
    t1 = Tracker(run_dir, project="rl-prm-test", name="first", config=cfg)
    for s in range(5):
        t1.log({"reward/mean": 0.1 * s, "actor/kl": 0.01 * s, "prm/step_scores_hist": [0.1, 0.5, 0.9, 0.95]}, step=s)
    t1.log({"eval/accuracy": 0.25}, step=4)  # a second line for step 4 (merged by readers)
    t1.log_rollouts([{"prompt": "1+1?", "response": "2\n\n\\boxed{2}", "step_scores": [0.9, 0.8],
                      "critique": "Verification: Is the step correct (Yes/No)? Yes", "vr": 1.0, "answer": 2},
                     {"prompt": "1/2?", "response": "", "step_scores": [], "critique": None, "vr": 0,
                      "answer": "\\frac12"}], step=4)  # mixed column types must not break the Table
    t1.warn("actor/kl spiked", step=4)
    t1.finish()  # (a real kill leaves the same files, minus W&B's final summary)
    first_id = t1.run_id

    resume_id = Tracker.saved_run_id(run_dir)
    t2 = Tracker(run_dir, project="rl-prm-test", name="first", config=cfg, resume_id=resume_id)
    for s in range(3, 7):
        t2.log({"reward/mean": 1.0 + s}, step=s)
    t2.finish()
    mp.undo()
    return run_dir, first_id, resume_id, t2


def test_offline_wandb_run_written_under_run_dir(offline_runs):
    run_dir, first_id, _, _ = offline_runs
    runs = Tracker.offline_runs(run_dir)
    assert [rid for _, rid in runs] == [first_id, first_id]  # one W&B run, resumed
    first_dir = runs[0][0]
    hist = wandb_history(first_dir / f"run-{first_id}.wandb")
    assert sorted(hist) == [0, 1, 2, 3, 4]
    assert [float(hist[s]["reward/mean"]) for s in range(5)] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert float(hist[4]["eval/accuracy"]) == 0.25
    assert json.loads(hist[2]["prm/step_scores_hist/_type"]) == "histogram"
    assert sum(json.loads(hist[2]["prm/step_scores_hist/values"])) == 4  # 4 values binned
    assert json.loads(hist[4]["rollouts/_type"]) == "table-file" and json.loads(hist[4]["rollouts/nrows"]) == 2
    assert json.loads(hist[4]["warnings/_type"]) == "table-file"
    (run,) = [r.run for r in read_wandb_records(first_dir / f"run-{first_id}.wandb") if r.HasField("run")]
    assert (run.run_id, run.project, run.display_name) == (first_id, "rl-prm-test", "first")
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert config["algo"] == {"credit": "min_form", "lr": 1e-6}


def test_resume_keeps_run_id_and_has_no_duplicate_steps(offline_runs):
    run_dir, first_id, resume_id, t2 = offline_runs
    assert resume_id == first_id and t2.run_id == first_id
    rows = _jsonl(run_dir / "metrics.jsonl")
    steps = [r["step"] for r in rows if "reward/mean" in r]
    assert steps == [0, 1, 2, 3, 4, 5, 6]  # 3 and 4 replaced by the resumed run's values
    by_step = {r["step"]: r["reward/mean"] for r in rows if "reward/mean" in r}
    assert by_step[2] == pytest.approx(0.2) and by_step[3] == 4.0 and by_step[6] == 7.0
    assert not any("eval/accuracy" in r for r in rows)  # written at step 4 after the checkpoint
    # the other JSONL files are cut at the same step
    assert _jsonl(run_dir / "rollouts.jsonl") == []  # its only rollout was at step 4
    assert all(r["step"] < 3 for r in _jsonl(run_dir / "histograms.jsonl"))
    assert t2.dropped_lines > 0
    resumed = Tracker.offline_runs(run_dir)[1][0]
    hist = wandb_history(resumed / f"run-{first_id}.wandb")
    assert {s: float(h["reward/mean"]) for s, h in hist.items()} == {3: 4.0, 4: 5.0, 5: 6.0, 6: 7.0}


def test_jsonl_sidecars_before_resume(tmp_path):
    t = Tracker(tmp_path, "p", "n", {}, loggers=("console",))
    t.log_rollouts([{"prompt": "q", "response": "r", "step_scores": [0.5], "critique": "c", "vr": 0.0}], step=1)
    t.warn("something odd", step=1)
    t.log({"prm/first_error_step_hist": [1, 2, 2, 3]}, step=1)
    t.finish()
    (ro,) = _jsonl(tmp_path / "rollouts.jsonl")
    assert ro == {"step": 1, "prompt": "q", "response": "r", "step_scores": [0.5], "critique": "c", "vr": 0.0}
    (w,) = _jsonl(tmp_path / "warnings.jsonl")
    assert w["step"] == 1 and w["message"] == "something odd"
    (h,) = _jsonl(tmp_path / "histograms.jsonl")
    assert h["key"] == "prm/first_error_step_hist" and h["n"] == 4 and sum(h["counts"]) == 4
    assert not (tmp_path / "metrics.jsonl").exists()  # a histogram-only call writes no scalar line


def test_explicit_resume_step_and_partial_last_line(tmp_path):
    t = Tracker(tmp_path, "p", "n", {}, loggers=())
    for s in range(6):
        t.log({"reward/mean": float(s)}, step=s)
    t.finish()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 6, "reward/me')  # killed mid-write
    t2 = Tracker(tmp_path, "p", "n", {}, loggers=(), resume_id=t.run_id, resume_step=4)
    assert [r["step"] for r in _jsonl(tmp_path / "metrics.jsonl")] == [0, 1, 2, 3]
    t2.log({"reward/mean": 40.0}, step=4)
    t2.finish()
    assert [r["reward/mean"] for r in _jsonl(tmp_path / "metrics.jsonl")] == [0, 1, 2, 3, 40]


def test_new_run_in_used_dir_sets_old_history_aside(tmp_path):
    t = Tracker(tmp_path, "p", "n", {}, loggers=())
    t.log({"reward/mean": 1.0}, step=0)
    t.finish()
    t2 = Tracker(tmp_path, "p", "n2", {}, loggers=())
    t2.log({"reward/mean": 2.0}, step=0)
    t2.finish()
    assert [r["reward/mean"] for r in _jsonl(tmp_path / "metrics.jsonl")] == [2.0]
    assert [r["reward/mean"] for r in _jsonl(tmp_path / f"metrics.{t.run_id}.jsonl")] == [1.0]
    assert t2.run_id != t.run_id and Tracker.saved_run_id(tmp_path) == t2.run_id


def test_console_line(tmp_path, capsys):
    with Tracker(tmp_path, "p", "n", {}, loggers=("console",)) as t:
        t.log({"reward/mean": 0.5, "actor/kl": 0.0002, "zzz/other": 1.0}, step=3)
        t.warn("kl spike", step=3)
    out, err = capsys.readouterr()
    assert "step 3 | reward/mean 0.5 | actor/kl 2.000e-04" in out and "zzz/other" not in out
    assert "WARNING step 3: kl spike" in err


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown logger 'tensorbord'"):
        Tracker(tmp_path, "p", "n", {}, loggers=("console", "tensorbord"))
    t = Tracker(tmp_path, "p", "n", {}, loggers=())
    with pytest.raises(TypeError, match="'reward/mean'.*str"):
        t.log({"reward/mean": "high"}, step=0)
    with pytest.raises(ValueError, match="step"):
        t.log({"a": 1.0}, step=-1)
    with pytest.raises(TypeError, match="list of dicts"):
        t.log_rollouts(["not a dict"], step=0)
    t.finish()
    t.finish()  # idempotent
    with pytest.raises(RuntimeError, match="finished"):
        t.log({"a": 1.0}, step=1)


def test_wandb_defaults_offline_and_init_failure_falls_back(tmp_path, monkeypatch):
    import wandb

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    seen = {}

    def failing_init(**kw):
        import os

        seen["mode"], seen["kw"] = os.environ.get("WANDB_MODE"), kw
        raise RuntimeError("no network")

    monkeypatch.setattr(wandb, "init", failing_init)
    t = Tracker(tmp_path, "proj", "name", {"x": 1}, loggers=("console", "wandb"), resume_id="abc12345")
    assert seen["mode"] == "offline"  # no account configured -> offline
    assert seen["kw"]["id"] == "abc12345" and seen["kw"]["resume"] == "allow" and seen["kw"]["dir"] == str(tmp_path)
    t.log({"reward/mean": 1.0}, step=0)  # training goes on with console + JSONL
    t.finish()
    (w,) = _jsonl(tmp_path / "warnings.jsonl")
    assert "logger 'wandb' failed to start" in w["message"] and "no network" in w["message"]
    assert _jsonl(tmp_path / "metrics.jsonl")[0]["reward/mean"] == 1.0
