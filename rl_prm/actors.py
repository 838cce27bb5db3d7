"""Calls on a restartable Ray actor: the rollout engine's and the R-PRM workers' clients.

    client = RestartingClient(handle, what="rollout engine", retries=2)
    out = client.call("generate", prompts, n=4, timeout=None)

The actor is created with `max_restarts` and `max_task_retries=0` (Ray starts a fresh process,
running the constructor again, when the process dies; pending calls fail instead of silently
running again on the fresh process, which would not hold the caller's state yet). A call that fails
because
  * the actor process died (kill -9, OOM): RayActorError; Ray is already restarting it,
  * the actor lives but its vLLM engine core died: the call raises vLLM's EngineDeadError,
  * it took longer than `timeout` (a hung engine): the call is cancelled,
gets the actor restarted (the last two: `ray.kill(no_restart=False)`), waits for the fresh actor's
`ready()`, runs `on_restart()` (a subclass brings the fresh actor to the caller's state: the
learner's weights, the run's critique seed) and is tried again, at most `retries` more times.
Each fault is counted (`restarts`, `timeouts`) and described in `pop_events()` (the trainer prints
them as warnings). After the last try: a timeout raises TimeoutError naming the call and its
timeout; a death raises RuntimeError naming the cause.

Ray also reports a live actor as unavailable for a moment (ActorUnavailableError, "connection reset
by peer", seen right after a restart): the client waits for `ready()` and compares the actor's
`pid()` with the one it knew; the same process is a glitch (the call is retried, no restart counted,
no `on_restart()`), a new one is a restart.
"""

from __future__ import annotations

import time
from typing import Any, Optional

# Ray raises these when a call's result is an engine-core death inside a live actor
_ENGINE_DEAD = ("EngineDeadError", "EngineCore encountered an issue")


def engine_dead(e: BaseException) -> bool:
    """True when `e` (a Ray task error) carries vLLM's EngineDeadError: the actor's engine is gone."""
    cause = getattr(e, "cause", None)
    names = {c.__name__ for c in type(cause).__mro__} if cause is not None else set()
    return "EngineDeadError" in names or any(s in str(e) for s in _ENGINE_DEAD)


class RestartingClient:
    """Calls `handle.<method>.remote(...)` with the restarts and retries of the module doc."""

    what = "actor"

    def __init__(self, handle: Any, *, retries: int = 2, ready_timeout: float = 900.0, retry_wait_s: float = 1.0):
        self.handle = handle
        self.retries = retries
        self.ready_timeout = ready_timeout
        self.retry_wait_s = retry_wait_s
        self.restarts = 0  # fresh actors waited for (after a death, an engine death or a timeout)
        self.timeouts = 0  # calls that ran past their timeout
        self.n_retries = 0  # calls tried again
        self._events: list[str] = []
        self._suspect = False  # the last call timed out or its engine died: restart before the next one
        self._pid: Optional[int] = None  # the actor process the caller's state lives in

    def on_restart(self) -> None:
        """Bring a fresh actor to the state the caller expects (subclasses)."""

    def pop_events(self) -> list[str]:
        """Fault descriptions since the last call (one line each)."""
        out, self._events = self._events, []
        return out

    def call(self, method: str, *args: Any, timeout: Optional[float] = None, **kwargs: Any) -> Any:
        """`handle.method(*args, **kwargs)` through Ray, restarted and retried as the module doc says."""
        # ray: about a second to import; rl_prm.generate and rl_prm.score.worker import this module without it
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

        if self._pid is None:
            self._pid = self._actor_pid()
        last: BaseException | None = None
        why = ""  # what left the actor suspect (a timeout, an engine death)
        for attempt in range(self.retries + 1):
            if attempt:
                self.n_retries += 1
            if self._suspect:
                self._restart(kill=True, why=why or "the last call timed out")
            ref = getattr(self.handle, method).remote(*args, **kwargs)
            try:
                return ray.get(ref, timeout=timeout)
            except GetTimeoutError:
                ray.cancel(ref)
                self.timeouts += 1
                self._suspect = True
                last = TimeoutError(f"{self.what} call {method} timed out after {timeout:g} s "
                                    f"({attempt + 1} of {self.retries + 1} tries)")
                why = str(last)
            except RayActorError as e:  # the process died; Ray restarts it (max_restarts)
                last = e
                time.sleep(self.retry_wait_s)
                self._restart(kill=False, why=f"{self.what} died during {method} ({type(e).__name__})")
            except RayTaskError as e:
                if not engine_dead(e):
                    raise
                last, why = e, f"{self.what}'s engine core died during {method}"
                self._suspect = True
        if isinstance(last, TimeoutError):  # the actor is restarted before the next call
            raise last
        raise RuntimeError(f"{self.what} failed {self.retries + 1} times on {method}: {last}") from last

    def _restart(self, kill: bool, why: str) -> None:
        """Wait for a fresh actor (killing this one first when `kill`), then `on_restart()`; one event."""
        import ray  # about a second to import (see call)
        from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError

        t0 = time.time()
        if kill:
            try:
                ray.kill(self.handle, no_restart=False)
            except Exception:  # noqa: BLE001 - already dead: Ray restarts it anyway
                pass
            self._pid = None
        died = 0
        while True:  # "unavailable" while Ray restarts it; "died" a few times in a row: no restarts left
            left = self.ready_timeout - (time.time() - t0)
            try:
                ray.get(self.handle.ready.remote(), timeout=max(1.0, left))
                pid = ray.get(self.handle.pid.remote(), timeout=max(1.0, left))
                break
            except (GetTimeoutError, ActorUnavailableError) as e:
                if time.time() - t0 > self.ready_timeout:
                    raise RuntimeError(f"{self.what} did not come back within {self.ready_timeout:g} s: {e}") from e
            except RayActorError as e:
                died += 1
                if died >= 5:
                    raise RuntimeError(f"{self.what} is gone (no restarts left?): {e}") from e
            time.sleep(self.retry_wait_s)
        self._suspect = False
        if pid == self._pid:  # the same process answered: it was unavailable for a moment, not restarted
            self._events.append(f"{why}; the same process answered again after {time.time() - t0:.0f} s and the "
                                "call was retried")
            return
        self._pid = pid
        self.restarts += 1
        self.on_restart()
        self._events.append(f"{why}; restarted it in {time.time() - t0:.0f} s and retried the call")

    def _actor_pid(self) -> Optional[int]:
        """The actor's process id, or None when it does not answer within a minute."""
        import ray  # about a second to import (see call)

        try:
            return ray.get(self.handle.pid.remote(), timeout=60)
        except Exception:  # noqa: BLE001 - unknown: the next restart is counted as one
            return None

    def pid(self) -> int:
        """The actor's process id, through the restarts and retries above."""
        return self.call("pid")
