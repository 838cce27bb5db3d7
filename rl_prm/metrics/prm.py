"""PRM step-score metrics: one row per response, summed into one step's prm/* keys.

    row = prm_row([0.9, 0.3, None])        # one response's P(Yes) per step (None/NaN = not scored)
    prm_rows_metrics(rows)                 # prm/step_score_mean, prm/response_min_score_mean, ...
    prm_metrics(step_scores)               # the same from the batch's step scores
    prm_position_metrics(step_scores)      # prm/step_score_mean@k (needs every step's score: local backend)
    prm_histograms(step_scores), prm_verdicts(step_scores)
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

# the keys of prm_row (always all of them, finite or NaN, so every verl response has the same keys)
PRM_ROW_KEYS = ("prm_num_steps", "prm_num_scored", "prm_score_sum", "prm_min_score", "prm_last_score",
                "prm_first_error_step", "prm_ok")


def _clean_scores(step_scores: Iterable[Iterable[float | None]]) -> list[list[float | None]]:
    """Validate step scores: P(Yes) in [0, 1], or None/NaN for "not scored"."""
    if isinstance(step_scores, (str, bytes)):
        raise TypeError("step_scores must be a list (responses) of lists (steps) of P(Yes) or None")
    out: list[list[float | None]] = []
    for i, row in enumerate(step_scores):
        if isinstance(row, (str, bytes)) or not hasattr(row, "__iter__"):
            raise TypeError(
                f"step_scores[{i}] must be a list of per-step scores, got {type(row).__name__}"
            )
        clean: list[float | None] = []
        for k, s in enumerate(row):
            if s is None:
                clean.append(None)
                continue
            try:
                v = float(s)
            except (TypeError, ValueError):
                raise TypeError(f"step_scores[{i}][{k}] = {s!r} is not a number or None") from None
            if math.isnan(v):
                clean.append(None)
            elif not 0.0 <= v <= 1.0:
                raise ValueError(
                    f"step_scores[{i}][{k}] = {v} is outside [0, 1]: prm_metrics expects P(Yes) "
                    "(if you have rewards r = 2*P(Yes)-1, pass (r+1)/2)"
                )
            else:
                clean.append(v)
        out.append(clean)
    return out


def _first_error(row: list[float | None], threshold: float) -> int | None:
    """1-based index of the first scored step with score < threshold (None if there is none)."""
    for k, s in enumerate(row):
        if s is not None and s < threshold:
            return k + 1
    return None


def prm_row(scores: Sequence[float | None] | None, threshold: float = 0.5) -> dict[str, float]:
    """One response's step scores as scalars (PRM_ROW_KEYS): prm_num_steps, prm_num_scored, prm_score_sum;
    prm_min_score, prm_last_score, prm_ok (1.0 iff every scored step >= threshold), prm_first_error_step
    (1-based, 0.0 = none): NaN when no step was scored. `scores` None: no judge (zero steps)."""
    (row,) = _clean_scores([[] if scores is None else list(scores)])
    sc = [s for s in row if s is not None]
    nan = float("nan")
    first = _first_error(row, threshold)
    return {"prm_num_steps": float(len(row)), "prm_num_scored": float(len(sc)), "prm_score_sum": float(sum(sc)),
            "prm_min_score": min(sc) if sc else nan, "prm_last_score": sc[-1] if sc else nan,
            "prm_first_error_step": float(first or 0) if sc else nan, "prm_ok": float(first is None) if sc else nan}


def prm_rows_metrics(rows: Sequence[dict]) -> dict[str, float]:
    """Summaries of one step's step scores from prm_row rows. Keys (only those with data):
        prm/step_score_mean              mean over all scored steps
        prm/step_score_last_mean         mean score of each response's last scored step
        prm/response_min_score_mean      mean over responses of their min step score (PURE's
                                         min-form credit follows this)
        prm/frac_responses_with_wrong_step  among responses with >= 1 scored step
        prm/first_error_step_mean        mean 1-based index of the first wrong step, over
                                         responses that have one
        prm/frac_no_wrong_step           1 - frac_responses_with_wrong_step
        prm/steps_scored                 number of scored steps in the batch
        prm/not_scored_frac              unscored steps / all steps
        prm/frac_responses_unscored      responses with no scored step (incl. no steps)"""
    rows = [r for r in rows if r and "prm_num_scored" in r]
    if not rows:
        return {}
    n_steps = sum(r["prm_num_steps"] for r in rows)
    n_scored = sum(r["prm_num_scored"] for r in rows)
    out = {"prm/steps_scored": float(n_scored)}
    if n_steps:
        out["prm/not_scored_frac"] = (n_steps - n_scored) / n_steps
    out["prm/frac_responses_unscored"] = sum(r["prm_num_scored"] == 0 for r in rows) / len(rows)
    scored = [r for r in rows if r["prm_num_scored"] > 0]
    if not scored:
        return out
    out["prm/step_score_mean"] = sum(r["prm_score_sum"] for r in scored) / n_scored
    out["prm/step_score_last_mean"] = float(np.mean([r["prm_last_score"] for r in scored]))
    out["prm/response_min_score_mean"] = float(np.mean([r["prm_min_score"] for r in scored]))
    errs = [r["prm_first_error_step"] for r in scored if r["prm_first_error_step"] > 0]
    out["prm/frac_responses_with_wrong_step"] = len(errs) / len(scored)
    out["prm/frac_no_wrong_step"] = 1.0 - out["prm/frac_responses_with_wrong_step"]
    if errs:
        out["prm/first_error_step_mean"] = float(np.mean(errs))
    return out


def prm_metrics(step_scores: Sequence[Sequence[float | None]], threshold: float = 0.5) -> dict[str, float]:
    """prm_rows_metrics of a batch's step scores: step_scores[i][k] = P(Yes) in [0, 1] of step k of
    response i; None (or NaN) = not scored. A step is "wrong" when its score is < threshold."""
    rows = _clean_scores(step_scores)  # the type errors name the response and the step
    return prm_rows_metrics([prm_row(row, threshold) for row in rows])


def prm_position_metrics(step_scores: Sequence[Sequence[float | None]], max_index: int = 16) -> dict[str, float]:
    """prm/step_score_mean@k: mean score of step k (1-based), k = 1..max_index, where some response has one.
    Needs every step's score, so only the local backend logs it (verl's per-response values are scalars)."""
    if max_index < 1:
        raise ValueError(f"max_index must be >= 1, got {max_index}")
    rows = _clean_scores(step_scores)
    out: dict[str, float] = {}
    for k in range(max_index):
        at_k = [row[k] for row in rows if k < len(row) and row[k] is not None]
        if at_k:
            out[f"prm/step_score_mean@{k + 1}"] = float(np.mean(at_k))
    return out


def prm_histograms(
    step_scores: Sequence[Sequence[float | None]], threshold: float = 0.5
) -> dict[str, list[float]]:
    """Raw values for histograms (Tracker.log turns list values into wandb.Histogram):
    prm/step_scores_hist: every scored step score; prm/first_error_step_hist: 1-based index of
    the first wrong step of each response that has one."""
    rows = _clean_scores(step_scores)
    scores = [s for row in rows for s in row if s is not None]
    firsts = [f for f in (_first_error(row, threshold) for row in rows) if f is not None]
    return {"prm/step_scores_hist": scores, "prm/first_error_step_hist": [float(f) for f in firsts]}


def prm_verdicts(step_scores: Sequence[Sequence[float | None]], threshold: float = 0.5) -> list[bool | None]:
    """prm_ok for hacking_monitors: True iff every scored step has score >= threshold; None when
    no step of the response was scored."""
    rows = _clean_scores(step_scores)
    out: list[bool | None] = []
    for row in rows:
        sc = [s for s in row if s is not None]
        out.append(None if not sc else all(s >= threshold for s in sc))
    return out
