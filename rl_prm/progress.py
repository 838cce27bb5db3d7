"""Console progress of long phases (model builds, evaluations): a line at least every EVERY_S seconds,
so that a phase that prints nothing by itself (an engine start, a batch of sampled critiques) does
not look hung.

    with heartbeat("[world judge DPO] sampling 2400 critiques"):
        ...   # "<label> ...", then "<label>: 30 s", "<label>: 60 s", ... and "<label>: done in N s"

Training loops print their own step lines, every `log_every` steps and at least every EVERY_S seconds:

    due = step_lines(log_every)
    for step in range(1, steps + 1):
        ...
        if due(step):
            print(f"step {step} ...")
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from typing import Callable, Iterator

EVERY_S = 30.0  # the longest a build or evaluation phase goes without a console line


def _writer() -> tuple[int | None, Callable[[str], object]]:
    """(a duplicate of this process's stdout fd as it is now, a function writing a line to it): an
    in-process engine started later points fd 1 at its log file (rl_prm.logs.engine_output), and the
    console must still get the lines. Without a usable fd 1: sys.stdout."""
    try:
        sys.stdout.flush()
        fd = os.dup(sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real fd (a captured or closed stdout)
        return None, lambda line: (sys.stdout.write(line + "\n"), sys.stdout.flush())
    return fd, lambda line: os.write(fd, (line + "\n").encode())


@contextlib.contextmanager
def heartbeat(label: str, every: float | None = None) -> Iterator[None]:
    """Print ``label ...`` now, ``label: N s`` every ``every`` seconds (default EVERY_S) while the block
    runs (from a daemon thread), and ``label: done in N s`` when it ends without an exception."""
    every = EVERY_S if every is None else every
    fd, say = _writer()
    stop = threading.Event()
    t0 = time.perf_counter()

    def beat() -> None:
        while not stop.wait(every):
            say(f"{label}: {time.perf_counter() - t0:.0f} s")

    say(f"{label} ...")
    thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
    thread.start()
    ok = False
    try:
        yield
        ok = True
    finally:
        stop.set()
        thread.join()
        if ok:
            say(f"{label}: done in {time.perf_counter() - t0:.0f} s")
        if fd is not None:
            os.close(fd)


def step_lines(log_every: int) -> Callable[[int], bool]:
    """A training loop's clock: ``due(step)`` says whether to print that step's line: every ``log_every``
    steps and at least every EVERY_S seconds since the last line (never with ``log_every`` 0)."""
    last = [time.perf_counter()]

    def due(step: int) -> bool:
        now = time.perf_counter()
        if log_every and (step % log_every == 0 or now - last[0] >= EVERY_S):
            last[0] = now
            return True
        return False

    return due
