"""World judge teacher: exact R-PRM critique format, verdicts equal the labels, and the critique's
recomputation exposes every error kind (so the verdict is learnable from the text)."""

from __future__ import annotations

import re

from rl_prm.score.prompt import VERDICT_PHRASE
from rl_prm.world.judge import critique
from rl_prm.world.tasks import processbench

SECTIONS = ["**Previous Steps Analysis**:", "**Now Step Analysis**:", "**Data Source Analysis**:",
            "**Consistency Analysis**:", "**Calculation Analysis**:"]


def _evidence_of_error(text: str) -> bool:
    calc = re.search(r"= (-?\d+), and the Now Step claims (-?\d+)\.", text)
    prev = re.search(r"The previous result is (-?\d+), and the Now Step claims (-?\d+)\.", text)
    m = calc or prev
    return ("does not match" in text or "Not all operations" in text
            or (m is not None and m.group(1) != m.group(2)))


def test_critiques_follow_the_rprm_format_and_the_labels():
    n_wrong = 0
    for r in processbench("test", 120, seed=4):
        last = r["label"] if r["label"] >= 0 else len(r["steps"]) - 1
        for k in range(last + 1):
            ok = r["label"] == -1 or k < r["label"]
            c = critique(r["problem"], r["steps"], k, ok)
            assert c.startswith("Analysis:\n")
            pos = [c.index(s) for s in SECTIONS]
            assert pos == sorted(pos)
            assert c.endswith(f"{VERDICT_PHRASE} {'Yes' if ok else 'No'}")
            # the analysis itself shows the error (or its absence) before the verdict
            assert _evidence_of_error(c) == (not ok), (r["error_kind"], k, c)
            n_wrong += not ok
    assert n_wrong >= 40


def test_step_accuracy_counts_correct_steps_and_first_errors_only():
    from rl_prm.world.judge import step_accuracy

    items = [{"id": "a", "label": -1}, {"id": "b", "label": 1}]
    records = {"a": {"p_yes": [[0.9, 0.9], [0.2, 0.9]]},          # K=1: 2nd step missed; K=2: mean 0.55, judged correct
               "b": {"p_yes": [[0.9, 0.1], [0.4, 0.8], [0.1, 0.1]]}}  # label 1: step 2 (after the error) is not counted
    assert step_accuracy(items, records, 1) == {"correct_steps_yes": 66.7, "n_correct_steps": 3,
                                                "error_steps_no": 100.0, "n_error_steps": 1}
    assert step_accuracy(items, records, 2) == {"correct_steps_yes": 66.7, "n_correct_steps": 3,
                                                "error_steps_no": 0.0, "n_error_steps": 1}
