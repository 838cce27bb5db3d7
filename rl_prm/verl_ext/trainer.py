"""verl v1 trainer `rprm_sync`: verl's synchronous PPO trainer that also logs the rprm reward
manager's per-response values (step-score mean/min/last, steps per response, accuracy, judge
fallbacks, ...) as training metrics `rprm/<name>` (mean over the step's responses; num_steps also
min/max), and the judge's work of the step as the local backend's `prm/*` keys
(rl_prm.metrics.judge_cost_metrics: judge prompts, distinct ones, dedup_frac, gated responses,
critiques, critique tokens, prompt tokens computed, judge seconds).

Why: verl 0.9.1's v1 trainer keeps each response's `reward_extra_info` (in the TransferQueue field
`extra_fields`) but logs it only for validation; its training metrics show the rm_scores sum
(critic/score), which under rl_prm's encoding is not a reward. Selected by the verl backend with
`trainer.v1.trainer_mode=rprm_sync`; everything else is verl's `sync` trainer (the instance sets
its config's trainer_mode back to "sync", so the replay buffer and all mode checks are verl's).

Registered when verl's v1 trainer package is imported (rl_prm.verl_ext.hooks.on_import), so the
plugin does not import the trainer into every verl process.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from rl_prm.metrics import JUDGE_COST, judge_cost_metrics

TRAINER_MODE = "rprm_sync"
PREFIX = "rprm/"
MINMAX = ("num_steps",)


def reward_extra_metrics(infos: Iterable[Any]) -> dict[str, float]:
    """`rprm/<key>` = mean of the finite values of each reward_extra_info key (dicts; others skipped),
    and the judge's work of the step (rl_prm.metrics.judge_cost_metrics: prm/*, as the local backend)."""
    infos = list(infos)
    values: dict[str, list[float]] = {}
    for info in infos:
        if not isinstance(info, dict):
            continue
        for k, v in info.items():
            try:
                x = float(v)
            except (TypeError, ValueError):
                continue
            if math.isfinite(x):
                values.setdefault(str(k), []).append(x)
    out: dict[str, float] = {}
    if "judge_prompts" in values:  # the judge's work per step: the local backend's prm/* keys and values
        out.update(judge_cost_metrics(info for info in infos if isinstance(info, dict)))
    for k, xs in sorted(values.items()):
        if k in JUDGE_COST:  # logged above as prm/<name> and prm/<name>_per_response
            continue
        out[f"{PREFIX}{k}"] = sum(xs) / len(xs)
        if k in MINMAX:
            out[f"{PREFIX}{k}_min"] = min(xs)
            out[f"{PREFIX}{k}_max"] = max(xs)
    return out


def _register(_module: Any = None) -> None:
    from omegaconf import open_dict
    from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY, register_trainer
    from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

    if TRAINER_MODE in TRAINER_REGISTRY:
        return

    @register_trainer(TRAINER_MODE)
    class RPRMTrainerSync(PPOTrainerSync):
        """verl's sync trainer + `rprm/*` training metrics from each response's reward_extra_info."""

        def __init__(self, config):
            with open_dict(config):
                config.trainer.v1.trainer_mode = "sync"  # verl's own sync semantics from here on
            super().__init__(config)

        def _compute_metrics(self, batch, metrics, timing_raw, global_steps, epoch):
            super()._compute_metrics(batch, metrics, timing_raw, global_steps, epoch)
            metrics.update(batch_reward_extra_metrics(batch))

    globals()["RPRMTrainerSync"] = RPRMTrainerSync


def batch_reward_extra_metrics(batch: Any) -> dict[str, float]:
    """reward_extra_info of a v1 batch (KVBatchMeta) read back from the TransferQueue -> rprm/* metrics."""
    import transfer_queue as tq

    data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["extra_fields"])
    extra = data.pop("extra_fields")
    extra = extra.tolist() if hasattr(extra, "tolist") else list(extra)
    keep = [not tag.get("is_padding", False) for tag in batch.tags]
    infos = [(e or {}).get("reward_extra_info") if isinstance(e, dict) else None
             for e, k in zip(extra, keep) if k]
    return reward_extra_metrics(infos)


def install() -> None:
    """Register `rprm_sync` once verl's v1 trainer package is imported (now, if it already is)."""
    from rl_prm.verl_ext.hooks import on_import

    on_import("verl.trainer.ppo.v1", _register)


install()

__all__ = ["TRAINER_MODE", "batch_reward_extra_metrics", "install", "reward_extra_metrics"]
