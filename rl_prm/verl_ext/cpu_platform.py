"""A CPU platform for verl 0.9.1 (`VERL_PLATFORM=cpu`), registered through verl's own plugin point.

verl resolves its device once per process through `verl.plugin.platform.get_platform()`; a
`PlatformBase` subclass registered with `PlatformRegistry.register(platform=NAME)` and selected with
env `VERL_PLATFORM=NAME` replaces the CUDA platform everywhere. This module is the first line of
rl_prm.verl_plugin.PLUGIN_MODULES, which verl imports on `import verl` in every process (driver,
TaskRunner, FSDP workers, agent-loop and reward workers, vLLM servers and their engine/worker
processes), i.e. before anything calls get_platform().

Selected by the verl backend for `trainer.device: cpu` (rl_prm.backends.verl_cpu.cpu_env sets
VERL_PLATFORM=cpu in every Ray process). With that env set, importing this module also applies the
CPU workarounds of rl_prm.verl_ext.cpu_fixes (each names the verl/vLLM behaviour it answers).

What the platform answers (docs/verl_cpu.md):
  * device "cpu", backend "gloo", no IPC (`is_ipc_supported() -> False`: verl's weight sync then
    moves buckets through /dev/shm), no-op synchronize / empty_cache / set_device / profilers;
  * `current_device()` -> torch.device("cpu"): ~20 verl call sites use it AS a device
    (`.to(get_device_id())`, FSDP `device_id=`); an int would mean "accelerator index" to torch;
  * `device_module`: verl calls cuda-style helpers on it (mem_get_info, memory_allocated,
    get/set_rng_state, manual_seed, ipc_collect, ...): CPU_DEVICE below (torch.cpu + those);
  * `ray_resource_name() -> "GPU"`: verl's resource pools ask Ray for GPUs; a CPU cluster declares
    logical GPUs (`ray start --head --num-gpus=N`, or `ray_init.num_gpus`), one per actor rank;
  * `rollout_env_vars()`: VLLM_CPU_KVCACHE_SPACE etc. for the vLLM servers.
"""

from __future__ import annotations

import os
import types
from contextlib import contextmanager
from typing import Any, Optional

import psutil
import torch

PLATFORM_NAME = "cpu"
# env passed to the rollout/judge vLLM servers (verl merges rollout_env_vars() into their runtime env)
ROLLOUT_ENV_KEYS = ("VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND", "VLLM_CPU_NUM_OF_RESERVED_CPU",
                    "OMP_NUM_THREADS", "VLLM_ALLOW_INSECURE_SERIALIZATION", "VLLM_LOGGING_LEVEL")


def _rss() -> int:
    try:
        return int(psutil.Process().memory_info().rss)
    except Exception:  # noqa: BLE001 - memory figures are informative only
        return 0


def _mem_get_info(device: Any = None) -> tuple[int, int]:
    """(free, total) bytes of host memory (the CPU 'device')."""
    try:
        vm = psutil.virtual_memory()
        return int(vm.available), int(vm.total)
    except Exception:  # noqa: BLE001
        return 0, 0


def _noop(*args: Any, **kwargs: Any) -> None:
    return None


def _make_device_module() -> types.ModuleType:
    """`torch.cpu` plus the torch.cuda-style helpers verl calls on `get_torch_device()`."""
    mod = types.ModuleType("rl_prm_cpu_device", "torch.cpu with torch.cuda-style helpers for verl")
    for name in dir(torch.cpu):
        if not name.startswith("__"):
            setattr(mod, name, getattr(torch.cpu, name))
    helpers = {
        "is_available": lambda: True,
        "device_count": lambda: 1,
        "current_device": lambda: 0,
        "set_device": _noop,
        "synchronize": _noop,
        "empty_cache": _noop,
        "ipc_collect": _noop,
        "reset_peak_memory_stats": _noop,
        "reset_max_memory_allocated": _noop,
        "set_per_process_memory_fraction": _noop,
        "mem_get_info": _mem_get_info,
        "memory_allocated": lambda device=None: _rss(),
        "memory_reserved": lambda device=None: _rss(),
        "max_memory_allocated": lambda device=None: _rss(),
        "max_memory_reserved": lambda device=None: _rss(),
        "memory_stats": lambda device=None: {},
        "get_device_name": lambda device=None: "cpu",
        "get_rng_state": lambda device=None: torch.get_rng_state(),
        "set_rng_state": lambda state, device=None: torch.set_rng_state(state),
        "manual_seed": lambda seed: torch.manual_seed(seed),
        "manual_seed_all": lambda seed: torch.manual_seed(seed),
        "seed": lambda: torch.seed(),
    }
    for name, fn in helpers.items():
        setattr(mod, name, fn)
    return mod


CPU_DEVICE = _make_device_module()


try:  # verl is optional for the module-level helpers above (tests without verl import them)
    from verl.plugin.platform import PlatformBase, PlatformRegistry
except ModuleNotFoundError as _e:  # pragma: no cover
    if (_e.name or "").split(".")[0] != "verl":
        raise
    PlatformBase = None  # type: ignore[assignment]

if PlatformBase is not None:

    @PlatformRegistry.register(platform=PLATFORM_NAME)
    class PlatformCPU(PlatformBase):
        """verl platform for CPU-only machines (torch CPU build, vllm-cpu, gloo)."""

        @property
        def device_name(self) -> str:
            return "cpu"

        @property
        def vendor_name(self) -> str:
            return "cpu"

        @property
        def device_module(self) -> types.ModuleType:
            return CPU_DEVICE

        def is_available(self) -> bool:
            return True

        def is_platform_available(self, use_smi_check: bool = False) -> bool:
            # never auto-detected: only VERL_PLATFORM=cpu selects it (a GPU machine keeps CUDA)
            return False

        def current_device(self) -> torch.device:  # type: ignore[override]
            return torch.device("cpu")

        def device_count(self) -> int:
            return 1

        def set_device(self, device_index: int) -> None:
            return None

        def synchronize(self, device_index: Optional[int] = None) -> None:
            return None

        def manual_seed(self, seed: int) -> None:
            torch.manual_seed(seed)

        def manual_seed_all(self, seed: int) -> None:
            torch.manual_seed(seed)

        def set_allocator_settings(self, settings: str) -> None:
            return None

        def empty_cache(self) -> None:
            return None

        def get_device_capability(self, device_index: int = 0) -> tuple[Optional[int], Optional[int]]:
            return None, None

        def communication_backend_name(self) -> str:
            return "gloo"

        def visible_devices_envvar(self) -> str:
            # Ray sets CUDA_VISIBLE_DEVICES for actors holding (logical) GPUs; verl reads it for ranks
            return "CUDA_VISIBLE_DEVICES"

        @contextmanager
        def nvtx_range(self, msg: str):
            yield

        def profiler_start(self) -> None:
            return None

        def profiler_stop(self) -> None:
            return None

        def ray_resource_name(self) -> str:
            return "GPU"

        def ray_noset_envvars(self) -> list[str]:
            return ["RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"]

        def is_ipc_supported(self) -> bool:
            return False

        def rollout_env_vars(self) -> dict[str, str]:
            return {k: os.environ[k] for k in ROLLOUT_ENV_KEYS if os.environ.get(k)}

        def cudart(self) -> Any:
            return None


def selected() -> bool:
    """True when this process runs verl on our CPU platform (env VERL_PLATFORM=cpu)."""
    return os.environ.get("VERL_PLATFORM", "").strip().lower() == PLATFORM_NAME


if selected() and PlatformBase is not None:
    from rl_prm.verl_ext import cpu_fixes as _fixes

    _fixes.apply()

__all__ = ["CPU_DEVICE", "PLATFORM_NAME", "selected"] + (["PlatformCPU"] if PlatformBase is not None else [])
