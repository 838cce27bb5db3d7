"""RestartingClient: a live actor that Ray reports unavailable for a moment is not a restart."""

from __future__ import annotations

import pytest
import ray
from ray.exceptions import ActorUnavailableError

from rl_prm.actors import RestartingClient


class _Method:
    def __init__(self, fn):
        self.fn = fn

    def remote(self, *args, **kwargs):
        return lambda: self.fn(*args, **kwargs)  # a "ref": ray.get (patched below) calls it


class _Actor:
    """`work` fails with ActorUnavailableError `glitches` times; `pid` is the process after that."""

    def __init__(self, glitches: int, pid_after: int):
        self.glitches, self.pid_now, self.pid_after = glitches, 11, pid_after
        self.work = _Method(self._work)
        self.ready = _Method(lambda: True)
        self.pid = _Method(lambda: self.pid_now)

    def _work(self, x):
        if self.glitches:
            self.glitches -= 1
            self.pid_now = self.pid_after
            raise ActorUnavailableError("RpcError: recvmsg:Connection reset by peer", None)
        return x * 2


class _Client(RestartingClient):
    what = "test actor"

    def __init__(self, handle):
        super().__init__(handle, retries=2, retry_wait_s=0.0)
        self.brought_back = 0

    def on_restart(self):
        self.brought_back += 1


@pytest.fixture(autouse=True)
def _fake_get(monkeypatch):
    monkeypatch.setattr(ray, "get", lambda ref, timeout=None: ref())


def test_same_process_unavailable_for_a_moment_is_retried_not_restarted():
    c = _Client(_Actor(glitches=1, pid_after=11))
    assert c.call("work", 4) == 8
    assert (c.restarts, c.n_retries, c.brought_back) == (0, 1, 0)
    (event,) = c.pop_events()
    assert "ActorUnavailableError" in event and "same process answered again" in event


def test_a_new_process_after_unavailable_is_a_restart_and_gets_the_callers_state():
    c = _Client(_Actor(glitches=1, pid_after=12))
    assert c.call("work", 4) == 8
    assert (c.restarts, c.brought_back) == (1, 1)
    assert "restarted it" in c.pop_events()[0]


def test_unavailable_on_every_try_names_the_call():
    c = _Client(_Actor(glitches=5, pid_after=11))
    with pytest.raises(RuntimeError, match="test actor failed 3 times on work"):
        c.call("work", 4)


def test_an_engine_in_a_ray_actor_gets_every_core(monkeypatch):
    """Ray starts its workers with OMP_NUM_THREADS=1; an engine whose core runs in the actor's process
    (CPU) must not inherit that: it gets every core, or RL_PRM_ENGINE_THREADS."""
    import os

    import torch

    import rl_prm.vllm_engine as ve

    before = torch.get_num_threads()
    monkeypatch.setattr(ve, "in_ray_actor", lambda: True)
    monkeypatch.setattr(ve, "on_cpu", lambda: True)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    # set, then delete: monkeypatch records (and restores) only variables it has seen, and the code under
    # test writes os.environ itself
    for name in ("VLLM_ENABLE_V1_MULTIPROCESSING", "RL_PRM_ENGINE_THREADS"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    try:
        torch.set_num_threads(1)
        ve.engine_core_in_process()
        assert os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
        assert torch.get_num_threads() == os.cpu_count() and os.environ["OMP_NUM_THREADS"] == str(os.cpu_count())
        monkeypatch.setenv("RL_PRM_ENGINE_THREADS", "1")
        ve.engine_core_in_process()
        assert torch.get_num_threads() == 1
        # vLLM's own worker processes (multiprocessing on): vLLM binds their threads, nothing is set here
        monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "1")
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        monkeypatch.delenv("RL_PRM_ENGINE_THREADS")
        ve.engine_core_in_process()
        assert os.environ["OMP_NUM_THREADS"] == "1"
    finally:
        torch.set_num_threads(before)
