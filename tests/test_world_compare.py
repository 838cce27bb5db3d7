"""The world comparison's bookkeeping: arms differ only in their reward, summaries and the report
state what the metrics say (gains with their spread over seeds), plots are written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rl_prm.world.compare import ARMS, read_metrics, summarize

ROOT = Path(__file__).resolve().parents[1]


def test_arms_are_the_recipe_with_only_the_reward_changed():
    from rl_prm.config import load_recipe
    from rl_prm.world.compare import arm_recipe

    base = load_recipe(ROOT / "recipes" / "tiny_cpu.yaml")
    cfgs = {arm: load_recipe(*arm_recipe(arm, ROOT / "recipes" / "tiny_cpu.yaml")) for arm in ARMS}
    assert arm_recipe("vr_only", "x.yaml")[0].name == "tiny_cpu_vr_only.yaml"  # the one VR-only baseline
    assert cfgs["min_form"].reward.prm.enabled and cfgs["min_form"].reward.credit.mode == "min_form"
    assert cfgs["oracle"].model.judge == "oracle" and cfgs["oracle"].reward.credit.mode == "min_form"
    assert cfgs["oracle"].reward.prm == cfgs["min_form"].reward.prm  # the same step-score settings, another judge
    assert cfgs["sum"].reward.prm.enabled and cfgs["sum"].reward.credit.mode == "sum"
    # the answer-gated arm differs from min-form only in which responses reach the judge
    assert cfgs["gated"].reward.prm.gate == "answer_correct" and cfgs["min_form"].reward.prm.gate == "none"
    assert {k: v for k, v in cfgs["gated"].reward.prm.items() if k != "gate"} == \
        {k: v for k, v in cfgs["min_form"].reward.prm.items() if k != "gate"}
    assert cfgs["gated"].reward.credit == cfgs["min_form"].reward.credit
    assert not cfgs["vr_only"].reward.prm.enabled and cfgs["vr_only"].reward.verifiable.enabled
    for arm, cfg in cfgs.items():
        for key in ("data", "rollout", "algorithm", "optim", "trainer"):
            assert cfg[key] == base[key], (arm, key)
        assert cfg.model.policy == base.model.policy


def _fake_run(d: Path, evals: dict[int, tuple[float, float]], steps_per_response: float) -> Path:
    d.mkdir(parents=True)
    rows = []
    for step in range(0, max(evals) + 1):
        row = {"step": step}
        if step:
            row.update({"hack/steps_per_response": steps_per_response, "timing/step": 2.0})
        if step in evals:
            row.update({"eval/accuracy": evals[step][0], "eval/sampled_accuracy": evals[step][1]})
        rows.append(row)
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def test_summary_states_gains_with_their_spread(tmp_path):
    from rl_prm.world.compare import plot_curves

    runs = {
        ("min_form", 0): _fake_run(tmp_path / "m0", {0: (0.2, 0.10), 5: (0.3, 0.20), 10: (0.4, 0.30)}, 4.0),
        ("min_form", 1): _fake_run(tmp_path / "m1", {0: (0.2, 0.12), 5: (0.3, 0.22), 10: (0.5, 0.40)}, 4.0),
        # later arms of a seed skip the step-0 eval (run_arms): they start from the first arm's
        ("vr_only", 0): _fake_run(tmp_path / "v0", {10: (0.2, 0.10)}, 4.0),
        ("vr_only", 1): _fake_run(tmp_path / "v1", {10: (0.3, 0.16)}, 4.0),
    }
    arms = summarize(runs)
    f = arms["min_form"]["final"]["eval/sampled_accuracy"]
    assert f["step"] == 10 and f["start_mean"] == pytest.approx(0.11) and f["end_mean"] == pytest.approx(0.35)
    assert (f["gain_min"], f["gain_max"]) == (pytest.approx(0.20), pytest.approx(0.28))
    assert arms["vr_only"]["final"]["eval/sampled_accuracy"]["gain_mean"] == pytest.approx(0.02)
    assert arms["vr_only"]["curves"]["eval/accuracy"][0] == {0: 0.2, 1: 0.2}
    assert arms["min_form"]["train_s"] == pytest.approx(20.0)  # 10 steps x 2 s, per seed

    plot_curves(arms, tmp_path / "acc.png", keys=("eval/sampled_accuracy", "eval/accuracy", "eval/trace_accuracy"),
                titles=("sampled", "greedy", "trace (no data: empty panel)"))
    assert (tmp_path / "acc.png").stat().st_size > 5000


def test_world_seeds_take_a_space_or_comma_list_and_leave_overrides():
    from rl_prm.world.__main__ import split_seeds

    assert split_seeds(["0", "1", "2"], []) == ([0, 1, 2], [])
    assert split_seeds(["0,1", "2", "trainer.total_steps=3"], ["a=1"]) == ([0, 1, 2], ["a=1", "trainer.total_steps=3"])
    with pytest.raises(ValueError, match="'x' is not an integer seed"):
        split_seeds(["0", "x"], [])


def test_a_bad_recipe_key_stops_the_world_command_before_any_build(tmp_path, capsys):
    from rl_prm.world.__main__ import main

    assert main(["--out", str(tmp_path / "w"), "trainer.no_such_key=1"]) == 2
    assert "unknown key 'trainer.no_such_key'" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_read_metrics_merges_lines_of_a_step(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "a": 1}\n{"step": 1, "b": 2}\n{"step": 2, "a": 3}\n')
    assert read_metrics(tmp_path) == {1: {"step": 1, "a": 1, "b": 2}, 2: {"step": 2, "a": 3}}


def test_world_dataset_is_fixed_and_disjoint():
    from rl_prm.data.datasets import load_data

    train = load_data("world", "train", 300, seed=0)
    test = load_data("world", "test", 100, seed=0)
    assert load_data("world", "test", 100, seed=7) == test  # the same test set for every run seed
    assert not {r["problem"] for r in train} & {r["problem"] for r in test}
    assert all(r["source"] == "world" and r["answer"].lstrip("-").isdigit() for r in train + test)
