"""Recipe schema: one dataclass per section (TRL style), merged with omegaconf.

A recipe is a YAML file with the sections below; every key must exist in the schema, so a typo
fails at start with the key's name instead of silently training with a default:

    cfg = load_recipe("recipes/tiny_cpu.yaml", ["rollout.n=8", "trainer.total_steps=50"])
    cfg.rollout.n            # 8 (typed attribute access; an OmegaConf DictConfig in struct mode)
    save_resolved(cfg, run_dir)   # writes run_dir/config.yaml (what actually ran)

Both backends (local and verl) read the same RecipeConfig; `verl` is a free-form mapping of
extra hydra overrides used only by the verl backend.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError


@dataclass
class RunConfig:
    """Run identity and where outputs go: <output_dir>/<name>/ holds config.yaml, checkpoints/,
    metrics and the W&B offline run."""

    name: str = MISSING  # run name (required): also the W&B run name and the run dir name
    output_dir: str = "runs"  # parent directory of run dirs
    seed: int = 0  # seeds prompt sampling, rollout sampling, the learner and the judge


@dataclass
class ModelConfig:
    """Which models to load. Nothing is downloaded at run time: local dirs or cached HF ids."""

    policy: str = "tiny"  # "tiny" -> rl_prm.tiny.policy_path(); "world" -> rl_prm.world's SFT policy; else a local dir or HF id
    judge: str = "tiny"  # R-PRM judge: "tiny" | "world" (built offline, cached) | a local dir or HF id
    ref_policy: Optional[str] = None  # frozen KL reference; None = the initial policy weights


@dataclass
class DataConfig:
    """Training and held-out prompts."""

    train: str = "tiny_arith"  # tiny_arith | world | gsm8k | math | path to a verl parquet file
    test: str = "tiny_arith"  # same choices; used for periodic eval (accuracy by verifiable reward)
    train_limit: Optional[int] = None  # use at most this many train problems (None = all; tiny_arith: 1024)
    test_limit: Optional[int] = 64  # evaluate on at most this many test problems
    max_prompt_tokens: int = 512  # prompts longer than this (after the chat template) are skipped (counted)
    prompt_instruction: str = "Let's think step by step and output the final answer within \\boxed{}."  # appended to each question


@dataclass
class RolloutConfig:
    """Policy sampling (vLLM)."""

    n: int = 4  # samples per prompt (the group for RLOO/GRPO baselines)
    temperature: float = 1.0  # sampling temperature
    top_p: float = 1.0  # nucleus sampling
    max_tokens: int = 256  # max response tokens; longer responses are truncated (flagged)
    prompts_per_step: int = 8  # prompts per training step (batch = prompts_per_step * n responses)
    kv_cache_gib: int = 1  # CPU: VLLM_CPU_KVCACHE_SPACE in GiB for the policy engine
    gpu_memory_utilization: float = 0.4  # GPU: fraction of GPU memory for the policy engine


@dataclass
class PRMConfig:
    """The R-PRM step scorer (frozen generative judge; K critiques per step, P(Yes) averaged)."""

    enabled: bool = True  # False = verifiable reward only (no judge engine is started)
    k: int = 2  # critiques sampled per step (R-PRM uses K=10 at eval; fewer in RL)
    temperature: float = 0.95  # judge sampling temperature
    top_p: float = 0.95  # judge nucleus sampling
    max_critique_tokens: int = 256  # max tokens per critique
    early_reject_threshold: Optional[float] = None  # stop scoring a solution after a step scores below this
    adaptive_k: bool = False  # sample fewer critiques when the first ones agree
    fallback_score: float = 0.5  # score of a step whose verdict could not be parsed (counted)
    timeout_s: int = 600  # per scoring call; the worker is restarted and retried after this
    num_workers: int = 1  # R-PRM worker actors (each holds one judge engine)
    kv_cache_gib: int = 1  # CPU: KV cache (GiB) of the judge engine
    gpu_memory_utilization: float = 0.3  # GPU: fraction of GPU memory for the judge engine
    max_model_len: int = 4096  # judge context (prompt with all steps + critique)


@dataclass
class CreditConfig:
    """Step scores -> token rewards (rl_prm.credit.assign_credit)."""

    mode: str = "min_form"  # sum | min_form (PURE) | future_min
    temperature: float = 0.1  # min-form softmin temperature
    clip_eta: Optional[float] = None  # Clip mechanism (PRIME/“Clip”): r <- min(r - eta, 0); None = off
    delta: bool = False  # Delta mechanism: r_k <- r_k - r_{k+1}
    score_map: str = "2p-1"  # step probability -> reward: 2p-1 | identity


@dataclass
class VerifiableConfig:
    """Outcome reward from the \\boxed{} answer (math-verify)."""

    enabled: bool = True  # add the verifiable (outcome) reward
    coef: float = 1.0  # its weight relative to the process reward


@dataclass
class RewardConfig:
    prm: PRMConfig = field(default_factory=PRMConfig)
    credit: CreditConfig = field(default_factory=CreditConfig)
    verifiable: VerifiableConfig = field(default_factory=VerifiableConfig)


@dataclass
class AlgorithmConfig:
    """Advantage estimation and policy loss."""

    estimator: str = "rprm_rloo"  # rprm_rloo | rprm_grpo | grpo (outcome only, VR) | gae (local: not supported)
    kl_coef: float = 0.001  # weight of KL(policy || reference) in the loss (0 = no reference model)
    kl_type: str = "low_var_kl"  # k1 | low_var_kl (k3) | mse (k2)
    entropy_coef: float = 0.0  # entropy bonus weight
    clip_ratio: float = 0.2  # PPO clip epsilon
    whiten: bool = True  # whiten advantages over the batch
    zero_separator_adv: bool = True  # zero the advantages of step-separator tokens (PURE)
    gamma: float = 1.0  # discount (gae)
    lam: float = 1.0  # GAE lambda (gae)


@dataclass
class OptimConfig:
    """AdamW learner."""

    lr: float = 1e-5  # learning rate
    weight_decay: float = 0.0  # AdamW weight decay
    grad_clip: float = 1.0  # max global grad norm
    micro_batch_size: int = 8  # responses per forward/backward pass (gradient accumulation)
    ppo_epochs: int = 1  # passes over each step's batch
    warmup_steps: int = 0  # linear LR warmup (optimizer steps)


@dataclass
class TrainerConfig:
    """Loop control, logging and placement."""

    backend: str = "local"  # local (one node, Ray actors, CPU or 1 GPU) | verl
    total_steps: int = 20  # training steps (one batch of rollouts each)
    eval_every: int = 5  # evaluate every N steps (and at the end); 0 = never
    val_before_train: bool = False  # also evaluate the starting policy (logged at step 0), as verl's option
    eval_samples: int = 0  # also sample N responses per test prompt at rollout.temperature: eval/sampled_accuracy (mean@N)
    save_every: int = 5  # checkpoint every N steps (and at the end); 0 = only at the end
    keep_checkpoints: int = 2  # keep the newest N checkpoints
    resume: bool = True  # continue from the newest complete checkpoint in the run dir
    logger: list[str] = field(default_factory=lambda: ["console", "wandb"])  # console | wandb (offline by default)
    project: str = "rl-prm"  # W&B project
    nnodes: int = 1  # nodes (verl backend)
    gpus_per_node: int = 0  # GPUs per node (0 = CPU)
    device: str = "auto"  # learner device: auto | cpu | cuda


@dataclass
class RecipeConfig:
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    verl: dict[str, Any] = field(default_factory=dict)  # free-form verl hydra overrides (verl backend only)


def _key_of(err: OmegaConfBaseException) -> str:
    full = getattr(err, "full_key", None)
    if full:
        return str(full)
    key = getattr(err, "key", None)
    return str(key) if key is not None else "?"


def _check(cfg: DictConfig) -> None:
    """Value checks omegaconf's types cannot express."""
    positive = {
        "rollout.n": cfg.rollout.n, "rollout.max_tokens": cfg.rollout.max_tokens,
        "rollout.prompts_per_step": cfg.rollout.prompts_per_step, "reward.prm.k": cfg.reward.prm.k,
        "reward.prm.num_workers": cfg.reward.prm.num_workers, "optim.micro_batch_size": cfg.optim.micro_batch_size,
        "optim.ppo_epochs": cfg.optim.ppo_epochs, "trainer.total_steps": cfg.trainer.total_steps,
        "trainer.keep_checkpoints": cfg.trainer.keep_checkpoints,
    }
    for k, v in positive.items():
        if v <= 0:
            raise ValueError(f"{k} must be > 0, got {v}")
    for k in ("trainer.eval_every", "trainer.save_every", "optim.warmup_steps"):
        if OmegaConf.select(cfg, k) < 0:
            raise ValueError(f"{k} must be >= 0, got {OmegaConf.select(cfg, k)}")
    if not 0 < cfg.rollout.top_p <= 1 or not 0 < cfg.reward.prm.top_p <= 1:
        raise ValueError("rollout.top_p and reward.prm.top_p must be in (0, 1]")
    if not 0 <= cfg.reward.prm.fallback_score <= 1:
        raise ValueError(f"reward.prm.fallback_score must be in [0, 1], got {cfg.reward.prm.fallback_score}")
    unknown_loggers = set(cfg.trainer.logger) - {"console", "wandb", "jsonl"}
    if unknown_loggers:
        raise ValueError(f"trainer.logger: unknown logger(s) {sorted(unknown_loggers)}; known: console, wandb, jsonl")


def load_recipe(path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Schema <- YAML file <- `key=value` overrides; returns a typed, struct-mode DictConfig.

    Unknown or mistyped keys raise ValueError naming the key and the recipe, e.g.
    `recipe recipes/x.yaml: unknown key 'rollout.nn'`. `path` None = schema defaults only
    (run.name must then come from an override).
    """
    src = str(path) if path is not None else "(defaults)"
    schema = OmegaConf.structured(RecipeConfig)
    try:
        layers = [schema]
        if path is not None:
            if not Path(path).is_file():
                raise ValueError(f"recipe {src}: file not found")
            file_cfg = OmegaConf.load(path)
            if not isinstance(file_cfg, DictConfig):
                raise ValueError(f"recipe {src}: top level must be a mapping of sections")
            layers.append(file_cfg)
        merged = OmegaConf.merge(*layers)
        for ov in overrides:
            if "=" not in ov:
                raise ValueError(f"override {ov!r}: expected key=value")
            key = ov.split("=", 1)[0].strip().lstrip("+")
            if key.split(".")[0] != "verl" and not _has_key(merged, key):
                raise ValueError(f"recipe {src}: unknown key {key!r} (override {ov!r})")
        if overrides:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist([o.lstrip("+") for o in overrides]))
    except (ConfigKeyError, ConfigAttributeError) as e:
        raise ValueError(f"recipe {src}: unknown key {_key_of(e)!r}") from None
    except ValidationError as e:
        raise ValueError(f"recipe {src}: bad value for key {_key_of(e)!r}: {str(getattr(e, 'msg', e)).splitlines()[0]}") from None
    except OmegaConfBaseException as e:  # pragma: no cover - other omegaconf errors
        raise ValueError(f"recipe {src}: {e}") from None
    if OmegaConf.is_missing(merged.run, "name"):
        raise ValueError(f"recipe {src}: run.name is required (set it in the recipe or pass run.name=...)")
    OmegaConf.set_struct(merged, True)
    _check(merged)
    return merged


def _has_key(cfg: DictConfig, key: str) -> bool:
    """`key` (dotted) exists in cfg, whatever its value (None and ??? included)."""
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, DictConfig) or part not in node.keys():
            return False
        node = node._get_node(part)
    return True


def to_dict(cfg: DictConfig) -> dict:
    """Plain dict (for W&B config / JSON)."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def run_dir_of(cfg: DictConfig) -> Path:
    return Path(cfg.run.output_dir) / cfg.run.name


def save_resolved(cfg: DictConfig, run_dir: str | os.PathLike) -> Path:
    """Write the resolved recipe to run_dir/config.yaml (atomically) and return its path."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    out = run_dir / "config.yaml"
    tmp = out.with_suffix(".yaml.tmp")
    tmp.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    os.replace(tmp, out)
    return out
