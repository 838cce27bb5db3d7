"""Each distinct judge prompt judged once: the scorer's memo of step verdicts.

A step's judge prompt (the question and the steps up to it, rl_prm.score.prompt) and its critique seed
(derived from that content, RPRMScorer._seed) fix what the judge is asked, and the judge is frozen, so
two rollouts that share a question and their first k steps get the same verdict on step k. With greedy
critiques (temperature 0) the shared score is the one a second judging would give; with sampled
critiques the duplicates share the K critiques drawn for the first (the same seed would draw the same
ones up to the engine's batch numerics).

    memo = JudgeMemo()
    owner, fut = memo.claim(key)   # owner: this call judges the step, then memo.resolve(key, fut, step_score)
                                   # else fut.result() is the StepScore another call judged (or is judging)

Thread-safe: verl's reward manager scores each response in its own thread, so a step may be in flight
in one call when another asks for it. Scores are kept (least recently used dropped past `max_entries`)
until `clear()`; a step that failed or was not scored is handed to the calls waiting for it but not
kept, so a later call judges it again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections import OrderedDict
from concurrent.futures import Future
from typing import Any


def unit_key(prompt_text: str, seed: int | None, config_tag: str) -> bytes:
    """The memo key of one step: its judge prompt, critique seed and the scoring settings (16 bytes)."""
    h = hashlib.blake2b(digest_size=16)
    for part in (config_tag, str(seed), prompt_text):
        h.update(part.encode("utf-8"))
        h.update(b"\x00")
    return h.digest()


class JudgeMemo:
    def __init__(self, max_entries: int = 20_000):  # a few RL steps of judge prompts at 512 responses x 10 steps
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._futures: OrderedDict[bytes, Future] = OrderedDict()

    def claim(self, key: bytes) -> tuple[bool, Future]:
        """(True, a new future) if no call has this step yet: the caller judges it and resolves it;
        else (False, the future of the call that has it, done or in flight)."""
        with self._lock:
            fut = self._futures.get(key)
            if fut is not None:
                self._futures.move_to_end(key)
                return False, fut
            fut = Future()
            self._futures[key] = fut
            while len(self._futures) > self.max_entries:
                self._futures.popitem(last=False)
            return True, fut

    def resolve(self, key: bytes, fut: Future, step: Any) -> None:
        """Hand (a copy of) the owner's StepScore to every waiter; keep it only if the judge gave it a score."""
        fut.set_result(dataclasses.replace(step, critiques=list(step.critiques), p_yes=list(step.p_yes)))
        if step.score is None or step.flag is not None:
            with self._lock:
                if self._futures.get(key) is fut:
                    del self._futures[key]

    def clear(self) -> None:
        with self._lock:
            self._futures.clear()

    def __len__(self) -> int:
        return len(self._futures)
