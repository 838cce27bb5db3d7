"""The miniature world as a plugin (entry point "rl_prm.plugins", rl_prm.registry): its task (problems and
step checker, rl_prm.tasks) and its models (`model.policy/judge: world`, rl_prm.models.BUILT). Imported on
the first lookup of "world" in either registry, so no lower layer imports the world.

    TASKS.get("world").rows("test", 100, seed=0)     # a fixed set whatever the run seed (seed 0)
    TASKS.get("world").first_wrong_step(q, steps)    # rl_prm.world.tasks.first_wrong_step
    resolve_model("world", "judge")                  # the shipped judge (rl_prm.world.ship, sha256-checked)
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from rl_prm.models import BUILT, ModelUnavailable
from rl_prm.tasks import Task, register_task
from rl_prm.world.ship import ShippedWorldError, world_model
from rl_prm.world.tasks import first_wrong_step, problems

NAME = "world"
SIZE = {"train": 1024, "test": 256}  # rows per split when data.*_limit is not set


def world_rows(split: str, limit: Optional[int], seed: int) -> list[dict]:
    """The world's problems: train/test disjoint by a hash of the question; the same set (generator seed 0)
    whatever the run seed, so every arm of a comparison sees the same test problems."""
    return [{"problem": p.question, "answer": str(p.answer), "source": NAME}
            for p in problems(split, limit or SIZE[split], seed=0)]


TASK = register_task(Task(NAME, world_rows, first_wrong_step,
                          doc="the miniature world: multi-step arithmetic word problems, every step checkable"))


@BUILT.register(NAME)
def world_models(kind: str) -> Path:
    """rl_prm.world: the miniature world's SFT policy / R-PRM judge, shipped in the package (rl_prm.world.ship)."""
    try:
        return world_model(kind)
    except ShippedWorldError as e:
        raise ModelUnavailable(f"model.{kind} 'world': {e}") from None
