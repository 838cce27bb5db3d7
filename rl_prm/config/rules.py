"""Recipe rules across keys, checked at load after each knob's own type, choices and range
(rl_prm.config.recipe).

    check_data(cfg)               data files exist and fit the backend; local model dirs are HF model dirs
    check_inactive(cfg, explicit) a key set in the recipe that the rest of it switches off is an error
    backend_rules(cfg)            what the chosen backend cannot honour (knobs' `backends`, cross-key rules)

Each raises ValueError with one line naming the key; `load_recipe` (rl_prm.config.load) prefixes the
recipe's name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from rl_prm.config.recipe import VERL_ONLY_ESTIMATORS, RecipeConfig, is_parquet
from rl_prm.credit.modes import MODES
from rl_prm.data.verl_schema import check_data_files
from rl_prm.schema import knobs
from rl_prm.tasks import TASKS, find_task


def check_data(cfg: DictConfig) -> None:
    for split in ("train", "test"):
        spec = cfg.data[split]
        if spec.endswith(".parquet") and not Path(spec).is_file():
            raise ValueError(f"data.{split}: parquet file {spec!r} not found")
    check_data_files(cfg)  # verl's parquet schema, for the recipe's backend (rl_prm.data.verl_schema)
    if cfg.model.judge == "oracle" and cfg.reward.prm.enabled:
        task = find_task(cfg.data.train)
        if task is None or not task.has_checker or cfg.trainer.backend != "local":
            raise ValueError(f"model.judge=oracle scores steps with the train task's step checker: data.train="
                             f"{cfg.data.train!r} has none (tasks with one: "
                             f"{', '.join(n for n in TASKS.names() if TASKS.get(n).has_checker) or 'none'}), or "
                             "trainer.backend is not local")
    for which in ("policy", "judge", "ref_policy"):
        spec = cfg.model[which]
        if spec and spec.startswith(("/", "./", "../", "~")):
            p = Path(spec).expanduser()
            if not (p / "config.json").is_file():
                raise ValueError(f"model.{which} {spec!r}: " + ("directory has no config.json (not an HF model dir)"
                                                                 if p.is_dir() else "no such model directory"))


# keys that only matter when another key enables them: (key prefix, condition, reason)
INACTIVE = (
    ("reward.prm.", lambda c: not c.reward.prm.enabled, "reward.prm.enabled=false"),
    ("reward.credit.", lambda c: not c.reward.prm.enabled, "reward.prm.enabled=false (no step scores)"),
    ("model.judge", lambda c: not c.reward.prm.enabled, "reward.prm.enabled=false"),
    ("reward.verifiable.coef", lambda c: not c.reward.verifiable.enabled, "reward.verifiable.enabled=false"),
    ("algorithm.gamma", lambda c: c.algorithm.estimator != "gae", "an estimator other than gae"),
    ("algorithm.lam", lambda c: c.algorithm.estimator != "gae", "an estimator other than gae"),
    ("algorithm.whiten", lambda c: c.algorithm.estimator == "gae", "algorithm.estimator=gae (verl whitens GAE)"),
    ("algorithm.zero_separator_adv", lambda c: c.algorithm.estimator == "gae", "algorithm.estimator=gae"),
    ("data.prompt_instruction", lambda c: is_parquet(c.data.train) and is_parquet(c.data.test),
     "parquet data (its prompts are used as written)"),
)


def check_inactive(cfg: DictConfig, explicit: set[str]) -> None:
    """A key set in the recipe (to a non-default value) that the rest of the recipe switches off is
    an error, not ignored."""
    defaults = OmegaConf.structured(RecipeConfig)
    for prefix, off, why in INACTIVE:
        if not off(cfg):
            continue
        for key in sorted(explicit):
            hit = key == prefix or (prefix.endswith(".") and key.startswith(prefix) and key != "reward.prm.enabled")
            if hit and OmegaConf.select(cfg, key) != OmegaConf.select(defaults, key):
                raise ValueError(f"{key}={OmegaConf.select(cfg, key)!r} has no effect with {why}; remove it")


def backend_rules(cfg: DictConfig) -> None:
    """Refuse what the chosen backend cannot honour (the knobs' `backends` and cross-key rules)."""
    backend = cfg.trainer.backend
    for k in knobs(RecipeConfig):
        allowed = k.meta.get("backends")
        if allowed and backend not in allowed:
            v = OmegaConf.select(cfg, k.key)
            if v != k.default:
                raise ValueError(f"{k.key}={v!r} is not supported on the {backend} backend (only on "
                                 f"{', '.join(allowed)}); remove it")
    est, prm = cfg.algorithm.estimator, cfg.reward.prm.enabled
    if est == "outcome_grpo" and prm:
        raise ValueError("algorithm.estimator=outcome_grpo ignores step scores: set reward.prm.enabled=false, or use "
                         "rprm_rloo / rprm_grpo")
    if est == "outcome_grpo" and not cfg.reward.verifiable.enabled:
        raise ValueError("algorithm.estimator=outcome_grpo needs reward.verifiable.enabled=true")
    if not prm and not cfg.reward.verifiable.enabled:
        raise ValueError("reward.prm.enabled=false and reward.verifiable.enabled=false: no reward at all")
    if prm:
        gate_rules(cfg)
    if backend == "verl" and not verl_value(cfg, "actor_rollout_ref.actor.use_dynamic_bsz"):
        world = cfg.trainer.nnodes * max(1, cfg.trainer.gpus_per_node)
        per_rank, micro = cfg.rollout.prompts_per_step * cfg.rollout.n / world, cfg.optim.micro_batch_size
        if per_rank != int(per_rank) or int(per_rank) % micro:
            raise ValueError(f"verl splits each step's rollout.prompts_per_step x rollout.n = "
                             f"{cfg.rollout.prompts_per_step * cfg.rollout.n} responses over {world} actor rank(s) into "
                             f"micro-batches of optim.micro_batch_size={micro}: make that a divisor of {per_rank:g}")
    if backend == "local":
        if est in VERL_ONLY_ESTIMATORS:
            raise ValueError(f"algorithm.estimator={est} needs a critic, which only the verl backend has; "
                             "use rprm_rloo / rprm_grpo / outcome_grpo, or trainer.backend=verl")
        if cfg.verl:
            raise ValueError("the verl: section only applies to trainer.backend=verl; remove it")
        if cfg.reward.prm.stream and cfg.trainer.pipeline:
            raise ValueError("reward.prm.stream=true with trainer.pipeline=true is not supported (two batches would be "
                             "scored at once); pick one")
        if cfg.trainer.gpus_per_node > 1:
            raise ValueError(f"trainer.gpus_per_node={cfg.trainer.gpus_per_node}: the local backend uses one GPU at "
                             "most; use trainer.backend=verl for more")


def gate_rules(cfg: DictConfig) -> None:
    """reward.prm.gate other than none keeps wrong answers from the judge and gives their steps the floor
    reward: it needs the verifiable reward (what says wrong) and a credit mode whose return before the
    worst step is that step's reward (rl_prm.credit.modes: bounded_by_worst_step), without Delta (which
    turns equal step rewards into zeros). Why: docs/protocols.md, "Answer-gated judging"."""
    gate, credit = cfg.reward.prm.gate, cfg.reward.credit
    if gate == "none":
        return
    if not cfg.reward.verifiable.enabled:
        raise ValueError(f"reward.prm.gate={gate} needs the verifiable reward to tell a wrong answer: set "
                         "reward.verifiable.enabled=true, or reward.prm.gate=none")
    if not getattr(MODES.get(credit.mode), "bounded_by_worst_step", False):
        sound = [m for m in MODES.names() if getattr(MODES.get(m), "bounded_by_worst_step", False)]
        raise ValueError(f"reward.prm.gate={gate} with reward.credit.mode={credit.mode}: a gated answer's steps all get "
                         f"the floor reward, which only {' / '.join(sound)} credit reads as the judge would "
                         "(docs/protocols.md); use one of them, or reward.prm.gate=none")
    if credit.delta:
        raise ValueError(f"reward.prm.gate={gate} with reward.credit.delta=true: Delta turns a gated answer's equal "
                         "floor rewards into zeros; set reward.credit.delta=false, or reward.prm.gate=none")


def verl_value(cfg: DictConfig, key: str) -> Any:
    """The value the recipe's free-form `verl:` block gives a dotted verl key (flat or nested form)."""
    node: Any = OmegaConf.to_container(cfg.verl, resolve=True)
    if key in node:
        return node[key]
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node
