"""rl_prm.metrics on hand-made batches with hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rl_prm.metrics import (
    SpikeDetector,
    group_metrics,
    hacking_monitors,
    length_metrics,
    ngram_repetition,
    prm_histograms,
    prm_metrics,
    prm_position_metrics,
    prm_verdicts,
    reflection_count,
    rl_metrics,
)

# 5 responses: 3 scored steps; 1 scored + 1 unscored; 1 unscored; no steps; 1 scored.
SCORES = [[0.9, 0.3, 0.8], [0.6, None], [None], [], [0.2]]


def test_prm_metrics_hand_computed():
    m = prm_metrics(SCORES, threshold=0.5)
    assert m["prm/steps_scored"] == 5
    assert m["prm/step_score_mean"] == pytest.approx((0.9 + 0.3 + 0.8 + 0.6 + 0.2) / 5)
    assert m["prm/not_scored_frac"] == pytest.approx(2 / 7)  # 7 steps, 2 unscored
    assert m["prm/frac_responses_unscored"] == pytest.approx(2 / 5)
    # by step index (1-based): step 1 of rows 0, 1, 4; step 2 only row 0 (row 1's is unscored)
    at = prm_position_metrics(SCORES)
    assert at["prm/step_score_mean@1"] == pytest.approx((0.9 + 0.6 + 0.2) / 3)
    assert at["prm/step_score_mean@2"] == pytest.approx(0.3)
    assert at["prm/step_score_mean@3"] == pytest.approx(0.8)
    assert "prm/step_score_mean@4" not in at  # no data -> no key (never NaN)
    assert m["prm/step_score_last_mean"] == pytest.approx((0.8 + 0.6 + 0.2) / 3)
    assert m["prm/response_min_score_mean"] == pytest.approx((0.3 + 0.6 + 0.2) / 3)
    # first wrong step (< 0.5): row 0 -> 2, row 1 -> none, row 4 -> 1; over 3 scored rows
    assert m["prm/frac_responses_with_wrong_step"] == pytest.approx(2 / 3)
    assert m["prm/frac_no_wrong_step"] == pytest.approx(1 / 3)
    assert m["prm/first_error_step_mean"] == pytest.approx(1.5)
    assert all(math.isfinite(v) for v in m.values())


def test_prm_metrics_threshold_and_max_index():
    m = prm_metrics(SCORES, threshold=0.25)
    assert m["prm/frac_responses_with_wrong_step"] == pytest.approx(1 / 3)  # only the 0.2
    assert m["prm/first_error_step_mean"] == 1.0
    at = prm_position_metrics(SCORES, max_index=2)
    assert "prm/step_score_mean@3" not in at and "prm/step_score_mean@2" in at
    with pytest.raises(ValueError, match="max_index"):
        prm_position_metrics(SCORES, max_index=0)


def test_prm_metrics_nan_is_unscored_and_bad_input_is_named():
    assert prm_metrics([[0.5, float("nan")]])["prm/not_scored_frac"] == 0.5
    assert prm_metrics(np.array([[0.5, np.nan]]))["prm/steps_scored"] == 1
    with pytest.raises(ValueError, match=r"step_scores\[1\]\[0\] = -0.4.*\(r\+1\)/2"):
        prm_metrics([[0.5], [-0.4]])
    with pytest.raises(TypeError, match=r"step_scores\[0\]\[1\]"):
        prm_metrics([[0.5, "yes"]])
    with pytest.raises(TypeError, match=r"step_scores\[0\]"):
        prm_metrics([0.5, 0.6])
    assert prm_metrics([]) == {}


def test_prm_histograms_and_verdicts():
    h = prm_histograms(SCORES)
    assert sorted(h["prm/step_scores_hist"]) == [0.2, 0.3, 0.6, 0.8, 0.9]
    assert sorted(h["prm/first_error_step_hist"]) == [1.0, 2.0]
    assert prm_verdicts([[0.9, 0.6], [0.9, 0.4], [None], []]) == [True, False, None, None]


# --- hacking monitors -------------------------------------------------------------------------

R0 = "Let x = 2.\n\nThen y = 4.\n\nSo the answer is 4."  # steps of 10, 11, 19 chars
R1 = "Wait, let me check. Thank you! Thank you!"  # one 41-char step; 4 reflection phrases
R2 = "a b c d a b c d\n\na b c d a b c d"  # two identical 15-char steps; 16 words
R3 = ""  # empty response: no steps


def _steps(r):
    from rl_prm.steps import split_steps

    return split_steps(r)


def test_hacking_monitors_hand_computed():
    responses = [R0, R1, R2, R3]
    steps = [_steps(r) for r in responses]
    assert [len(s) for s in steps] == [3, 1, 2, 0]
    m = hacking_monitors(responses, steps, prm_ok=[True, True, False, None], vr=[1.0, 0.0, 0.0, 1.0])
    assert m["hack/steps_per_response"] == pytest.approx(6 / 4)
    assert m["hack/mean_step_chars"] == pytest.approx((10 + 11 + 19 + 41 + 15 + 15) / 6)
    assert m["hack/max_step_chars"] == 41
    assert m["hack/dup_step_frac"] == pytest.approx(1 / 6)
    assert m["hack/frac_no_separator"] == pytest.approx(2 / 4)  # R1 (one step), R3 (none)
    # word 4-grams: R0 10 distinct, R1 5 distinct, R2 13 grams of which 4 distinct; R3 skipped
    assert m["hack/repetition"] == pytest.approx((0 + 0 + (1 - 4 / 13)) / 3)
    assert m["hack/reflection_words"] == pytest.approx(4 / 4)
    assert m["hack/thanks_per_response"] == pytest.approx(2 / 4)
    # verdicts (ok, vr>0): (T,T) agree, (T,F) PRM passes a wrong answer, (F,F) agree; R3 no verdict
    assert m["hack/prm_vr_agreement"] == pytest.approx(2 / 3)
    assert m["hack/prm_ok_vr_wrong"] == pytest.approx(1 / 3)
    assert m["hack/prm_wrong_vr_ok"] == 0.0


def test_hacking_helpers_and_errors():
    assert reflection_count("awaited Thanksgiving; let meet") == 0  # whole words only
    assert reflection_count("WAIT. Hmm, let's check... double-check; thanks") == 5
    assert ngram_repetition("one two three") is None
    assert ngram_repetition("x y z w x y z w") == pytest.approx(1 - 4 / 5)
    with pytest.raises(ValueError, match="responses=2, steps=1"):
        hacking_monitors(["a", "b"], [["a"]], [None, None], [0, 0])
    with pytest.raises(TypeError, match=r"steps\[0\]"):
        hacking_monitors(["a"], ["a"], [None], [0])
    assert hacking_monitors([], [], [], []) == {}
    assert "hack/prm_vr_agreement" not in hacking_monitors(["a"], [["a"]], [None], [1.0])


# --- spike detector ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spike_detector_quiet_on_noise_and_trend(seed):
    rng = np.random.default_rng(seed)
    det = SpikeDetector()
    fired = []
    for t in range(300):
        fired += det.update({
            "reward/mean": 0.2 + 0.002 * t + 0.05 * rng.standard_normal(),  # trend + noise
            "actor/pg_loss": 0.1 * rng.standard_normal(),  # noise around 0
            "actor/kl": abs(0.01 + 0.002 * rng.standard_normal()),
            "hack/steps_per_response": 6.0 + 0.2 * rng.standard_normal(),
        })
    assert fired == []


def test_spike_detector_fires_on_jump_once_per_level_shift():
    rng = np.random.default_rng(0)
    det = SpikeDetector(window=10)
    for _ in range(20):
        assert det.update({"actor/kl": 0.01 + 0.001 * rng.standard_normal()}) == []
    w = det.update({"actor/kl": 0.2})  # KL x20
    assert len(w) == 1 and w[0].startswith("actor/kl spiked to 0.2")
    # the new level persists: cooldown of `window` updates, then it is the new normal
    later = [x for _ in range(30) for x in det.update({"actor/kl": 0.2 + 0.001 * rng.standard_normal()})]
    assert later == []


def test_spike_detector_short_history_collapse_and_nonfinite():
    det = SpikeDetector(min_history=3)
    for v in (6.0, 6.2, 5.9):
        assert det.update({"hack/steps_per_response": v}) == []
    w = det.update({"hack/steps_per_response": 1.0})  # the policy stopped writing "\n\n"
    assert w and "hack/steps_per_response" in w[0]
    assert det.update({"reward/mean": float("nan")}) == ["reward/mean is nan (non-finite)"]
    assert SpikeDetector(keys=("a",)).update({"b": 1e9}) == []  # unwatched keys ignored
    with pytest.raises(ValueError):
        SpikeDetector(window=3, min_history=5)


# --- RL basics --------------------------------------------------------------------------------


def test_rl_basics():
    m = length_metrics([10, 20, 30], max_length=30)
    assert m == {"response_length/mean": 20.0, "response_length/max": 30.0, "response_length/min": 10.0,
                 "response_length/clip_ratio": pytest.approx(1 / 3)}
    g = group_metrics([1, 1, 0, 1], ["a", "a", "b", "b"])
    assert g == {"reward/frac_groups_zero_std": 0.5, "reward/group_std_mean": 0.25}
    r = rl_metrics([4, 6], 8, rewards=[0.0, 1.0], group_ids=[0, 0], num_tokens=100, seconds=4.0)
    assert r["reward/mean"] == 0.5 and r["reward/std"] == 0.5 and r["perf/throughput"] == 25.0
    assert r["response_length/clip_ratio"] == 0.0
    with pytest.raises(ValueError, match="group_ids"):
        group_metrics([1.0], [0, 1])


def test_per_response_rows_for_verl_reward_extra_info_sum_to_the_batch_metrics():
    from rl_prm.metrics import HACK_ROW_KEYS, PRM_ROW_KEYS, hack_row, prm_row, response_metrics, response_row

    r = prm_row([0.9, 0.3, None, 0.8])
    assert r == {"prm_num_steps": 4.0, "prm_num_scored": 3.0, "prm_score_sum": pytest.approx(2.0),
                 "prm_min_score": 0.3, "prm_last_score": 0.8, "prm_first_error_step": 2.0, "prm_ok": 0.0}
    ok, none = prm_row([0.9, 0.7]), prm_row([None])
    assert ok["prm_ok"] == 1.0 and ok["prm_first_error_step"] == 0.0
    assert math.isnan(none["prm_ok"]) and none["prm_num_scored"] == 0.0
    assert set(none) == set(ok) == set(PRM_ROW_KEYS)  # same keys for every response (verl stacks them per key)
    h = hack_row(R2, _steps(R2), True, 0.0)
    assert h["hack_num_steps"] == 2.0 and h["hack_step_chars"] == 30.0 and h["hack_dup_steps"] == 1.0
    assert h["hack_repetition"] == pytest.approx(9 / 13) and set(h) == set(HACK_ROW_KEYS)
    assert math.isnan(hack_row("", [], None, None)["hack_repetition"])
    # the rows of a batch give exactly the batch functions' numbers (the verl trainer sums the rows)
    texts = [R1, R2, "one"]
    steps = [_steps(t) for t in texts]
    scores = [[0.9, 0.2, 0.8][: len(steps[0])], [0.7] * len(steps[1]), []]
    vr = [1.0, 0.0, 0.0]
    rows = [response_row(t, s, sc, True, v) for t, s, sc, v in zip(texts, steps, scores, vr)]
    want = {**prm_metrics(scores), **hacking_monitors(texts, steps, prm_verdicts(scores), vr)}
    assert response_metrics(rows) == pytest.approx(want)



def test_hack_watch_warns_once_when_a_monitor_rises_over_the_runs_baseline():
    from rl_prm.metrics import HackWatch, WatchRule

    rule = WatchRule("hack/prm_ok_given_vr_wrong", window=4, rise=0.2, above=0.9, why="judge misses")
    watch = HackWatch([rule])
    flat = [watch.update({"hack/prm_ok_given_vr_wrong": 0.1 + 0.02 * (i % 2)}) for i in range(12)]
    assert not any(flat)  # noise around the baseline: quiet
    fired = [watch.update({"hack/prm_ok_given_vr_wrong": 0.5}) for _ in range(10)]
    # the 4-step mean (0.405) passes the baseline 0.11 + 0.2 on the third high step; then quiet for 4 steps
    assert [i for i, w in enumerate(fired) if w] == [2, 7]
    assert "0.41" in fired[2][0] and "+0.30 over the run's first 4 steps (0.11)" in fired[2][0]
    assert "judge misses" in fired[2][0]
    # a missing or NaN monitor (no wrong answers this step) is skipped, not a warning
    assert HackWatch([rule]).update({"hack/prm_ok_given_vr_wrong": float("nan")}) == []
    # an absolute level fires without a rise
    w = HackWatch([WatchRule("k", window=2, above=0.5)])
    assert [bool(w.update({"k": 0.8})) for _ in range(3)] == [False, True, False]
