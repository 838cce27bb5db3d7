"""vLLM general plugin (pyproject: [project.entry-points."vllm.general_plugins"] rl_prm = ...).

vLLM calls `register()` in every process it starts (the engine core, each worker). On CPU it sets
how long a reader of vLLM's shared-memory message queue busy-waits (sched_yield) after its last
message before it sleeps on its socket: vLLM 0.32 spins 1 s (`SpinCondition.busy_loop_s`), on the
engine core while its worker computes a step and on both after every request. On a small CPU box
those spinning processes take cores from the worker's own OpenMP threads and from the other
processes of the run (the learner, the other engine). RL_PRM_VLLM_BUSY_LOOP_S=SECONDS sets the time
(0: sleep at once); unset or "vllm" keeps vLLM's own (docs/performance.md: the trade-off measured).
GPUs are left as vLLM has them.
"""

from __future__ import annotations

import os

ENV = "RL_PRM_VLLM_BUSY_LOOP_S"


def busy_loop_s() -> float | None:
    """The busy-wait time the plugin sets, or None to keep vLLM's."""
    v = os.environ.get(ENV, "vllm").strip()
    return None if v in ("", "vllm") else float(v)


def register() -> None:
    try:
        from vllm.platforms import current_platform

        if not current_platform.is_cpu():
            return
        import vllm.distributed.device_communicators.shm_broadcast as sb
    except Exception:  # noqa: BLE001 - another vLLM layout: nothing to set
        return
    seconds = busy_loop_s()
    cls = getattr(sb, "SpinCondition", None)
    if seconds is None or cls is None or getattr(cls.__init__, "_rl_prm", False):
        return
    init = cls.__init__

    def __init__(self, is_reader, context, notify_address, busy_loop_s: float = 1, **kw):  # noqa: N807
        init(self, is_reader, context, notify_address, busy_loop_s=seconds if is_reader else busy_loop_s, **kw)

    __init__._rl_prm = True  # type: ignore[attr-defined]
    cls.__init__ = __init__
