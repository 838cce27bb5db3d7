"""The local backend's engines: the policy's vLLM rollout actor and the R-PRM worker pool, and Ray.

    with Engines() as engines:                  # kept alive across runs (e.g. the arms of a comparison)
        for overrides in arms:
            train(load_recipe(path, overrides), engines=engines)

Each run gets the policy engine with its own starting weights pushed in, and shares an R-PRM pool
when its judge and scoring settings are the same (the critique seed is set per run). Both are
restartable actors (rl_prm.actors); in a quiet session each writes its own log file
(LOGDIR/rollout.log, LOGDIR/judge<i>.log; rl_prm.logs) and the driver does not echo actor output.
"""

from __future__ import annotations

import os
import signal
from typing import Any, Optional

import ray
import torch

from rl_prm import logs
from rl_prm.generate import rollout_actor
from rl_prm.score.oracle import ORACLE
from rl_prm.score.pool import RPRMPool, engine_kwargs
from rl_prm.score.types import ScoreConfig
from rl_prm.tasks import TASKS


def ray_init() -> None:
    """Join $RAY_ADDRESS (ray job submit) or start a private local cluster, quiet, with our env.

    A local cluster's raylet reaps the subprocesses of a worker that died (Ray's
    kill_child_processes_on_worker_exit_with_raylet_subreaper): a kill -9'd engine actor leaves no
    orphaned vLLM engine core behind. That setting also makes Ray ignore SIGCHLD in this driver, which
    turns every later `subprocess` exit code here into 0; the driver's SIGCHLD is reset to the default
    so exit codes stay true. In a quiet session actors' output is not echoed here
    (log_to_driver=False; they write their own log files) and vLLM logs at INFO into those files."""
    if ray.is_initialized():
        return
    env = {k: os.environ[k] for k in ("WANDB_MODE", "RL_PRM_CACHE", "VLLM_CPU_KVCACHE_SPACE", "HF_HOME",
                                      "RL_PRM_VERBOSE", "HF_HUB_DISABLE_PROGRESS_BARS") if k in os.environ}
    env.update(VLLM_ALLOW_INSECURE_SERIALIZATION="1", TOKENIZERS_PARALLELISM="false",
               VLLM_LOGGING_LEVEL=os.environ.get("VLLM_LOGGING_LEVEL", "INFO" if logs.routing() else "WARNING"))
    address = os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = dict(address=address, runtime_env={"env_vars": env},
                                  log_to_driver=logs.ray_log_to_driver(), logging_level="ERROR")
    if address is None:
        kwargs.update(include_dashboard=False, num_cpus=max(2, os.cpu_count() or 2),
                      object_store_memory=256 * 1024**2)
    flag = "RAY_kill_child_processes_on_worker_exit_with_raylet_subreaper"
    saved = os.environ.get(flag)
    if address is None and saved is None:  # read by the raylet and this driver at start only
        os.environ[flag] = "true"
    try:
        ray.init(**kwargs)
    finally:
        if saved is None:
            os.environ.pop(flag, None)
    if address is None:  # Ray 2.60 sets SIGCHLD to SIG_IGN with the subreaper flag: child exit codes read 0
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)


def device_gpus(cfg: Any) -> int:
    if cfg.trainer.gpus_per_node:
        return int(cfg.trainer.gpus_per_node)
    return 1 if torch.cuda.is_available() and cfg.trainer.device != "cpu" else 0


def kill(actor: Any) -> None:
    try:
        ray.get(actor.shutdown.remote(), timeout=30)
    except Exception:  # noqa: BLE001
        pass
    try:
        ray.kill(actor)
    except Exception:  # noqa: BLE001
        pass


class Engines:
    """vLLM actors kept alive across several runs in one process (see the module doc)."""

    def __init__(self) -> None:
        self._rollouts: dict[tuple, Any] = {}
        self._prms: dict[tuple, RPRMPool] = {}

    def rollout(self, cfg: Any, weights: str) -> Any:
        """The policy engine's actor handle (wrap it in rl_prm.generate.RolloutClient to call it)."""
        key = (cfg.data.max_prompt_tokens + cfg.rollout.max_tokens, cfg.rollout.kv_cache_gib,
               cfg.rollout.gpu_memory_utilization, device_gpus(cfg))
        if key not in self._rollouts:
            self._rollouts[key] = rollout_actor(num_gpus=0.4 if key[-1] else 0).remote(
                weights, max_model_len=key[0], seed=cfg.run.seed, kv_cache_gib=key[1], gpu_memory_utilization=key[2],
                log_file=logs.log_file("rollout"))
        return self._rollouts[key]

    def prm(self, cfg: Any, judge_path: Optional[str]) -> Any:
        """The recipe's step scorer: the R-PRM judge at judge_path on its engine pool (one per settings, kept
        across runs), or for model.judge: oracle (judge_path None) the train task's step checker (no engine)."""
        p = cfg.reward.prm
        if cfg.model.judge == ORACLE:
            return TASKS.get(cfg.data.train).oracle_scorer(p.fallback_score)
        scoring = ScoreConfig.from_options(p, seed=None)  # the seed is set per run
        kw = engine_kwargs(p, 0)
        key = (judge_path, repr(scoring), kw["max_model_len"], kw["kv_cache_gib"], kw["gpu_memory_utilization"],
               kw["dtype"], p.num_workers, float(p.timeout_s), device_gpus(cfg))
        if key not in self._prms:
            self._prms[key] = RPRMPool.from_recipe(cfg, judge_path, num_gpus=0.3 if key[-1] else 0)
        else:
            self._prms[key].set_seed(cfg.run.seed)
        return self._prms[key]

    def close(self) -> None:
        for prm in self._prms.values():
            prm.shutdown()
        for actor in self._rollouts.values():
            kill(actor)
        self._prms, self._rollouts = {}, {}

    def __enter__(self) -> "Engines":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
