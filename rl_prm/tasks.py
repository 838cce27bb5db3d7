"""Tasks: where a run's problems come from and what is known about their steps. `data.train` /
`data.test` name a task (or a verl .parquet file); a row's "source" names the task it came from.

    task = TASKS.get("world")
    rows = task.rows("train", 1024, seed=0)          # [{"problem", "answer", "source"}]
    w = task.first_wrong_step(question, steps)       # the step checker: index of the first wrong step, -1 none
    scorer = task.oracle_scorer(fallback_score=0.5)  # the checker behind the judge interface (model.judge: oracle)
    task_of(rows)                                    # the task of a batch's rows when they share one, else None

A task is a `Task` registered in TASKS. A task with a step checker gets, on both backends and for free
(no judge call): per response the process flags (rl_prm.metrics.process_flags: trace / answer / miracle),
and per training step the judge's on-policy error rates against the checker (judge/*,
rl_prm.metrics.judge_truth_metrics); eval/trace_accuracy and friends; and `model.judge: oracle`.

Plugins: a package registers its tasks with register_task in a module named in the entry-point group
"rl_prm.plugins" (rl_prm.registry); it is imported on the first lookup of a name TASKS does not hold.
The miniature world (rl_prm.world.plugin) is one such plugin, so the layers below it never import it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

from rl_prm.data import load_benchmark
from rl_prm.metrics import truth_row
from rl_prm.registry import Registry
from rl_prm.score.oracle import OracleScorer
from rl_prm.steps import split_steps
from rl_prm.tiny.arith import make_problem


@dataclass(frozen=True)
class Task:
    """A task: its rows per split, and optionally a step checker.

    rows(split, limit, seed) -> [{"problem", "answer", "source": name}]   (limit None: the task's own size)
    first_wrong_step(question, steps) -> int   index of the first wrong step by the task's own ground truth
        (-1: every step right); raises ValueError for a question that is not the task's.
    """

    name: str
    rows: Callable[[str, Optional[int], int], list[dict]]
    first_wrong_step: Optional[Callable[[str, Sequence[str]], int]] = None
    doc: str = field(default="", compare=False)

    @property
    def has_checker(self) -> bool:
        return self.first_wrong_step is not None

    def step_verdicts(self, question: str, steps: Sequence[str]) -> list[bool]:
        """Per step, right in the ProcessBench sense: True before the first wrong step, False from it on."""
        w = self._checker()(question, list(steps))
        return [w < 0 or i < w for i in range(len(steps))]

    def oracle_scorer(self, fallback_score: float = 0.5) -> Any:
        """The checker as the step scorer (rl_prm.score.oracle.OracleScorer)."""
        return OracleScorer(self.step_verdicts, fallback_score=fallback_score)

    def _checker(self) -> Callable[[str, Sequence[str]], int]:
        if self.first_wrong_step is None:
            raise ValueError(f"task {self.name!r} has no step checker")
        return self.first_wrong_step


TASKS: Registry[Task] = Registry("task", plugins=True)


def register_task(task: Task) -> Task:
    """Add ``task`` to TASKS under its name (a plugin module calls this when imported)."""
    return TASKS.register(task.name)(task)


def find_task(name: Any) -> Optional[Task]:
    """The task registered as ``name``, None for anything else (a parquet path, a benchmark's data_source)."""
    return TASKS.get(name) if isinstance(name, str) and name in TASKS else None


def task_of(rows: Sequence[Mapping]) -> Optional[Task]:
    """The task every row comes from (their "source"), None when they have no common task."""
    sources = {r.get("source") for r in rows}
    return find_task(sources.pop()) if len(sources) == 1 else None


def first_wrong(task: Task, question: str, steps: Sequence[str]) -> int:
    """task.first_wrong_step; a question or step list the checker cannot read counts as wrong at step 0."""
    try:
        return task._checker()(question, list(steps))
    except (ValueError, TypeError):
        return 0


def truth_rows(task: Optional[Task], questions: Sequence[str], steps: Sequence[Sequence[str]],
               answer_correct: Sequence[float], scores: Optional[Sequence[Sequence[Optional[float]]]] = None,
               judged: Optional[Sequence[bool]] = None) -> list[dict[str, float]]:
    """One rl_prm.metrics.truth_row per response when ``task`` has a checker, else []: its process flags and
    the judge's step scores (P(Yes); None = no judge) against the checker. judged[i] False: response i's
    scores are not the judge's (reward.prm.gate)."""
    if task is None or not task.has_checker:
        return []
    B = len(questions)
    return [truth_row(first_wrong(task, questions[i], steps[i]), float(answer_correct[i]) > 0.5,
                      scores[i] if scores is not None else [], scores is not None and (judged is None or judged[i]))
            for i in range(B)]


def process_metrics(task: Optional[Task], questions: Sequence[str], texts: Sequence[str],
                    answer_correct: Sequence[float], prefix: str = "eval/") -> dict[str, float]:
    """Over solutions of a task with a checker: <prefix>trace_accuracy (answer and every step right),
    answer_accuracy, miracle_rate (answer right, a step wrong; answer = trace + miracle). {} otherwise."""
    rows = truth_rows(task, questions, [split_steps(t) for t in texts], answer_correct)
    if not rows:
        return {}
    n = len(rows)
    return {f"{prefix}trace_accuracy": sum(r["trace_correct"] for r in rows) / n,
            f"{prefix}answer_accuracy": sum(r["answer_correct"] for r in rows) / n,
            f"{prefix}miracle_rate": sum(r["miracle"] for r in rows) / n}


# --- the built-in tasks with no step checker ---------------------------------------------------------

TINY_ARITH_SIZE = {"train": 1024, "test": 256}


def _tiny_arith(split: str, limit: Optional[int], seed: int) -> list[dict]:
    """Synthetic arithmetic word problems (rl_prm.tiny.arith); train and test questions are disjoint
    (fixed generator seeds; test questions are removed from train)."""
    def gen(rng_seed: int, n: int, exclude: set[str]) -> list[dict]:
        rng, out, seen = random.Random(rng_seed), [], set(exclude)
        while len(out) < n:
            p = make_problem(rng)
            if p.question not in seen:
                seen.add(p.question)
                out.append({"problem": p.question, "answer": str(p.answer), "source": "tiny_arith"})
        return out

    test = gen(1_000_003, TINY_ARITH_SIZE["test"], set())
    if split == "test":
        rows = test
    else:
        rows = gen(7_000_001, limit or TINY_ARITH_SIZE["train"], {r["problem"] for r in test})
    return rows[:limit] if limit else rows


def _benchmark(name: str) -> Callable[[str, Optional[int], int], list[dict]]:
    def rows(split: str, limit: Optional[int], seed: int) -> list[dict]:
        out = load_benchmark(name, split)
        return out[:limit] if limit else out

    return rows


register_task(Task("tiny_arith", _tiny_arith, doc="synthetic one-line arithmetic word problems (plumbing)"))
for _name in ("gsm8k", "math"):
    register_task(Task(_name, _benchmark(_name), doc=f"{_name} from the Hub (rl_prm.data.load_benchmark)"))
