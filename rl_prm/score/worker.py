"""The R-PRM reward worker as a Ray actor.

    handle = start_rprm_worker(judge_path, ScoreConfig(k=4), name="rprm")
    client = RPRMClient(handle, timeout=600)
    results = client.score([{"question": q, "steps": [...]}, ...])   # list[ItemScore]

`RPRMWorker` is a plain class (usable in-process through `score_sync`); `RPRMWorkerActor` is its
`ray.remote` wrapper. `score(items)` returns `list[ItemScore]` (dataclasses, pickled by Ray):
per-step scores, per-sample P(Yes), token counts and timings (ItemScore.seconds is the item's
share of the engine batch it was scored in; `stats()` has totals).

Batching: the actor is async; concurrent `score` calls are queued and merged by one batching
loop (requests arriving within `batch_window_s` of each other, up to `max_batch_items` items, go
into one `RPRMScorer.score` call, i.e. a few engine calls). The engine is built and run on one
thread of its own (`engine_thread`), so the actor keeps accepting requests meanwhile: on CPU an
engine run from another thread than the one that built it computes with a slower OpenMP team
(docs/performance.md).

Faults (rl_prm.actors): the actor is created with `max_restarts` and no task retries. A call
whose actor died, whose engine core died or that ran past `timeout` gets the actor restarted (a
fresh engine; `RPRMClient` gives it the run's critique seed again) and is tried again, up to
`retries` more times; a batch whose every try timed out comes back as "error" items naming the
timeout (every step of them gets the recipe's fallback_score, counted as prm/steps_fallback and
prm/timeouts). Bad items never fail a batch: each gets an ItemScore.status ("no_steps",
"empty_step", "too_long", "bad_input", "error"). Quiet sessions give the actor a log file
(rl_prm.logs): its output and its engine's go there.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any, Mapping, Sequence

from rl_prm.actors import RestartingClient
from rl_prm.logs import redirect_process
from rl_prm.score.scorer import ItemScore, RPRMScorer, ScoreConfig
from rl_prm.vllm_engine import engine_core_in_process, engine_dead, exit_when_engine_dies, in_ray_actor


class RPRMWorker:
    """Holds one judge engine; scores batches of {question, steps} / {question, response}.

    share: the judge workers that score at the same time (on CPU each engine gets its share of the cores:
    rl_prm.vllm_engine.engine_threads)."""

    def __init__(self, judge_path: str, config: ScoreConfig | Mapping | None = None,
                 engine_kwargs: Mapping[str, Any] | None = None, batch_window_s: float = 0.005,
                 max_batch_items: int = 512, log_file: str | None = None, share: int = 1):
        if log_file:  # an actor of a quiet session: everything it (and its engine) prints goes there
            redirect_process(log_file)
        if isinstance(config, Mapping):
            config = ScoreConfig(**config)
        self.config = config or ScoreConfig()
        # every engine call on the thread that built the engine (module doc)
        self.engine_thread = ThreadPoolExecutor(1, thread_name_prefix="rl-prm-judge")
        self.scorer = self.engine_thread.submit(self._build, judge_path, dict(engine_kwargs or {}), share).result()

        if in_ray_actor():  # a dead engine core ends the actor, so Ray restarts it (RPRMClient retries)
            exit_when_engine_dies(self.scorer.engine.llm, "R-PRM worker")
        self.batch_window_s = batch_window_s
        self.max_batch_items = max_batch_items
        self._queue: asyncio.Queue | None = None
        self._loop_task: asyncio.Task | None = None
        self._stats = {"requests": 0, "items": 0, "engine_batches": 0, "generated_tokens": 0, "prompt_tokens": 0,
                       "engine_seconds": 0.0, "started": time.time()}

    def _build(self, judge_path: str, engine_kwargs: dict, share: int) -> RPRMScorer:
        engine_core_in_process(share)  # torch threads are set per thread: on the engine's own
        return RPRMScorer.from_path(judge_path, self.config, **engine_kwargs)

    # -- plain use --------------------------------------------------------------------------------

    def score_sync(self, items: Sequence[Mapping]) -> list[ItemScore]:
        return self.engine_thread.submit(self._run, list(items)).result()

    def _run(self, items: list) -> list[ItemScore]:
        t0 = time.perf_counter()
        res = self.scorer.score(items)
        if engine_dead(getattr(self.scorer.engine, "llm", None)):  # the scorer turned it into "error" items
            # vllm: seconds to import, so not at the top (loaded by now: the engine runs in this process)
            from vllm.v1.engine.exceptions import EngineDeadError

            raise EngineDeadError()
        s = self._stats
        s["engine_batches"] += 1
        s["engine_seconds"] += time.perf_counter() - t0
        s["generated_tokens"] += sum(r.generated_tokens for r in res)
        s["prompt_tokens"] += sum(r.prompt_tokens for r in res)
        return res

    # -- actor API --------------------------------------------------------------------------------

    async def score(self, items: Sequence[Mapping]) -> list[ItemScore]:
        """Score a batch; concurrent calls are merged into shared engine batches."""
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._loop_task = asyncio.get_running_loop().create_task(self._batch_loop())
        fut = asyncio.get_running_loop().create_future()
        items = list(items)
        self._stats["requests"] += 1
        self._stats["items"] += len(items)
        await self._queue.put((items, fut))
        return await fut

    async def _batch_loop(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            n = len(batch[0][0])
            deadline = loop.time() + self.batch_window_s
            while n < self.max_batch_items:
                timeout = deadline - loop.time()
                try:
                    nxt = self._queue.get_nowait() if timeout <= 0 else await asyncio.wait_for(self._queue.get(), timeout)
                except (asyncio.TimeoutError, asyncio.QueueEmpty):
                    break
                batch.append(nxt)
                n += len(nxt[0])
            merged = [it for items, _ in batch for it in items]
            try:
                res = await loop.run_in_executor(self.engine_thread, self._run, merged)
            except BaseException as e:  # engine died: fail these requests (the actor restarts if its process died)
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            i = 0
            for items, fut in batch:
                if not fut.done():
                    fut.set_result(res[i: i + len(items)])
                i += len(items)

    def set_seed(self, seed: int | None) -> None:
        """Base of the content-derived critique seeds from now on (a new run on a kept engine)."""
        self.config.seed = seed
        self.scorer.config.seed = seed

    def stats(self) -> dict[str, Any]:
        return dict(self._stats, config=asdict(self.config), pid=os.getpid())

    def pid(self) -> int:
        return os.getpid()

    def ready(self) -> bool:
        return True


def _ray():
    import ray  # ray: about a second to import; RPRMWorker in-process (score_sync) and the pool's callers do without it

    return ray


def _actor_class():
    return _ray().remote(RPRMWorker)


class _LazyActor:
    """`RPRMWorkerActor` = ray.remote(RPRMWorker), created on first use (importing this module
    does not import ray)."""

    _cls = None

    def __getattr__(self, name: str) -> Any:
        if _LazyActor._cls is None:
            _LazyActor._cls = _actor_class()
        return getattr(_LazyActor._cls, name)


RPRMWorkerActor: Any = _LazyActor()


def start_rprm_worker(judge_path: str, config: ScoreConfig | None = None, *, num_cpus: float = 1, num_gpus: float = 0,
                      name: str | None = None, max_restarts: int = 3, max_task_retries: int = 0,
                      engine_kwargs: Mapping[str, Any] | None = None, batch_window_s: float = 0.005,
                      wait_ready: bool = True, ready_timeout: float = 600.0, log_file: str | None = None,
                      share: int = 1):
    """Create the R-PRM worker actor (restartable; `RPRMClient` retries a call after a crash, once
    the fresh actor has the run's seed: Ray's own task retries would run it with the start seed).

    The engine starts in the actor's constructor; with `wait_ready` this blocks until it is up.
    share: judge workers scoring at the same time (on CPU they split the cores: rl_prm.vllm_engine.engine_threads).
    """
    ray = _ray()
    opts: dict[str, Any] = dict(num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=max_restarts,
                                max_task_retries=max_task_retries, max_concurrency=64)
    if name:
        opts["name"] = name
    handle = RPRMWorkerActor.options(**opts).remote(str(judge_path), config, dict(engine_kwargs or {}), batch_window_s,
                                                  512, log_file, share)
    if wait_ready:
        ray.get(handle.ready.remote(), timeout=ready_timeout)
    return handle


class RPRMClient(RestartingClient):
    """The worker's client: restarts and retries (rl_prm.actors); a batch whose every try timed out
    comes back as "error" items naming the timeout (their steps get the fallback score, counted)."""

    what = "R-PRM worker"

    def __init__(self, handle: Any, timeout: float = 600.0, retries: int = 2, retry_wait_s: float = 1.0,
                 ready_timeout: float = 900.0):
        super().__init__(handle, retries=retries, ready_timeout=ready_timeout, retry_wait_s=retry_wait_s)
        self.timeout = timeout
        self.seed: int | None = None  # set_seed's seed, given again to a restarted actor

    def set_seed(self, seed: int | None) -> None:
        self.seed = seed
        self.call("set_seed", seed, timeout=self.timeout)

    def on_restart(self) -> None:
        if self.seed is not None:  # a restarted actor ran __init__ again: its seed is the start one
            _ray().get(self.handle.set_seed.remote(self.seed), timeout=self.timeout)

    def score(self, items: Sequence[Mapping]) -> list[ItemScore]:
        items = list(items)
        try:
            return self.call("score", items, timeout=self.timeout)
        except TimeoutError:
            msg = (f"R-PRM scoring of a batch of {len(items)} items timed out after {self.timeout:g} s in each of "
                   f"{self.retries + 1} tries (worker {self.handle}); its steps get the fallback score, "
                   "and the worker is restarted before the next call")
            self._events.append(msg)
            return [ItemScore("error", [], msg, 0, 0, 0.0) for _ in items]
