"""Scoring responses while the rest of the batch still generates (reward.prm.stream, local backend).

    streamer = StreamScorer(pool)                 # pool: rl_prm.score.pool.RPRMPool
    for group in rollout.generate_stream(...):    # each prompt's n rollouts as they finish
        streamer.add(questions_of(group), spans_of(group))
    streamer.close()                              # no more (finish() also closes)
    results = streamer.finish()                   # ItemScore | None per response, in the order added

One background thread sends everything added since its last call to `pool.score_spans` as one call
(the first group goes alone, later ones pile up while the judge is busy), so the judge starts on the
first finished prompt and its batches grow with the backlog. Critique seeds depend only on an item's
content, so the scores equal those of scoring the whole batch at once.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Optional, Sequence


class StreamScorer:
    def __init__(self, pool: Any):
        self.pool = pool
        self.calls = 0  # judge calls made
        self.busy_s = 0.0  # seconds the judge calls took
        self._queue: list[tuple[Sequence[str], Sequence[Any], list[bool]]] = []
        self._results: list[Optional[Any]] = []
        self._closed = False
        self._error: Optional[BaseException] = None
        self._cv = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="stream-scorer", daemon=True)
        self._thread.start()

    def add(self, questions: Sequence[str], spans: Sequence[Any], judged: Optional[Sequence[bool]] = None) -> None:
        """Queue responses (their questions and step spans; `judged` False: kept from the judge, result None)."""
        with self._cv:
            if self._closed:
                raise RuntimeError("StreamScorer.add after finish")
            self._queue.append((list(questions), list(spans),
                                [True] * len(spans) if judged is None else list(judged)))
            self._cv.notify()

    def close(self) -> None:
        """No more responses: the thread scores what is queued, then ends."""
        with self._cv:
            self._closed = True
            self._cv.notify()

    def finish(self) -> list[Optional[Any]]:
        """Wait for every queued response; their results in the order added. A failed judge call
        raises here (with its own error)."""
        self.close()
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._results

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if not self._queue:
                    return
                batch, self._queue = self._queue, []
            questions = [q for qs, _, _ in batch for q in qs]
            spans = [sp for _, sps, _ in batch for sp in sps]
            judged = [j for _, _, js in batch for j in js]
            t0 = time.perf_counter()
            try:
                results = self.pool.score_spans(questions, spans, judged)
            except BaseException as e:  # noqa: BLE001 - re-raised by finish() in the caller's thread
                self._error = e
                return
            self.busy_s += time.perf_counter() - t0
            self.calls += 1
            self._results += results
