"""Pure metric functions of rl_prm.eval.metrics (no models, no data files)."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rl_prm.eval.metrics import (
    aggregate,
    best_of_n,
    majority_vote,
    mean_first_k,
    pass_at_k,
    predict_first_error,
    prf,
    prmbench_counts,
    processbench_metrics,
    threshold_sweep,
)


def brute_pass_at_k(n: int, c: int, k: int) -> float:
    """Share of the k-subsets of n samples (c correct) holding at least one correct sample."""
    flags = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(flags[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_matches_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_1_is_the_correct_share_and_bad_input_is_refused():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    for bad in [(4, 5, 1), (4, 2, 0), (4, 2, 5), (4, -1, 1)]:
        with pytest.raises(ValueError):
            pass_at_k(*bad)


def test_majority_vote_classes_ties_and_missing_answers():
    # "2" twice vs "3" twice: tie -> the class seen first ("3" at index 0)
    assert majority_vote(["3", "2", None, "2", "3"]) == 0
    assert majority_vote(["3", "2", "2"]) == 1
    assert majority_vote([None, None]) is None
    assert majority_vote([]) is None
    # whitespace / \left \right / $ differences are the same answer without an equivalence function
    assert majority_vote(["5", "\\left(1, 2\\right)", "(1,2)", "$(1, 2)$"]) == 1


def test_majority_vote_uses_math_verify_equivalence():
    from rl_prm.eval.math_eval import answers_equivalent

    answers = ["7", "7", "0.5", "\\frac{1}{2}", "1/2", "7.0001"]
    # 0.5 == \\frac{1}{2} == 1/2 (3 votes) beats "7" (2 votes; 7.0001 is a different number)
    assert majority_vote(answers, answers_equivalent) == 2
    assert majority_vote(answers) == 0  # string equality alone: "7" (2 votes) wins
    assert not answers_equivalent("7", "8")


def test_best_of_n_selection_min_and_last():
    sols = [[0.9, 0.2, 0.95], [0.6, 0.7, 0.65], [], [0.8, None, 0.99]]
    mins = [aggregate(s, "min") for s in sols]
    lasts = [aggregate(s, "last") for s in sols]
    assert mins == [0.2, 0.6, None, 0.8]
    assert lasts == [0.95, 0.65, None, 0.99]
    assert best_of_n(mins) == 3
    assert best_of_n(lasts) == 3
    assert best_of_n([0.5, 0.7, 0.7]) == 1  # ties -> lowest index
    assert best_of_n([None, None]) is None
    assert best_of_n([None, 0.0]) == 1  # any score beats no score
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate([0.1], "mean")


def test_predict_first_error_and_processbench_metrics_by_hand():
    assert predict_first_error([0.9, 0.4, 0.1]) == 1
    assert predict_first_error([0.9, 0.5, 0.7]) == -1  # 0.5 is not below 0.5
    assert predict_first_error([0.9, None, 0.2]) == 2  # unscored steps never trigger
    labels = [-1, -1, -1, 2, 0, 1, 3]
    preds = [-1, 1, -1, 2, 0, -1, 1]
    m = processbench_metrics(labels, preds)
    a_err, a_cor = 100 * 2 / 4, 100 * 2 / 3
    assert m["error_acc"] == pytest.approx(a_err)
    assert m["correct_acc"] == pytest.approx(a_cor)
    assert m["f1"] == pytest.approx(2 * a_err * a_cor / (a_err + a_cor))
    assert (m["n_error"], m["n_correct"]) == (4, 3)
    with pytest.raises(ValueError):
        processbench_metrics([1], [])


def test_threshold_sweep_recomputes_predictions_per_threshold():
    labels = [-1, 1, 0]
    scores = [[0.8, 0.6], [0.9, 0.3], [0.45]]
    sweep = threshold_sweep(labels, scores, [0.2, 0.5, 0.7])
    # t=0.2: nothing below -> preds [-1,-1,-1]: err 0/2, cor 1/1
    assert (sweep[0]["error_acc"], sweep[0]["correct_acc"], sweep[0]["f1"]) == (0.0, 100.0, 0.0)
    # t=0.5: preds [-1, 1, 0]: perfect
    assert sweep[1]["f1"] == pytest.approx(100.0)
    # t=0.7: preds [1, 1, 0]: err 2/2, cor 0/1
    assert (sweep[2]["error_acc"], sweep[2]["correct_acc"], sweep[2]["f1"]) == (100.0, 0.0, 0.0)
    assert [s["threshold"] for s in sweep] == [0.2, 0.5, 0.7]


def test_prmbench_counts_and_prf_by_hand():
    # error steps 2 and 4 (1-based); predictions: ok, wrong, ok, ok, wrong
    c = prmbench_counts([2, 4], [0.9, 0.1, 0.6, 0.7, 0.2], threshold=0.5)
    assert (c.tp, c.fn, c.tn, c.fp) == (2, 1, 1, 1)
    m = prf(c)
    p, r = 2 / 3, 2 / 3
    npr, nr = 1 / 2, 1 / 2
    assert m["f1"] == pytest.approx(100 * 2 * p * r / (p + r))
    assert m["negative_f1"] == pytest.approx(100 * 2 * npr * nr / (npr + nr))
    assert m["prmscore"] == pytest.approx((m["f1"] + m["negative_f1"]) / 2)
    # threshold is inclusive for "correct": 0.5 >= 0.5
    assert prmbench_counts([1], [0.5]).fp == 1
    # no error steps at all: negative metrics undefined (NaN), not 0
    m = prf(prmbench_counts([], [0.9, 0.1]))
    assert math.isnan(m["negative_recall"]) and math.isnan(m["negative_f1"]) and math.isnan(m["prmscore"])
    # everything predicted correct: negative recall 0 -> negative F1 0 (precision undefined)
    m = prf(prmbench_counts([1], [0.9, 0.9]))
    assert m["negative_f1"] == 0.0 and m["recall"] == 100.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(0, 1)), min_size=1, max_size=8), st.integers(1, 8))
def test_mean_first_k_is_the_mean_of_the_first_k_values(samples, k):
    got = mean_first_k(samples, k)
    vals = [v for v in samples[:k] if v is not None]
    if not vals:
        assert got is None
    else:
        assert got == pytest.approx(sum(vals) / len(vals))
    with pytest.raises(ValueError):
        mean_first_k(samples, 0)
