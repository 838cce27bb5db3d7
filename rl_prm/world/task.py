"""The miniature world as a task (rl_prm.tasks): its problems and its step checker. Registered through
the "rl_prm.tasks" entry point (pyproject.toml), so `data.train: world` finds it and no backend imports it.

    TASKS.get("world").rows("test", 100, seed=0)     # a fixed set whatever the run seed (seed 0)
    TASKS.get("world").first_wrong_step(q, steps)    # rl_prm.world.tasks.first_wrong_step
"""

from __future__ import annotations

from typing import Optional

from rl_prm.tasks import Task, register_task
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
