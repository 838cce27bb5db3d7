"""End to end on CPU with the tiny models: 2 training steps (rollout -> R-PRM -> credit -> update
-> weight sync), then a resume as after a kill, on the session's local engines (conftest.local_engines)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# same name in HF and vLLM (vLLM pads the vocab rows; on CPU it repacks linear weights into
# kernel formats, so those are not comparable); tied with lm_head in the tiny policy
PARAM = "model.embed_tokens.weight"


def _steps(run_dir: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_batch_indices_are_a_function_of_the_step():
    from rl_prm.data.datasets import batch_indices

    a = [batch_indices(10, s, 4, seed=0) for s in (1, 2, 3)]
    assert sorted(a[0] + a[1] + a[2][:2]) == list(range(10))  # one epoch covers every row once
    assert batch_indices(10, 2, 4, seed=0) == a[1]  # a resumed run sees the same prompts
    assert batch_indices(10, 1, 4, seed=1) != a[0]


def test_tiny_arith_train_and_test_are_disjoint():
    from rl_prm.data.datasets import load_data

    train = load_data("tiny_arith", "train", 300, seed=0)
    test = load_data("tiny_arith", "test", None, seed=0)
    assert len(train) == 300 and len(test) == 256
    assert not {r["problem"] for r in train} & {r["problem"] for r in test}
    assert load_data("tiny_arith", "train", 300, seed=0) == train  # fixed
    with pytest.raises(ValueError, match="unknown task 'nope'; known: .*tiny_arith, world"):
        load_data("nope", "train", None, seed=0)


def test_verl_parquet_rows_carry_prompt_and_gold(tmp_path):
    from rl_prm.data.datasets import load_data
    from rl_prm.data.prep import prep

    prep(tmp_path, ["gsm8k"], limit=3, verbose=False)
    rows = load_data(str(tmp_path / "gsm8k_train.parquet"), "train", None, seed=0)
    assert len(rows) == 3
    assert rows[0]["prompt"][-1]["role"] == "user" and rows[0]["answer"] and rows[0]["problem"]
    assert rows[0]["problem"] in rows[0]["prompt"][-1]["content"]
    with pytest.raises(ValueError, match="not found"):
        load_data(str(tmp_path / "missing.parquet"), "train", None, seed=0)


@pytest.mark.parametrize("override, message", [
    ("model.policy=/nonexistent/policy", "model.policy '/nonexistent/policy': no such model directory"),
    ("algorithm.estimator=gae", "algorithm.estimator=gae needs a critic"),
    ("data.train=nope", "data.train: unknown value 'nope'"),
    ("reward.credit.mode=bogus", "reward.credit.mode: unknown value 'bogus'"),
])
def test_cli_fails_fast_with_the_reason(tmp_path, capsys, override, message):
    """Bad values exit 2 with one line naming the key, before any run dir or engine exists."""
    from rl_prm.cli import main

    rc = main(["train", str(ROOT / "recipes" / "tiny_cpu.yaml"), f"run.output_dir={tmp_path}", override])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not any(tmp_path.iterdir())


def test_cli_rejects_unknown_keys_and_backends(tmp_path, capsys):
    from rl_prm.cli import main

    assert main(["train", str(ROOT / "recipes" / "tiny_cpu.yaml"), "rollout.nn=3"]) == 2
    assert "unknown key 'rollout.nn'" in capsys.readouterr().err
    assert main(["train", str(ROOT / "recipes" / "tiny_cpu.yaml"), "trainer.backend=jax"]) == 2
    assert "trainer.backend: unknown value 'jax'; known: local, verl" in capsys.readouterr().err


@pytest.mark.slow
def test_two_steps_update_and_sync_then_resume(tmp_path, tiny_policy_dir, local_engines, local_run):
    import ray
    from transformers import AutoModelForCausalLM

    from rl_prm.backends.local import train
    from rl_prm.config import load_recipe

    common = [f"run.output_dir={tmp_path}", "run.name=e2e", *local_run, "data.test_limit=4", "optim.lr=1e-3",
              "trainer.eval_every=2", "trainer.save_every=1", "trainer.logger=[console,wandb]"]
    cfg = load_recipe(ROOT / "recipes" / "tiny_cpu.yaml", common + ["trainer.total_steps=2"])
    initial = AutoModelForCausalLM.from_pretrained(tiny_policy_dir).state_dict()[PARAM].clone()
    seen: dict[int, dict] = {}

    def on_step(step, ctx):
        learner_w = ctx["learner"].model.state_dict()[PARAM].detach()
        engine_w = ray.get(ctx["rollout"].fetch_weights.remote([PARAM]))[PARAM][: learner_w.shape[0]]
        seen[step] = {"synced": torch.equal(engine_w, learner_w),
                      "moved": float((learner_w - initial).abs().max()), "m": dict(ctx["metrics"])}

    engines = local_engines  # one policy engine for both runs below (as rl_prm.world.compare's arms share it)
    s1 = train(cfg, on_step=on_step, engines=engines)
    run_dir = tmp_path / "e2e"
    assert s1.steps == [1, 2] and s1.start_step == 1
    for step in (1, 2):
        assert seen[step]["synced"], f"engine weights != learner weights after step {step}"
        assert seen[step]["moved"] > 1e-5, f"policy weights did not change at step {step}"
    assert seen[2]["moved"] > seen[1]["moved"]
    m1, m2 = seen[1]["m"], seen[2]["m"]
    # every stage ran: R-PRM scored the steps, credit/advantages fed a real update, eval at step 2
    assert m1["prm/steps_scored"] > 0 and m1["prm/critiques"] >= m1["prm/judge_prompts_distinct"] > 0
    assert m1["prm/judge_prompts"] >= m1["prm/judge_prompts_distinct"] and m1["prm/critique_tokens"] > 0
    assert m1["prm/dedup_frac"] == pytest.approx(1 - m1["prm/judge_prompts_distinct"] / m1["prm/judge_prompts"])
    assert m1["actor/grad_norm"] > 0 and m1["actor/response_tokens"] > 0
    for k in ("timing/generate", "timing/score", "timing/credit", "timing/update", "timing/sync", "timing/step",
              "perf/throughput", "response_length/mean", "reward/mean", "reward/vr_mean", "reward/prm_mean"):
        assert k in m1, k
    assert "eval/accuracy" in m2 and "eval/accuracy" not in m1
    # step 2 was sampled by the engine after the step-1 sync: its log-probs are the learner's
    assert m2["rollout/logprob_abs_diff_max"] < 1e-3
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert ckpts == ["step_000001", "step_000002"]
    assert (run_dir / "config.yaml").is_file() and _steps(run_dir) == [0, 1, 2]
    # val_before_train: the starting policy is evaluated and logged at step 0; eval_samples adds
    # the mean accuracy of sampled responses
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    step0 = [r for r in rows if r["step"] == 0][0]
    assert "eval/accuracy" in step0 and "eval/sampled_accuracy" in step0 and "actor/grad_norm" not in step0
    assert "eval/sampled_accuracy" in m2

    # --- a kill after the step-2 checkpoint: the killed run had already logged step 3 and left a
    # half-written checkpoint; restart with total_steps=3 (verifiable reward only: no judge engine)
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 3, "time": 0.0, "reward/mean": 123.0}) + "\n")
    (run_dir / "checkpoints" / ".tmp-step_000003-99999").mkdir()
    cfg2 = load_recipe(ROOT / "recipes" / "tiny_cpu_vr_only.yaml", common + [
        "trainer.total_steps=3", "algorithm.estimator=outcome_grpo"])
    # spoil the shared engine's weights: the resumed run must push its checkpoint's weights in
    shared = engines.rollout(cfg2, str(tiny_policy_dir))
    spoiled = [(k, v * 0.5) for k, v in AutoModelForCausalLM.from_pretrained(tiny_policy_dir).state_dict().items()]
    ray.get(shared.load_weights.remote(spoiled))
    resumed = {}

    def on_resumed_step(step, ctx):  # the shared engine got the checkpoint's weights, not run 1's last ones
        resumed["m"] = dict(ctx["metrics"])

    s2 = train(cfg2, on_step=on_resumed_step, engines=engines)
    assert resumed["m"]["rollout/logprob_abs_diff_max"] < 1e-3
    assert s2.start_step == 3 and s2.steps == [3]
    assert s2.run_id == s1.run_id  # same W&B run
    assert _steps(run_dir) == [0, 1, 2, 3]  # the killed run's step-3 line was dropped, no duplicates
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["reward/mean"] != 123.0
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert ckpts == ["step_000002", "step_000003"]  # keep 2, stale temp dir removed
    from rl_prm.tracking import Tracker

    assert [rid for _, rid in Tracker.offline_runs(run_dir)] == [s1.run_id, s1.run_id]  # one W&B run, resumed


@pytest.mark.slow
def test_pipelined_steps_learn_from_rollouts_one_update_old(tmp_path, local_engines, local_run):
    """trainer.pipeline: step t+1's rollouts are sampled while step t learns, so from step 2 on the batch
    comes from the weights before the last update (policy lag 1); PPO's ratio is taken against the
    engine's sampling log-probs of those weights, and the engine still ends every step with the learner's
    weights."""
    import ray

    from rl_prm.backends.local import train
    from rl_prm.config import load_recipe

    cfg = load_recipe(ROOT / "recipes" / "tiny_cpu.yaml", [
        f"run.output_dir={tmp_path}", "run.name=pipe", *local_run, "data.test_limit=4", "optim.lr=1e-3",
        "trainer.eval_every=0", "trainer.save_every=0", "trainer.logger=[console]", "trainer.total_steps=3",
        "trainer.pipeline=true", "optim.ppo_epochs=1"])
    seen: dict[int, dict] = {}

    def on_step(step, ctx):
        learner_w = ctx["learner"].model.state_dict()[PARAM].detach()
        engine_w = ray.get(ctx["rollout"].fetch_weights.remote([PARAM]))[PARAM][: learner_w.shape[0]]
        seen[step] = {"synced": torch.equal(engine_w, learner_w), "m": dict(ctx["metrics"])}

    s = train(cfg, on_step=on_step, engines=local_engines)
    assert s.steps == [1, 2, 3]
    assert all(seen[t]["synced"] for t in (1, 2, 3)), "engine weights != learner weights after a step"
    m = {t: seen[t]["m"] for t in (1, 2, 3)}
    assert [m[t]["pipeline/policy_lag"] for t in (1, 2, 3)] == [0.0, 1.0, 1.0]
    # step 1 is sampled by the learner's own weights: ratio 1; steps 2 and 3 by the weights one update back
    assert m[1]["rollout/logprob_abs_diff_max"] < 1e-3 and abs(m[1]["actor/ppo_kl"]) < 1e-6
    for t in (2, 3):
        assert m[t]["rollout/logprob_abs_diff_max"] > 10 * max(m[1]["rollout/logprob_abs_diff_max"], 1e-4)
        assert abs(m[t]["actor/ppo_kl"]) > 1e-6 and m[t]["actor/grad_norm"] > 0
        assert "timing/wait_next_rollouts" in m[t - 1] and m[t]["timing/generate_engine"] > 0
    assert "timing/wait_next_rollouts" not in m[3]  # nothing is generated after the last step


@pytest.mark.slow
def test_streamed_scoring_gives_the_scores_of_scoring_the_whole_batch(tmp_path, local_engines, local_run):
    """reward.prm.stream: each prompt's responses go to the judge as soon as they finish generating; the
    step's rollouts, step scores and rewards are the ones of scoring the batch after generation."""
    from rl_prm.backends.local import train
    from rl_prm.config import load_recipe

    seen: dict[str, dict] = {}
    for stream in (False, True):
        cfg = load_recipe(ROOT / "recipes" / "tiny_cpu.yaml", [
            f"run.output_dir={tmp_path}", f"run.name=stream{int(stream)}", *local_run, "rollout.prompts_per_step=3",
            "data.test_limit=4", "trainer.eval_every=0", "trainer.save_every=0", "trainer.logger=[console]",
            "trainer.total_steps=1", f"reward.prm.stream={str(stream).lower()}"])
        train(cfg, on_step=lambda step, ctx, k=stream: seen.__setitem__(k, dict(ctx["metrics"])), engines=local_engines)
    batch, streamed = seen[False], seen[True]
    assert streamed["prm/stream_calls"] >= 1 and "prm/stream_calls" not in batch
    for key in ("reward/mean", "reward/prm_mean", "reward/vr_mean", "response_length/mean", "prm/steps_scored"):
        assert streamed[key] == pytest.approx(batch[key], abs=1e-6), key
    assert streamed["prm/steps_scored"] > 0


@pytest.mark.slow
def test_oracle_judge_trains_through_the_local_backend(tmp_path, local_engines, local_run):
    """model.judge=oracle (the world's checker as step scorer, no engine) runs the same loop as the R-PRM
    judge: scored steps, prm/* metrics, a checkpoint at the end; with reward.prm.gate=answer_correct the
    wrong answers are kept from it and counted."""
    from rl_prm.backends.local import train
    from rl_prm.config import load_recipe

    overrides = [o for o in local_run if not o.startswith("model.judge=")]
    cfg = load_recipe(ROOT / "recipes" / "tiny_cpu.yaml", [
        f"run.output_dir={tmp_path}", "run.name=oracle", *overrides, "model.judge=oracle", "data.test_limit=4",
        "trainer.eval_every=0", "trainer.logger=[console]", "trainer.total_steps=2", "reward.prm.gate=answer_correct"])
    seen: dict[int, dict] = {}
    s = train(cfg, on_step=lambda step, ctx: seen.update({step: dict(ctx["metrics"])}), engines=local_engines)
    assert s.steps == [1, 2]
    batch = cfg.rollout.prompts_per_step * cfg.rollout.n
    for t in (1, 2):
        m = seen[t]
        assert "prm/steps_fallback" in m and m["timing/score"] >= 0
        assert m["prm/gated_responses"] == round(batch * (1 - m["reward/vr_mean"]))  # every wrong answer, no other
    assert (tmp_path / "oracle" / "checkpoints").is_dir()
