"""The one per-response metrics definition both backends log: a row of scalars per response (the local
loop builds one per rollout; the verl reward manager returns it in each response's reward_extra_info),
summed into one training step's metrics by the same function on both.

    row = response_row(text, steps, scores, judged=True, correct=1.0, first_wrong=-1)
    m = response_metrics(rows)        # prm/*, hack/*, and for a task with a step checker process/*, judge/*

A row's keys: PRM_ROW_KEYS (rl_prm.metrics.prm), HACK_ROW_KEYS (rl_prm.metrics.hacking) and, when the
response's task has a step checker and its answer was graded, PROCESS_FLAGS + TRUTH_COUNTS
(rl_prm.metrics.judge); the judge's work (rl_prm.metrics.judge.JUDGE_COST) when the scorer adds it.
Every value is a float (NaN = undefined), so verl can average any key per data source.
"""

from __future__ import annotations

from typing import Optional, Sequence

from rl_prm.metrics.hacking import hack_row, hack_rows_metrics
from rl_prm.metrics.judge import JUDGE_COST, judge_cost_metrics, judge_truth_metrics, truth_row
from rl_prm.metrics.prm import prm_row, prm_rows_metrics

THRESHOLD = 0.5  # a step is "wrong" in the judge's eyes when its P(Yes) is below this


def response_row(text: str, steps: Sequence[str], scores: Optional[Sequence[Optional[float]]], judged: bool,
                 correct: Optional[float], first_wrong: Optional[int] = None) -> dict[str, float]:
    """One response's row. scores: P(Yes) per step (None: no judge; a gated response's floor scores with
    judged=False are kept out of the judge's verdicts); correct: the graded answer (None: no grade);
    first_wrong: its first wrong step by the task's checker (-1: none; None: no checker)."""
    judge_scores = scores if scores is not None and judged else None
    p = prm_row(scores)
    ok = None if judge_scores is None or p["prm_num_scored"] == 0 else bool(p["prm_ok"])
    row = {**p, **hack_row(text, steps, ok, correct)}
    if first_wrong is not None and correct is not None:
        row.update(truth_row(first_wrong, float(correct) > 0.5, judge_scores or [], judge_scores is not None,
                             THRESHOLD))
    return row


def response_metrics(rows: Sequence[dict]) -> dict[str, float]:
    """One training step's prm/*, hack/*, process/* and judge/* metrics from its responses' rows
    (rl_prm.metrics.prm.prm_rows_metrics, hacking.hack_rows_metrics, judge.judge_truth_metrics) and the
    judge's work (judge.judge_cost_metrics) when the rows carry it."""
    rows = [r for r in rows if isinstance(r, dict)]
    out = {**prm_rows_metrics(rows), **hack_rows_metrics(rows), **judge_truth_metrics(rows)}
    if any(k in r for r in rows for k in JUDGE_COST):
        out.update(judge_cost_metrics(rows))
    return out
