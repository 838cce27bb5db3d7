"""Training backends, by `trainer.backend` name: fn(cfg) -> summary dict.

    local  rl_prm.backends.local.train   one node, Ray actors, CPU or one GPU (the embedded default)
    verl   rl_prm.backends.verl_backend.train   verl 0.9.1 on GPUs (multi-node)

Backends are imported only when chosen (verl pulls in a large stack).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from rl_prm.registry import Registry

BACKENDS: Registry[str] = Registry("trainer.backend")
BACKENDS.register("local")("rl_prm.backends.local:train")
BACKENDS.register("verl")("rl_prm.backends.verl_backend:train")


def get_backend(name: str) -> Callable[..., Any]:
    """The train function of backend `name` (ValueError naming an unknown backend)."""
    module, fn = BACKENDS.get(name).split(":")
    return getattr(importlib.import_module(module), fn)
