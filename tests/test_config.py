"""Recipe schema: typos fail at start naming the key; overrides apply; the resolved recipe is saved."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from rl_prm.config import load_recipe, save_resolved

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


def _write(tmp_path, text: str) -> Path:
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text, key", [
    ("run: {name: x}\nrollout: {nn: 3}\n", "rollout.nn"),
    ("run: {name: x}\nreward: {prm: {kk: 3}}\n", "reward.prm.kk"),
    ("run: {name: x}\nrollouts: {n: 3}\n", "rollouts"),
    ("run: {name: x}\nalgorithm: {estimater: grpo}\n", "algorithm.estimater"),
])
def test_unknown_key_in_file_is_named(tmp_path, text, key):
    p = _write(tmp_path, text)
    with pytest.raises(ValueError) as e:
        load_recipe(p)
    assert f"unknown key '{key}'" in str(e.value) and str(p) in str(e.value)


@pytest.mark.parametrize("override, key", [
    ("rollout.nn=2", "rollout.nn"),
    ("reward.credit.modee=sum", "reward.credit.modee"),
    ("trainer.total_step=5", "trainer.total_step"),
])
def test_unknown_override_is_named(tmp_path, override, key):
    with pytest.raises(ValueError, match=f"unknown key '{key}'"):
        load_recipe(_write(tmp_path, "run: {name: x}\n"), [override])


@pytest.mark.parametrize("override, key", [("rollout.n=abc", "rollout.n"), ("reward.prm.enabled=maybe", "reward.prm.enabled"),
                                           ("optim.lr=fast", "optim.lr")])
def test_mistyped_value_is_named(tmp_path, override, key):
    with pytest.raises(ValueError, match=f"bad value for key '{key}'"):
        load_recipe(_write(tmp_path, "run: {name: x}\n"), [override])


@pytest.mark.parametrize("override, key", [("rollout.n=0", "rollout.n"), ("trainer.total_steps=-1", "trainer.total_steps"),
                                           ("reward.prm.fallback_score=2", "reward.prm.fallback_score"),
                                           ("trainer.logger=[console,tensorboard]", "trainer.logger"),
                                           ("trainer.logger=[jsonl]", "trainer.logger")])
def test_out_of_range_values_are_named(tmp_path, override, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        load_recipe(_write(tmp_path, "run: {name: x}\n"), [override])


def test_overrides_apply_over_file_over_defaults(tmp_path):
    p = _write(tmp_path, "run: {name: x}\nrollout: {n: 3, max_tokens: 64}\n")
    cfg = load_recipe(p, ["rollout.n=8", "reward.prm.early_reject_threshold=0.3", "data.train_limit=null",
                          "trainer.logger=[console]", "trainer.backend=verl", "trainer.gpus_per_node=1",
                          "verl.actor_rollout_ref.rollout.name=vllm"])
    assert cfg.rollout.n == 8  # override beats file
    assert cfg.rollout.max_tokens == 64  # file beats default
    assert cfg.rollout.temperature == 1.0  # default
    assert cfg.reward.prm.early_reject_threshold == 0.3 and cfg.data.train_limit is None
    assert list(cfg.trainer.logger) == ["console"]
    assert cfg.verl.actor_rollout_ref.rollout.name == "vllm"  # free-form section
    with pytest.raises(Exception):  # struct mode: a typo in code fails too
        cfg.rollout.nn = 1


def test_run_name_is_required(tmp_path):
    with pytest.raises(ValueError, match="run.name"):
        load_recipe(_write(tmp_path, "rollout: {n: 2}\n"))
    assert load_recipe(_write(tmp_path, "rollout: {n: 2}\n"), ["run.name=y"]).run.name == "y"


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="nope.yaml: file not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_save_resolved_round_trips(tmp_path):
    cfg = load_recipe(_write(tmp_path, "run: {name: x}\n"), ["rollout.n=5", "reward.credit.clip_eta=0.1"])
    out = save_resolved(cfg, tmp_path / "run")
    assert out == tmp_path / "run" / "config.yaml"
    again = load_recipe(out)
    assert OmegaConf.to_container(again) == OmegaConf.to_container(cfg)
    assert again.rollout.n == 5 and again.reward.credit.clip_eta == 0.1


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_shipped_recipes_match_the_schema(path):
    cfg = load_recipe(path)
    assert cfg.run.name


def test_tiny_recipes_are_the_embedded_default():
    root = Path(__file__).resolve().parents[1] / "recipes"
    cfg = load_recipe(root / "tiny_cpu.yaml")
    assert cfg.trainer.backend == "local" and cfg.model.policy == "world" and cfg.model.judge == "world"
    assert cfg.data.train == cfg.data.test == "world" and cfg.trainer.val_before_train
    assert cfg.reward.prm.enabled and cfg.algorithm.estimator == "rprm_rloo" and cfg.reward.credit.mode == "min_form"
    vr = load_recipe(root / "tiny_cpu_vr_only.yaml")
    # the one VR-only baseline: the same estimator and options with the process reward removed
    assert not vr.reward.prm.enabled and vr.reward.verifiable.enabled
    assert vr.algorithm == cfg.algorithm
    assert vr.model.policy == cfg.model.policy
    for key in ("data", "rollout", "optim"):  # the baseline differs only in its reward
        assert vr[key] == cfg[key], key


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    p = _write(tmp_path, "run:\n  name: x\nrollout:\n  n: [4\n  temperature: 1.0\n")
    with pytest.raises(ValueError) as e:
        load_recipe(p)
    msg = str(e.value)
    assert str(p) in msg and "YAML syntax error at line" in msg and "\n" not in msg


@pytest.mark.parametrize("override, message", [
    ("reward.credit.mode=bogus", "reward.credit.mode: unknown value 'bogus'; known: future_min, min_form, sum"),
    ("reward.credit.score_map=identity", "reward.credit.score_map: unknown value 'identity'; known: 2p-1, p"),
    ("algorithm.estimator=ppo", "algorithm.estimator: unknown value 'ppo'"),
    ("algorithm.kl_type=k9", "algorithm.kl_type: unknown value 'k9'"),
    ("data.train=nope", "data.train: unknown value 'nope'; known: gsm8k, math, tiny_arith, world"),
    ("data.test=/no/such.parquet", "data.test: parquet file '/no/such.parquet' not found"),
    ("model.policy=/nonexistent/policy", "model.policy '/nonexistent/policy': no such model directory"),
    ("reward.credit.temperature=0", "reward.credit.temperature must be > 0"),
    ("reward.prm.top_p=1.5", "reward.prm.top_p must be <= 1"),
    ("reward.prm.dtype=float64", "reward.prm.dtype: unknown value 'float64'; known: auto, float32, bfloat16, float16"),
    ("optim.lr=-1", "optim.lr must be > 0"),
    ("algorithm.estimator=gae", "algorithm.estimator=gae needs a critic, which only the verl backend has"),
    ("trainer.nnodes=2", "trainer.nnodes=2 is not supported on the local backend"),
    ("algorithm.estimator=outcome_grpo", "outcome_grpo ignores step scores"),
    ("reward.verifiable.enabled=false", "reward.verifiable.coef=2.0 has no effect with reward.verifiable.enabled=false"),
    ("reward.prm.enabled=false", "has no effect with reward.prm.enabled=false"),
])
def test_bad_values_are_named_at_load(override, message):
    with pytest.raises(ValueError) as e:
        load_recipe(RECIPES[0].parent / "tiny_cpu.yaml", [override])
    assert message in str(e.value)


@pytest.mark.parametrize("overrides, message", [
    (["reward.prm.gate=answer_correct", "reward.credit.mode=sum"],
     "reward.prm.gate=answer_correct with reward.credit.mode=sum: a gated answer's steps all get the floor reward, "
     "which only future_min / min_form credit reads as the judge would"),
    (["reward.prm.gate=answer_correct", "reward.credit.delta=true"], "Delta turns a gated answer's equal floor rewards"),
    (["reward.prm.gate=answer_correct", "reward.verifiable.enabled=false", "reward.verifiable.coef=1.0"],
     "reward.prm.gate=answer_correct needs the verifiable reward"),
    (["reward.prm.gate=outcome"], "reward.prm.gate: unknown value 'outcome'; known: answer_correct, none"),
])
def test_a_gate_that_cannot_mean_anything_is_refused_at_load(overrides, message):
    """Answer-gated judging is sound only with the verifiable reward and min-like credit (docs/protocols.md)."""
    with pytest.raises(ValueError) as e:
        load_recipe(RECIPES[0].parent / "tiny_cpu.yaml", overrides)
    assert message in str(e.value)
    for mode in ("min_form", "future_min"):  # where it is sound, both backends take it
        for recipe in ("tiny_cpu.yaml", "grpo_rprm_qwen2.5_math_7b.yaml"):
            cfg = load_recipe(RECIPES[0].parent / recipe, ["reward.prm.gate=answer_correct", f"reward.credit.mode={mode}"])
            assert cfg.reward.prm.gate == "answer_correct"


@pytest.mark.parametrize("override, message", [
    ("model.ref_policy=tiny", "model.ref_policy='tiny' is not supported on the verl backend"),
    ("reward.prm.num_workers=2", "reward.prm.num_workers=2 is not supported on the verl backend"),
    ("data.prompt_instruction=Solve.", "data.prompt_instruction='Solve.' is not supported on the verl backend"),
])
def test_keys_verl_cannot_honour_are_refused(override, message):
    with pytest.raises(ValueError, match=message):
        load_recipe(RECIPES[0].parent / "grpo_rprm_qwen2.5_math_7b.yaml", [override])


def test_help_config_lists_every_key_with_default_and_help():
    from rl_prm.config import RecipeConfig, help_config
    from rl_prm.schema import knobs

    text = help_config()
    for k in knobs(RecipeConfig):
        assert f"  {k.key} (" in text, k.key
        assert k.help, f"{k.key} has no help text"
    assert "reward.credit.mode (str) = 'min_form'" in text and "choices: future_min, min_form, sum" in text
    assert "run.name (str) = (required)" in text


def test_verl_micro_batches_must_divide_each_ranks_share():
    root = RECIPES[0].parent
    with pytest.raises(ValueError, match="optim.micro_batch_size=32: make that a divisor of 4"):
        load_recipe(root / "tiny_cpu_verl.yaml", ["rollout.prompts_per_step=2", "rollout.n=2"])
    load_recipe(root / "tiny_cpu_verl.yaml", ["rollout.prompts_per_step=2", "rollout.n=2", "optim.micro_batch_size=4"])
    # verl's dynamic batch size packs by tokens: no divisibility needed
    load_recipe(root / "grpo_rprm_qwen2.5_math_7b.yaml", ["optim.micro_batch_size=3"])


def test_prompt_instruction_has_no_effect_on_parquet_prompts(tmp_path):
    from rl_prm.data.prep import prep

    prep(tmp_path, ["gsm8k"], limit=2, verbose=False)
    f = str(tmp_path / "gsm8k_train.parquet")
    with pytest.raises(ValueError, match="data.prompt_instruction='Solve.' has no effect with parquet data"):
        load_recipe(RECIPES[0].parent / "tiny_cpu.yaml", [f"data.train={f}", f"data.test={f}",
                                                           "data.prompt_instruction=Solve."])


def test_judge_dtype_auto_is_bfloat16_only_on_a_cpu_that_computes_it(monkeypatch):
    import rl_prm.vllm_engine as ve

    monkeypatch.setattr(ve, "native_bf16", lambda: True)
    assert ve.judge_dtype("auto", cpu=True) == "bfloat16"
    monkeypatch.setattr(ve, "native_bf16", lambda: False)
    assert ve.judge_dtype("auto", cpu=True) == "float32"
    assert ve.judge_dtype("auto", cpu=False) is None  # GPU: vLLM's choice from the model's config
    assert ve.judge_dtype("float16", cpu=True) == "float16" and ve.judge_dtype("float32", cpu=False) == "float32"


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_recipe_judge_dtype_reaches_the_judge_engine(dtype):
    from rl_prm.score.pool import engine_kwargs

    cfg = load_recipe(RECIPES[0].parent / "tiny_cpu.yaml", [f"reward.prm.dtype={dtype}"])
    assert engine_kwargs(cfg.reward.prm, 0)["dtype"] == dtype
