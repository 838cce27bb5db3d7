"""The oracle judge: a task's step checker as the step scorer (recipe `model.judge: oracle`; a task with a
checker, rl_prm.tasks).

    scorer = OracleScorer(task.step_verdicts, fallback_score=0.5)     # = task.oracle_scorer(0.5)
    results = scorer.score([{"question": q, "steps": steps}])           # list[ItemScore], as RPRMScorer
    scores, metrics = scorer.score_responses(questions, spans)           # as RPRMPool (the local backend)

P(Yes) of a step = 1.0 when it is right in the ProcessBench sense (before the first wrong step by the
task's checker, rl_prm.tasks.Task.step_verdicts), else 0.0: one "critique" per step, no model. It is
the upper bound of what step rewards can do on the task, so comparing it with the R-PRM judge
separates the credit method from the judge's quality. A question the checker cannot read gets
status "bad_input" (its steps then get the recipe's fallback_score, counted).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Optional, Sequence

from rl_prm.score.pool import assemble, score_spans
from rl_prm.score.types import ItemScore, StepScore

ORACLE = "oracle"  # the model.judge value


class OracleScorer:
    """Exact step verdicts by recomputation, behind the scorer interface (see the module doc)."""

    thread_safe = True

    def __init__(self, step_verdicts: Callable[[str, list[str]], Sequence[bool]], fallback_score: float = 0.5):
        self.step_verdicts = step_verdicts
        self.fallback_score = float(fallback_score)
        self.n_retries = 0

    def score(self, items: Sequence[Mapping]) -> list[ItemScore]:
        """One ItemScore per item: P(Yes) 1.0 / 0.0 per step."""
        out = []
        for item in items:
            t0 = time.perf_counter()
            question, steps = item.get("question", item.get("problem")), list(item.get("steps") or [])
            if not steps:
                out.append(ItemScore("no_steps", [], "item has no steps", 0, 0, 0.0))
                continue
            try:
                verdicts = self.step_verdicts(question, steps)
            except (ValueError, TypeError) as e:
                out.append(ItemScore("bad_input", [], f"oracle judge: {e}", 0, 0, 0.0))
                continue
            out.append(ItemScore("ok", [StepScore(float(v), [float(v)], 1, 0, None, []) for v in verdicts], None, 0, 0,
                                 time.perf_counter() - t0, judged_steps=len(steps)))
        return out

    def score_responses(self, questions: Sequence[str], spans: Sequence[Any],
                        judged: Optional[Sequence[bool]] = None) -> tuple[list[list[float]], dict]:
        """One training score per step of every response and the prm/* metrics, as RPRMPool's."""
        return assemble(spans, score_spans(self.score, questions, spans, judged), judged, self.fallback_score)

    def pop_events(self) -> list[str]:
        """Faults since the last call, as RPRMPool: none (no engine, no actor)."""
        return []

    def set_seed(self, seed: int) -> None:
        """No sampling: nothing to seed."""

    def shutdown(self) -> None:
        """No engine: nothing to stop."""
