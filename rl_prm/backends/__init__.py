"""Training backends, by `trainer.backend` name: fn(cfg) -> RunResult (both backends).

    local  rl_prm.backends.local.train   one node, Ray actors, CPU or one GPU (the embedded default)
    verl   rl_prm.backends.verl_backend.train   verl 0.9.1 on GPUs (multi-node)

Backends are imported only when chosen (verl pulls in a large stack).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from rl_prm.registry import Registry

BACKENDS: Registry[str] = Registry("trainer.backend")
BACKENDS.register("local")("rl_prm.backends.local:train")
BACKENDS.register("verl")("rl_prm.backends.verl_backend:train")


def get_backend(name: str) -> Callable[..., Any]:
    """The train function of backend `name` (ValueError naming an unknown backend)."""
    module, fn = BACKENDS.get(name).split(":")
    return getattr(importlib.import_module(module), fn)


@dataclass
class RunResult:
    """What a backend's train(cfg) returns. exit_code 0: the run reached trainer.total_steps (verl: its
    trainer exited 0); steps: the steps this call trained (the local backend; verl's are in its log)."""

    run_dir: str
    exit_code: int = 0
    run_id: Optional[str] = None          # the W&B run id
    start_step: Optional[int] = None      # the first step this call trained (a resumed run: after its checkpoint)
    final_step: Optional[int] = None
    steps: list[int] = field(default_factory=list)
    wall_s: float = 0.0
    checkpoint: Optional[str] = None      # the last checkpoint
    resumed_from: Optional[str] = None
