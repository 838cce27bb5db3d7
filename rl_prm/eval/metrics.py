"""Pure metric functions for judge and policy evaluation (no I/O, no models).

ProcessBench (docs/protocols.md, "ProcessBench metric"):
    predict_first_error(scores, threshold) -> first step index with score < threshold, or -1
    processbench_metrics(labels, preds) -> error/correct accuracy and F1 = 2*a_err*a_cor/(a_err+a_cor), percent
    threshold_sweep(labels, step_scores, thresholds)
PRMBench (docs/protocols.md, "PRMBench metric"; step = binary case, positive = correct step):
    prmbench_counts(error_steps, scores, threshold) -> Confusion(tp, fp, tn, fn) in the harness's naming
    prf(Confusion) -> positive/negative precision, recall, F1 and PRMScore
Policy evaluation:
    pass_at_k(n, c, k)     unbiased estimator (Chen et al. 2021): 1 - C(n-c, k) / C(n, k)
    majority_vote(answers, equivalent) -> index of a representative of the largest answer class
    aggregate(step_scores, how) -> min / last step score;  best_of_n(solution_scores) -> chosen index
K-sample means:
    mean_first_k(samples, k) -> mean of the first k per-sample P(Yes) values (None = dropped sample)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

# ------------------------------------------------------------------------------------ step scores


def mean_first_k(samples: Sequence[float | None], k: int) -> float | None:
    """Mean of the first ``k`` per-sample P(Yes) values of a step, ignoring None (a critique without a
    verdict that the scorer dropped). None when none of the first k samples has a value.

    Scoring once with K_max samples and taking the first k is the same estimator as a separate run
    with K=k whose samples are drawn in the same order (sample j's seed does not depend on K)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    vals = [float(v) for v in list(samples)[:k] if v is not None]
    return sum(vals) / len(vals) if vals else None


# ------------------------------------------------------------------------------------ ProcessBench


def predict_first_error(step_scores: Sequence[float | None], threshold: float = 0.5) -> int:
    """Index of the first step whose score is below ``threshold``; -1 when there is none.

    None entries (steps that were not scored, e.g. after the labelled error) never trigger a prediction."""
    for i, s in enumerate(step_scores):
        if s is not None and s < threshold:
            return i
    return -1


def _pct(num: int, den: int) -> float:
    return 100.0 * num / den if den else float("nan")


def f1_from_accuracies(a_err: float, a_cor: float) -> float:
    """ProcessBench F1: harmonic mean of the two accuracies (0 when both are 0; NaN if either is NaN)."""
    if math.isnan(a_err) or math.isnan(a_cor):
        return float("nan")
    return 2 * a_err * a_cor / (a_err + a_cor) if (a_err + a_cor) > 0 else 0.0


def processbench_metrics(labels: Sequence[int], preds: Sequence[int]) -> dict:
    """{"error_acc", "correct_acc", "f1" (percent), "n_error", "n_correct", "n"} for one split.

    error_acc = share of erroneous items (label != -1) whose prediction equals the label exactly;
    correct_acc = share of all-correct items (label == -1) predicted -1."""
    if len(labels) != len(preds):
        raise ValueError(f"labels ({len(labels)}) and preds ({len(preds)}) differ in length")
    err = [(l, p) for l, p in zip(labels, preds) if l != -1]
    cor = [(l, p) for l, p in zip(labels, preds) if l == -1]
    a_err = _pct(sum(l == p for l, p in err), len(err))
    a_cor = _pct(sum(p == -1 for _, p in cor), len(cor))
    return {"error_acc": a_err, "correct_acc": a_cor, "f1": f1_from_accuracies(a_err, a_cor),
            "n_error": len(err), "n_correct": len(cor), "n": len(labels)}


def threshold_sweep(labels: Sequence[int], step_scores: Sequence[Sequence[float | None]],
                    thresholds: Iterable[float]) -> list[dict]:
    """processbench_metrics at each threshold: [{"threshold", "error_acc", "correct_acc", "f1", ...}]."""
    out = []
    for t in thresholds:
        preds = [predict_first_error(s, t) for s in step_scores]
        out.append({"threshold": float(t), **processbench_metrics(labels, preds)})
    return out


def average_f1(per_split: dict[str, dict]) -> float:
    """Unweighted mean of the splits' F1 (how ProcessBench and R-PRM report "avg")."""
    vals = [m["f1"] for m in per_split.values()]
    return sum(vals) / len(vals) if vals else float("nan")


# ------------------------------------------------------------------------------------ PRMBench


@dataclass
class Confusion:
    """Step counts in the PRMBench harness's naming (positive = a correct step):
    tp: correct step predicted correct, fn: correct step predicted wrong,
    tn: error step predicted wrong, fp: error step predicted correct."""

    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0

    def __iadd__(self, o: "Confusion") -> "Confusion":
        self.tp += o.tp
        self.fp += o.fp
        self.tn += o.tn
        self.fn += o.fn
        return self

    def as_dict(self) -> dict:
        return {"tp": self.tp, "fp": self.fp, "tn": self.tn, "fn": self.fn}


def prmbench_counts(error_steps: Iterable[int], step_scores: Sequence[float | None], threshold: float = 0.5,
                    missing_as: bool = True) -> Confusion:
    """Confusion of one item. ``error_steps`` are 1-based; a step is predicted correct when its score is
    >= threshold. A None score (no score) counts as predicted ``missing_as`` (correct by default)."""
    errs = {int(e) - 1 for e in error_steps}
    c = Confusion()
    for i, s in enumerate(step_scores):
        pred_ok = missing_as if s is None else (s >= threshold)
        if i in errs:
            if pred_ok:
                c.fp += 1
            else:
                c.tn += 1
        elif pred_ok:
            c.tp += 1
        else:
            c.fn += 1
    return c


def _ratio(a: int, b: int) -> float:
    return a / b if b else float("nan")


def _f1(p: float, r: float) -> float:
    """F1 of a class: NaN without cases of the class (recall undefined); 0 when recall is 0 (also when
    nothing was predicted as the class, precision undefined -- the harness's value too)."""
    if math.isnan(r):
        return float("nan")
    if r == 0:
        return 0.0
    return 2 * p * r / (p + r)


def prf(c: Confusion) -> dict:
    """Positive (correct-step) and negative (error-step) precision/recall/F1, percent, plus PRMScore =
    (positive F1 + negative F1) / 2 (equal weights: recalled from the PRMBench paper, see docs/protocols.md).
    A ratio with a zero denominator is NaN (the harness writes -1)."""
    p, r = _ratio(c.tp, c.tp + c.fp), _ratio(c.tp, c.tp + c.fn)
    np_, nr = _ratio(c.tn, c.tn + c.fn), _ratio(c.tn, c.tn + c.fp)
    f, nf = _f1(p, r), _f1(np_, nr)
    out = {"precision": p, "recall": r, "f1": f, "negative_precision": np_, "negative_recall": nr, "negative_f1": nf}
    out = {k: 100.0 * v for k, v in out.items()}
    vals = [v for v in (out["f1"], out["negative_f1"]) if not math.isnan(v)]
    out["prmscore"] = (out["f1"] + out["negative_f1"]) / 2 if len(vals) == 2 else float("nan")
    out.update(c.as_dict())
    return out


# ------------------------------------------------------------------------------------ policy metrics


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k) (Chen et al. 2021),
    computed as a stable product."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def majority_vote(answers: Sequence[str | None], equivalent: Callable[[str, str], bool] | None = None) -> int | None:
    """Index of the first sample of the largest class of equivalent answers (None answers do not vote;
    ties go to the class seen first). None when no sample has an answer.

    ``equivalent(a, b)`` decides whether two distinct answer strings are the same answer (default:
    string equality after whitespace removal); classes are built greedily against each class's first member."""
    eq = equivalent or (lambda a, b: a == b)
    classes: list[tuple[str, list[int]]] = []  # (representative answer, member indices)
    for i, a in enumerate(answers):
        if a is None:
            continue
        key = normalize_answer(a)
        for rep, members in classes:
            if rep == key or eq(rep, key):
                members.append(i)
                break
        else:
            classes.append((key, [i]))
    if not classes:
        return None
    best = max(range(len(classes)), key=lambda j: (len(classes[j][1]), -j))
    return classes[best][1][0]


def normalize_answer(a: str) -> str:
    """Whitespace-free answer string with a few LaTeX wrappers dropped (\\left, \\right, \\!, $, \\text{})."""
    s = a.strip().strip("$").rstrip(".")
    for w in ("\\left", "\\right", "\\!", "\\,", "\\;", "\\displaystyle", "\\dfrac", "\\tfrac"):
        s = s.replace(w, "\\frac" if w in ("\\dfrac", "\\tfrac") else "")
    return "".join(s.split())


def aggregate(step_scores: Sequence[float | None], how: str = "min") -> float | None:
    """Whole-solution score from step scores: "min" over scored steps or the "last" step's score
    (None when the solution has no scored step / its last step has no score)."""
    vals = [s for s in step_scores if s is not None]
    if how == "min":
        return min(vals) if vals else None
    if how == "last":
        return step_scores[-1] if step_scores and step_scores[-1] is not None else None
    raise ValueError(f"unknown aggregation {how!r}; known: min, last")


def best_of_n(solution_scores: Sequence[float | None]) -> int | None:
    """Index of the highest-scoring solution (ties -> lowest index; None scores lose to any score;
    all None -> None)."""
    best, best_s = None, None
    for i, s in enumerate(solution_scores):
        if s is not None and (best_s is None or s > best_s):
            best, best_s = i, s
    return best
