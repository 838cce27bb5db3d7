"""What the judge-on-rollouts diagnosis counts: misses at the first error, false alarms before it,
and which kinds of solution a min-form reward would penalise."""

from rl_prm.world.judge_rollouts import tally


def test_tally_counts_misses_false_alarms_and_flags_per_kind():
    items = [{"w": -1, "answer": True},   # trace
             {"w": 1, "answer": True},    # miracle: wrong step 1, right answer
             {"w": 0, "answer": False},   # wrong answer, wrong from step 0
             {"w": -1, "answer": True}]   # trace, one false alarm
    scores = [[0.9, 0.8, 0.7],
              [0.9, 0.7, 0.2],          # first error missed; a later step (after the error) flagged
              [0.1, None, 0.9],         # first error caught; a not-scored step is skipped
              [0.9, 0.3]]
    r = tally(items, scores)
    c = r["counts"]
    assert c["first_errors"] == 2 and c["missed"] == 1 and r["missed"] == 0.5
    assert c["correct_steps"] == 3 + 1 + 2 and c["false_alarms"] == 1
    assert r["false_alarm"] == round(1 / 6, 3)
    assert r["flagged"] == {"trace": 0.5, "miracle": 1.0, "wrong_answer": 1.0}


def test_tally_of_nothing_has_no_shares():
    r = tally([], [])
    assert r["missed"] is None and r["false_alarm"] is None and r["flagged"]["trace"] is None
