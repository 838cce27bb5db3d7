"""The R-PRM Ray worker: batching of concurrent callers, timeouts, surviving an actor kill, a hung
actor and an engine-core death.

Starts a local Ray and one worker actor (its own judge engine), so it is slow."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from rl_prm.score.scorer import ItemScore, ScoreConfig

ITEMS = [
    {"question": "Ann has 2 pens and buys 3 more. How many pens?", "steps": ["Ann has 2 pens.", "2 + 3 = 5.", "The answer is 5."]},
    {"question": "Bob has 7 cats and gives away 2. How many cats?", "response": "Bob has 7 cats.\n\n7 - 2 = 5.\n\nThe answer is 5."},
    {"question": "q", "steps": []},
]


@pytest.fixture(scope="module")
def ray_worker(tiny_judge_dir):
    import ray

    from rl_prm.score.worker import start_rprm_worker

    from rl_prm.backends.engines import ray_init

    # vLLM's own processes (an actor on CPU runs its engine core in-process by default), so that the
    # engine-core death below has a process to kill; the actors inherit the variable through the raylet
    old = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING")
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1"
    ray_init()  # the product's private cluster: its raylet reaps the subprocesses of a killed actor
    try:
        handle = start_rprm_worker(tiny_judge_dir, ScoreConfig(k=1, max_critique_tokens=48), num_cpus=1,
                                   max_restarts=4, batch_window_s=0.05,
                                   engine_kwargs={"max_model_len": 2048, "kv_cache_gib": 1})
        yield handle
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
        else:
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = old


def _check(results):
    assert [type(r) for r in results] == [ItemScore] * 3
    assert [r.status for r in results] == ["ok", "ok", "no_steps"]
    assert len(results[0].step_scores) == 3 and len(results[1].step_scores) == 3
    assert all(0 <= s <= 1 for s in results[0].step_scores + results[1].step_scores)
    assert all(len(st.p_yes) == 1 and st.critiques for st in results[0].steps)
    # judged here, or (merged with another caller's identical items) judged once for both
    assert (results[0].generated_tokens > 0 and results[0].prompt_tokens > 0) or results[0].shared_steps == 3
    assert results[0].seconds > 0


@pytest.mark.slow
def test_worker_scores_and_merges_concurrent_callers(ray_worker):
    import ray

    from rl_prm.score.worker import RPRMClient

    client = RPRMClient(ray_worker, timeout=300)
    _check(client.score(ITEMS))
    before = ray.get(ray_worker.stats.remote())
    refs = [ray_worker.score.remote(ITEMS) for _ in range(4)]
    results = ray.get(refs, timeout=300)
    for res in results:
        _check(res)
    after = ray.get(ray_worker.stats.remote())
    assert after["requests"] - before["requests"] == 4
    batches = after["engine_batches"] - before["engine_batches"]
    assert batches < 4  # merged into shared engine batches, where the callers' identical steps are judged once
    assert sum(res[0].judged_steps for res in results) == 3 * batches
    assert all(res[0].step_scores == results[0][0].step_scores for res in results)


@pytest.mark.slow
def test_a_batch_that_times_out_every_try_gets_counted_fallback_scores(ray_worker):
    """Never a silent zero: the items say why, and every step gets the fallback score, counted."""
    from rl_prm.score.worker import RPRMClient

    client = RPRMClient(ray_worker, timeout=0.001, retries=0)
    res = client.score(ITEMS)
    assert [r.status for r in res] == ["error"] * 3 and client.timeouts == 1
    assert "batch of 3 items timed out after 0.001 s" in res[0].error and "fallback" in res[0].error
    assert res[0].training_scores(3, 0.5) == ([0.5, 0.5, 0.5], 3)
    assert any("timed out" in e for e in client.pop_events())


def _critiques(results):
    return [st.critiques for r in results for st in r.steps]


@pytest.mark.slow
def test_set_seed_picks_the_critique_samples_of_a_new_run(ray_worker):
    from rl_prm.score.worker import RPRMClient

    client = RPRMClient(ray_worker, timeout=300)
    client.set_seed(0)
    a = _critiques(client.score(ITEMS))
    client.set_seed(7)
    b = _critiques(client.score(ITEMS))
    client.set_seed(0)
    assert _critiques(client.score(ITEMS)) == a  # the seed alone picks the samples
    assert b != a


@pytest.mark.slow
def test_engine_crash_restarts_actor_and_retries_batch(ray_worker):
    import ray

    from rl_prm.score.worker import RPRMClient

    pid = ray.get(ray_worker.pid.remote())
    client = RPRMClient(ray_worker, timeout=400, retries=2)
    client.set_seed(7)  # not the actor's start seed: the restarted actor must be given it again
    expected = _critiques(client.score(ITEMS))
    box = {}

    def call():
        try:
            box["res"] = client.score(ITEMS)
        except BaseException as e:  # pragma: no cover - reported below
            box["err"] = e

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)  # the actor process (and its engine) dies mid-run
    t.join(420)
    assert "err" not in box, box.get("err")
    _check(box["res"])
    assert _critiques(box["res"]) == expected
    assert client.pid() != pid  # a restarted actor answered


def _alive(pid):
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _engine_core(pid):
    import psutil

    return [p for p in psutil.Process(pid).children(recursive=True) if "EngineCore" in " ".join(p.cmdline())]


@pytest.mark.slow
def test_hung_worker_is_restarted_and_the_batch_retried(ray_worker):
    """A stopped actor process (a hang) times out; the client restarts it and the retry succeeds."""
    import ray

    from rl_prm.score.worker import RPRMClient

    client = RPRMClient(ray_worker, timeout=300, retries=1)
    client.set_seed(7)
    expected = _critiques(client.score(ITEMS))
    pid = ray.get(ray_worker.pid.remote())
    os.kill(pid, signal.SIGSTOP)
    client.timeout = 15.0  # a tiny-judge batch takes a few seconds; a stopped process never answers
    try:
        res = client.score(ITEMS)
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    _check(res)
    assert _critiques(res) == expected  # the restarted actor got the run's seed again
    assert client.timeouts == 1 and client.restarts == 1
    assert client.pid() != pid


@pytest.mark.slow
def test_engine_core_death_in_a_live_actor_restarts_it(ray_worker):
    import ray

    from rl_prm.score.worker import RPRMClient

    pid = ray.get(ray_worker.pid.remote())
    (core,) = _engine_core(pid)
    core.kill()
    core.wait(30)
    client = RPRMClient(ray_worker, timeout=300, retries=2)
    _check(client.score(ITEMS))  # the actor ended itself (vllm_engine.exit_when_engine_dies) or was killed
    assert client.restarts == 1 and client.pid() != pid
    assert any("died" in e and "restarted it" in e for e in client.pop_events())
    assert not _alive(core.pid)


def test_the_engine_is_built_and_always_called_on_one_thread(monkeypatch):
    """On CPU an engine called from another thread than the one that built it computes with a slower OpenMP
    team (docs/performance.md): the worker builds it and runs every batch, plain or async, on one thread."""
    import asyncio

    from rl_prm.score import worker as worker_mod

    seen = []

    class Scorer:
        engine = None

        def __init__(self):
            seen.append(("build", threading.get_ident()))

        def score(self, items):
            seen.append(("score", threading.get_ident()))
            return [ItemScore("ok", [], None, 0, 0, 0.0) for _ in items]

    monkeypatch.setattr(worker_mod.RPRMScorer, "from_path", classmethod(lambda cls, *a, **k: Scorer()))
    w = worker_mod.RPRMWorker("unused", ScoreConfig(k=1))
    w.score_sync(ITEMS[:1])

    async def two_callers():
        return await asyncio.gather(w.score(ITEMS[:1]), w.score(ITEMS[1:2]))

    asyncio.run(two_callers())
    assert [k for k, _ in seen][:2] == ["build", "score"] and len(seen) >= 3
    assert len({t for _, t in seen}) == 1


def test_judge_workers_on_cpu_split_the_cores(monkeypatch):
    """reward.prm.num_workers engines score at the same time: each gets its share of the cores, not all of them
    (two engines with every core each would fight over them); RL_PRM_ENGINE_THREADS still decides when set."""
    from rl_prm.vllm_engine import engine_threads

    monkeypatch.delenv("RL_PRM_ENGINE_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert [engine_threads(), engine_threads(2), engine_threads(3), engine_threads(16)] == [8, 4, 2, 1]
    monkeypatch.setenv("RL_PRM_ENGINE_THREADS", "3")
    assert engine_threads(2) == 3
