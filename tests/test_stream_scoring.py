"""reward.prm.stream: responses are scored while the rest of the batch generates (rl_prm.score.streaming)."""

from __future__ import annotations

import threading

import pytest


class FakePool:
    """score_spans stand-in: the result of a response is (question, its spans); blocks until released."""

    def __init__(self, fail_on: str | None = None):
        self.calls: list[list[str]] = []
        self.release = threading.Event()
        self.fail_on = fail_on

    def score_spans(self, questions, spans, judged):
        self.release.wait(10)
        self.calls.append(list(questions))
        if self.fail_on in questions:
            raise RuntimeError(f"judge failed on {self.fail_on}")
        return [(q, s) if j else None for q, s, j in zip(questions, spans, judged)]


def test_stream_scorer_starts_on_the_first_group_and_batches_the_backlog():
    from rl_prm.score.streaming import StreamScorer

    pool = FakePool()
    st = StreamScorer(pool)
    st.add(["q0", "q0"], [0, 1])
    st.add(["q1"], [2])       # queued while the judge is still busy with q0
    st.add(["q2", "q2"], [3, 4], judged=[True, False])  # the second kept from the judge by reward.prm.gate
    pool.release.set()
    assert st.finish() == [("q0", 0), ("q0", 1), ("q1", 2), ("q2", 3), None]  # the order added
    assert len(pool.calls) <= 3 and sum(map(len, pool.calls)) == 5 and st.calls == len(pool.calls)
    with pytest.raises(RuntimeError, match="after finish"):
        st.add(["q3"], [5])


def test_stream_scorer_raises_the_judges_error_in_the_caller():
    from rl_prm.score.streaming import StreamScorer

    pool = FakePool(fail_on="bad")
    pool.release.set()
    st = StreamScorer(pool)
    st.add(["bad"], [0])
    with pytest.raises(RuntimeError, match="judge failed on bad"):
        st.finish()


def test_stream_and_pipeline_together_are_refused():
    from rl_prm.config import load_recipe
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    with pytest.raises(ValueError, match="reward.prm.stream=true with trainer.pipeline=true"):
        load_recipe(root / "recipes" / "tiny_cpu.yaml", ["reward.prm.stream=true", "trainer.pipeline=true"])
    with pytest.raises(ValueError, match="reward.prm.stream=True is not supported on the verl backend"):
        load_recipe(root / "recipes" / "tiny_cpu_verl.yaml", ["reward.prm.stream=true"])
