"""`rl-prm plot RUN_DIR`: PNG panels from a synthetic metrics.jsonl."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rl_prm.cli import main
from rl_prm.commands.plot import load_history, render


def _write_run(run_dir, steps=40, with_eval=True, with_hack=True):
    rng = np.random.default_rng(0)
    with open(run_dir / "metrics.jsonl", "w") as f:
        for s in range(steps):
            m = {"step": s, "time": 0.0, "reward/mean": 0.2 + 0.01 * s + 0.02 * rng.standard_normal(),
                 "reward/std": 0.1, "reward/prm_mean": 0.3 + 0.005 * s, "actor/kl": 1e-3 * s,
                 "actor/pg_loss": 0.05 * rng.standard_normal(), "prm/step_score_mean": 0.5 + 0.01 * s,
                 "prm/frac_responses_with_wrong_step": 0.6 - 0.01 * s}
            for k in range(1, 6):
                m[f"prm/step_score_mean@{k}"] = 0.9 - 0.1 * k + 0.005 * s
            if with_hack:
                m.update({"hack/steps_per_response": 6 - 0.1 * s, "hack/mean_step_chars": 80 + 2 * s,
                          "hack/repetition": 0.05, "hack/prm_vr_agreement": 0.7})
                m.update({"prm/judge_prompts": 140 - s, "prm/judge_prompts_distinct": 90 - s, "prm/dedup_frac": 0.36,
                          "prm/gated_responses": 12 - 0.1 * s, "prm/critique_tokens": 15000 - 100 * s})
                m.update({"judge/false_accept_rate": 0.2 + 0.01 * s, "judge/flawed_passed_rate": 0.15 + 0.01 * s,
                          "judge/false_reject_rate": 0.01, "process/trace_rate": 0.4 + 0.005 * s,
                          "process/answer_rate": 0.6, "process/miracle_rate": 0.2 - 0.005 * s})
            f.write(json.dumps(m) + "\n")
            if with_eval and s % 10 == 0:
                f.write(json.dumps({"step": s, "eval/accuracy": 0.1 + 0.01 * s}) + "\n")
        f.write('{"step": 40, "reward/mean": 0.')  # half-written last line of a killed run
    (run_dir / "warnings.jsonl").write_text(json.dumps({"step": 20, "message": "actor/kl spiked"}) + "\n")


def test_load_history_merges_lines_of_a_step(tmp_path):
    _write_run(tmp_path)
    h = load_history(tmp_path / "metrics.jsonl")
    assert h.bad_lines == 1
    assert h.rows[10]["eval/accuracy"] == pytest.approx(0.2) and "reward/mean" in h.rows[10]
    assert h.series("eval/accuracy")[0] == [0, 10, 20, 30]
    assert "time" not in h.keys


def test_plot_cli_renders_pngs(tmp_path, capsys):
    import matplotlib.image as mpimg

    _write_run(tmp_path)
    out = tmp_path / "png"
    assert main(["plot", str(tmp_path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    names = {p.stem for p in out.glob("*.png")}
    assert names == {"reward", "judge_cost", "judge_truth", "eval", "kl", "actor", "prm_by_step", "prm", "hacking"}
    assert "skipped length: no response_length/* keys" in printed
    assert "skipped process: no eval/trace_accuracy keys (world data only)" in printed
    for p in out.glob("*.png"):
        img = mpimg.imread(p)
        assert img.shape[0] > 200 and img.shape[1] > 300
        assert img[..., :3].std() > 0.05  # not a blank canvas


def test_plot_skips_missing_panels_and_defaults_out_dir(tmp_path, capsys):
    _write_run(tmp_path, with_eval=False, with_hack=False)
    written, skipped = render(tmp_path)
    assert all(p.parent == tmp_path / "plots" for p in written)
    assert {"eval", "hacking", "length", "judge_cost"} <= set(skipped)
    assert "reward" not in skipped and "prm_by_step" not in skipped


def test_plot_errors_are_clear(tmp_path):
    with pytest.raises(SystemExit, match="metrics.jsonl not found"):
        main(["plot", str(tmp_path)])
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(SystemExit, match="holds no metrics"):
        main(["plot", str(tmp_path)])


def test_process_panel_for_world_runs(tmp_path):
    """World runs log trace / answer accuracy and miracle rate at each eval: they get their own panel
    (and leave the accuracy panel); other runs skip it with the reason."""
    import matplotlib.image as mpimg

    _write_run(tmp_path, with_hack=False)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write("\n")
        for s in (0, 10, 20):
            f.write(json.dumps({"step": s, "eval/trace_accuracy": 0.3 + 0.01 * s, "eval/answer_accuracy": 0.4 + 0.01 * s,
                                "eval/miracle_rate": 0.1, "eval/greedy_trace_accuracy": 0.8,
                                "eval/greedy_miracle_rate": 0.02}) + "\n")
    written, skipped = render(tmp_path, tmp_path / "png")
    assert tmp_path / "png" / "process.png" in written and "process" not in skipped
    assert mpimg.imread(tmp_path / "png" / "process.png")[..., :3].std() > 0.05
    other = tmp_path / "other"
    other.mkdir()
    _write_run(other)
    assert "world data only" in render(other, other / "png")[1]["process"]
