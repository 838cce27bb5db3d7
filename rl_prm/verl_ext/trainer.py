"""verl v1 trainer `rprm_sync`: verl's synchronous PPO trainer that also logs, from the rprm reward
manager's per-response reward_extra_info, the local backend's metrics with the same definition
(rl_prm.metrics.response_metrics over each response's row: prm/* step scores and the judge's work,
hack/* monitors, and for a task with a step checker process/* and judge/*), and the manager's own
values (accuracy, step-score mean/min/last, steps per response, judge fallbacks, ...) as
`rprm/<name>` (mean over the step's responses; num_steps also min/max). The reward-hacking monitors'
rules (rl_prm.metrics.watch.HackWatch) are checked every step: a warning line on the console and
hack/warnings (how many fired).

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

from omegaconf import open_dict

from rl_prm.metrics import (HACK_ROW_KEYS, JUDGE_COST, PRM_ROW_KEYS, PROCESS_FLAGS, TRUTH_COUNTS, HackWatch,
                            response_metrics)
from rl_prm.verl_ext.hooks import on_import

TRAINER_MODE = "rprm_sync"
PREFIX = "rprm/"
MINMAX = ("num_steps",)
ROW_KEYS = frozenset(PRM_ROW_KEYS + HACK_ROW_KEYS + PROCESS_FLAGS + TRUTH_COUNTS) | set(JUDGE_COST)  # response rows


def reward_extra_metrics(infos: Iterable[Any]) -> dict[str, float]:
    """The step's metrics from its responses' reward_extra_info (dicts; others skipped): their rows summed by
    rl_prm.metrics.response_metrics (prm/*, hack/*, process/*, judge/*: the local backend's keys and values)
    and `rprm/<key>` = mean of the finite values of each of the manager's other keys."""
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
    out = response_metrics([info for info in infos if isinstance(info, dict)])
    for k, xs in sorted(values.items()):
        if k in ROW_KEYS:  # summed above into the local backend's keys
            continue
        out[f"{PREFIX}{k}"] = sum(xs) / len(xs)
        if k in MINMAX:
            out[f"{PREFIX}{k}_min"] = min(xs)
            out[f"{PREFIX}{k}_max"] = max(xs)
    return out


def _register(_module: Any = None) -> None:
    # verl's v1 trainer: imported once verl imports it (install), not by the plugin in every verl process
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
            self._watch = HackWatch()  # the reward-hacking monitors' rules, as the local loop applies them

        def _compute_metrics(self, batch, metrics, timing_raw, global_steps, epoch):
            super()._compute_metrics(batch, metrics, timing_raw, global_steps, epoch)
            metrics.update(batch_reward_extra_metrics(batch))
            warnings = self._watch.update(metrics)
            for w in warnings:  # "rl-prm" lines reach the launcher's console (rl_prm.backends.verl_run)
                print(f"rl-prm WARNING step {global_steps}: {w}", flush=True)
            metrics["hack/warnings"] = float(len(warnings))

    globals()["RPRMTrainerSync"] = RPRMTrainerSync


def batch_reward_extra_metrics(batch: Any) -> dict[str, float]:
    """reward_extra_info of a v1 batch (KVBatchMeta) read back from the TransferQueue -> rprm/* metrics."""
    import transfer_queue as tq  # verl's v1 trainer's store: installed with it (pyproject: cpu extra / verl[vllm])

    data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["extra_fields"])
    extra = data.pop("extra_fields")
    extra = extra.tolist() if hasattr(extra, "tolist") else list(extra)
    keep = [not tag.get("is_padding", False) for tag in batch.tags]
    infos = [(e or {}).get("reward_extra_info") if isinstance(e, dict) else None
             for e, k in zip(extra, keep) if k]
    return reward_extra_metrics(infos)


def install() -> None:
    """Register `rprm_sync` once verl's v1 trainer package is imported (now, if it already is)."""
    on_import("verl.trainer.ppo.v1", _register)


install()

__all__ = ["TRAINER_MODE", "batch_reward_extra_metrics", "install", "reward_extra_metrics"]
