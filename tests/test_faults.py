"""Faults the trainer survives: checkpoints killed mid-write, truncated, corrupted, on a full disk or
in an unwritable place (no engine, fast), and a kill -9 of the rollout engine actor (Ray, slow).
The R-PRM worker's faults (kill -9, hang, engine-core death) are in tests/test_score_worker.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from rl_prm import checkpoint as ckpt

PARAM = "model.embed_tokens.weight"


def _learner(path):
    from rl_prm.update import Learner, LearnerConfig

    return Learner(path, LearnerConfig(lr=1e-3, kl_coef=0.0, micro_batch_size=8, grad_clip=1e9, device="cpu"))


@pytest.fixture(scope="module")
def learner(tiny_policy_dir):
    return _learner(tiny_policy_dir)


def _two_checkpoints(root, learner):
    for step in (1, 2):
        ckpt.save_checkpoint(root, step, learner, run_id="r1", keep=3)
    assert ckpt.verify_checkpoint(root / "step_000002") is None


@pytest.mark.parametrize("damage, problem", [
    (lambda p: p.joinpath("model", "model.safetensors").write_bytes(
        p.joinpath("model", "model.safetensors").read_bytes()[:1000]), "model/model.safetensors has 1000 bytes"),
    (lambda p: _flip_byte(p / "learner.pt"), "learner.pt does not match its sha256"),
    (lambda p: (p / "state.json").write_text('{"step": 2, "fil'), "state.json unreadable"),
    (lambda p: (p / "rng.pt").unlink(), "rng.pt is missing"),
])
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, learner, capsys, damage, problem):
    root = tmp_path / "checkpoints"
    _two_checkpoints(root, learner)
    damage(root / "step_000002")
    start, run_id, path = ckpt.resume_point(root, resume=True)
    assert (start, run_id, path.name) == (2, "r1", "step_000001")
    err = capsys.readouterr().err
    assert "WARNING: checkpoint" in err and problem in err and "resuming from the one before it" in err
    assert [p.name for p in root.iterdir() if p.name.startswith(".corrupt-step_000002")]  # kept aside, never resumed
    ckpt.save_checkpoint(root, 2, learner, run_id="r1", keep=3)  # the replayed step saves again
    assert [s for s, _ in ckpt.list_checkpoints(root)] == [1, 2] and ckpt.resume_point(root, True)[0] == 3


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_every_checkpoint_damaged_starts_fresh(tmp_path, learner, capsys):
    root = tmp_path / "checkpoints"
    _two_checkpoints(root, learner)
    for step in (1, 2):
        (root / f"step_{step:06d}" / "learner.pt").write_bytes(b"")
    assert ckpt.resume_point(root, resume=True) == (1, None, None)
    assert capsys.readouterr().err.count("WARNING: checkpoint") == 2


def test_unwritable_checkpoint_dir_fails_loudly_and_keeps_the_previous(tmp_path, learner):
    root = tmp_path / "checkpoints"
    _two_checkpoints(root, learner)
    (tmp_path / "blocker").write_text("a file where a directory should be")
    with pytest.raises(ckpt.CheckpointError, match=r"checkpoint step 3 was not written to .*blocker/ck: "):
        ckpt.save_checkpoint(tmp_path / "blocker" / "ck", 3, learner)
    # the step dir itself cannot be created (a file is in the way): same loud error, old ones kept
    (root / f".tmp-step_000003-{os.getpid()}").write_text("in the way")
    with pytest.raises(ckpt.CheckpointError, match=r"kept: step_000001, step_000002"):
        ckpt.save_checkpoint(root, 3, learner, keep=1)
    assert [s for s, _ in ckpt.list_checkpoints(root)] == [1, 2]
    assert ckpt.verify_checkpoint(root / "step_000002") is None


_CHILD = textwrap.dedent("""
    import json, resource, sys
    from rl_prm import checkpoint as ckpt
    from rl_prm.update import Learner, LearnerConfig

    root, policy = sys.argv[1:3]
    lr = Learner(policy, LearnerConfig(lr=1e-3, kl_coef=0.0, micro_batch_size=8, grad_clip=1e9, device="cpu"))
    ckpt.save_checkpoint(root, 1, lr, run_id="r1")
    # a full disk: every write past 64 KiB fails (EFBIG, as ENOSPC would)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
    try:
        ckpt.save_checkpoint(root, 2, lr, run_id="r1")
        report = {"raised": None}
    except ckpt.CheckpointError as e:
        report = {"raised": str(e)}
    report["after"] = [s for s, _ in ckpt.list_checkpoints(root)]
    report["tmp"] = [p.name for p in __import__("pathlib").Path(root).glob(".tmp-*")]
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    print(json.dumps(report), flush=True)
    step = 2
    while True:  # save again and again until killed
        ckpt.save_checkpoint(root, step, lr, run_id="r1", keep=2)
        step += 1
""")


def test_full_disk_and_kill_9_during_checkpoint_writes(tmp_path, tiny_policy_dir):
    """A full disk fails the save loudly and keeps the previous checkpoint; a kill -9 in the middle
    of saves never leaves a checkpoint that is half written."""
    root = tmp_path / "checkpoints"
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(root), str(tiny_policy_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        report = json.loads(line)
        deadline = time.time() + 120
        while len(ckpt.list_checkpoints(root)) < 2 and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.37)  # somewhere inside a later save
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    raised = report["raised"]
    assert raised and "checkpoint step 2 was not written" in raised and "File too large" in raised, raised
    assert "kept: step_000001" in raised and report["after"] == [1] and report["tmp"] == []
    ckpts = ckpt.list_checkpoints(root)
    assert len(ckpts) >= 2 and all(ckpt.verify_checkpoint(p) is None for _, p in ckpts), ckpts
    start, _, path = ckpt.resume_point(root, True)
    assert path == ckpts[-1][1] and start == ckpts[-1][0] + 1


# ---------------------------------------------------------------------------------------- rollout engine


@pytest.mark.slow
def test_kill_9_of_the_rollout_engine_restarts_it_with_the_learners_weights(tmp_path, tiny_policy_dir):
    """The actor process dies mid-generate; the client waits for the fresh actor, pushes the learner's
    current weights (not the start weights it was created from) and retries: same samples as before."""
    import ray
    from transformers import AutoModelForCausalLM

    from rl_prm.generate import RolloutClient, rollout_actor

    from rl_prm.backends.engines import ray_init

    ray_init()  # the product's private cluster: its raylet reaps the subprocesses of a killed actor
    try:
        log = tmp_path / "logs" / "rollout.log"
        handle = rollout_actor().remote(str(tiny_policy_dir), max_model_len=256, kv_cache_gib=1, log_file=str(log))
        learner = {k: v * 0.5 for k, v in AutoModelForCausalLM.from_pretrained(tiny_policy_dir).state_dict().items()}
        client = RolloutClient(handle, weights=lambda: learner.items())
        client.load_weights(learner.items())  # the learner has moved away from the start weights
        prompts = [[5, 6, 7, 8], [9, 10, 11]]
        before = client.generate(prompts, n=2, max_tokens=24, seed=11)
        pid = client.pid()
        import psutil

        if "VLLM_ENABLE_V1_MULTIPROCESSING" not in os.environ:  # on CPU the engine runs in the actor's process
            assert not [c for c in psutil.Process(pid).children(recursive=True) if "EngineCore" in " ".join(c.cmdline())]
        box = {}

        def kill_soon():
            time.sleep(0.3)
            os.kill(pid, signal.SIGKILL)

        import threading

        t = threading.Thread(target=kill_soon)
        t.start()
        for _ in range(20):  # keep the engine busy until the kill lands
            box["after"] = client.generate(prompts, n=2, max_tokens=24, seed=11)
            if client.restarts:
                break
        t.join()
        assert client.restarts == 1 and client.pid() != pid
        assert [o.response_ids for o in box["after"]] == [o.response_ids for o in before]
        engine_w = client.fetch_weights([PARAM])[PARAM][: learner[PARAM].shape[0]]
        assert torch.equal(engine_w, learner[PARAM])  # the learner's weights, not the start weights
        events = client.pop_events()
        assert any("rollout engine died during generate" in e for e in events), events
        text = log.read_text()
        assert text.count("writes here ====") == 2  # both actor processes wrote their log here
        assert "Failed to load weights" not in text  # the rotary-embedding reload line (rl_prm.generate)
    finally:
        ray.shutdown()
