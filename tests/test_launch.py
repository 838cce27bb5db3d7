"""launch/grpo_rprm.sh: backend from the recipe, python discovery, --dry-run, and `ray job submit`.

The slow test starts a private Ray head (127.0.0.1, 2 logical GPUs, small object store, own temp dir),
submits `bash launch/grpo_rprm.sh recipes/tiny_cpu_verl.yaml trainer.total_steps=2` (verl's trainer on
CPU, tiny models) as a Ray job, waits for SUCCEEDED and checks verl's steps and the run's outputs; a
job with an unknown recipe key must end FAILED with the key in its logs. The head runs under `ray start --block` in its own session and is stopped by
signalling that process group only (never `ray stop`, which would stop other users' Ray clusters).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch" / "grpo_rprm.sh"
PY = sys.executable


def _launch(*args, env=None, timeout=120):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(["bash", str(LAUNCH), *args], cwd=REPO, env=e, capture_output=True, text=True,
                          timeout=timeout)


def test_dry_run_prints_the_verl_command_and_it_validates_against_verl():
    from rl_prm.verl_ext.config_check import compose, validate

    r = _launch("recipes/grpo_rprm_qwen2.5_math_7b.yaml", "--dry-run", env={"RL_PRM_PYTHON": PY})
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1
    argv = shlex.split(lines[0])
    assert argv[:3] == [PY, "-m", "verl.trainer.main_ppo"]
    overrides = argv[3:]
    assert "algorithm.adv_estimator=rprm_rloo" in overrides
    assert "reward.reward_manager.name=rprm" in overrides
    assert "reward.reward_model.enable_resource_pool=true" in overrides
    assert "trainer.logger=[console,wandb]" in overrides
    cfg = compose(overrides)  # every key valid for verl 0.9.1's ppo_trainer (unknown ones raise)
    validate(cfg)
    assert cfg.reward.reward_model.model_path == "kevinpro/R-PRM-7B-DPO"
    assert cfg.algorithm.rprm.credit.temperature == 0.1 and cfg.actor_rollout_ref.rollout.n == 8


def test_dry_run_overrides_reach_the_command():
    r = _launch("recipes/grpo_vr_only_qwen2.5_math_7b.yaml", "trainer.total_steps=7", "rollout.n=4", "--dry-run",
                env={"RL_PRM_PYTHON": PY})
    assert r.returncode == 0, r.stderr
    argv = shlex.split(r.stdout.strip())
    assert "trainer.total_training_steps=7" in argv and "actor_rollout_ref.rollout.n=4" in argv
    assert "algorithm.adv_estimator=rprm_rloo" in argv and "reward.reward_manager.name=rprm" in argv
    assert "+reward.rprm.prm=null" in argv and "reward.reward_model.enable=true" not in argv  # no judge


def test_local_recipe_dry_run_uses_rl_prm_train_and_python_discovery(tmp_path):
    r = _launch("recipes/tiny_cpu.yaml", "trainer.total_steps=2", "--dry-run", env={"RL_PRM_PYTHON": PY})
    assert r.returncode == 0, r.stderr
    assert shlex.split(r.stdout.strip()) == [PY, "-m", "rl_prm", "train", "recipes/tiny_cpu.yaml", "trainer.total_steps=2"]
    # without RL_PRM_PYTHON: the repo's .venv python when present, else python3 from PATH
    env = {k: v for k, v in os.environ.items() if k != "RL_PRM_PYTHON"}
    r = subprocess.run(["bash", str(LAUNCH), "recipes/tiny_cpu.yaml", "--dry-run"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    want = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else "python3"
    assert shlex.split(r.stdout.strip())[0].endswith(want)
    # a broken RL_PRM_PYTHON is reported, not silently replaced
    r = _launch("recipes/tiny_cpu.yaml", "--dry-run", env={"RL_PRM_PYTHON": str(tmp_path / "nope")})
    assert r.returncode == 2 and "RL_PRM_PYTHON" in r.stderr


def test_bad_invocations_fail_with_a_message(tmp_path):
    r = _launch(env={"RL_PRM_PYTHON": PY})
    assert r.returncode == 2 and "usage" in r.stderr
    r = _launch("recipes/no_such.yaml", "--dry-run", env={"RL_PRM_PYTHON": PY})
    assert r.returncode == 2 and "not found" in r.stderr
    r = _launch("recipes/tiny_cpu.yaml", "trainer.no_such_key=1", "--dry-run", env={"RL_PRM_PYTHON": PY})
    assert r.returncode != 0 and "trainer.no_such_key" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: {name: x}\ntrainer: {backend: slurm}\n")
    r = _launch(str(bad), "--dry-run", env={"RL_PRM_PYTHON": PY})
    assert r.returncode != 0 and "slurm" in (r.stderr + r.stdout)


# ------------------------------------------------------------------------------- ray job submit

RAY = str(Path(PY).with_name("ray"))
# Ray 2.60 turns token auth on for new clusters; the CLI must then send the token: say so explicitly
# for the head and every `ray job` call (the token lives in Ray's default token file).
RAY_ENV = dict(os.environ, RAY_AUTH_MODE="token", RAY_USAGE_STATS_ENABLED="0")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head(tmp_path_factory):
    """A private Ray head with the dashboard (job server) on 127.0.0.1; yields the job API address."""
    port, dash = _free_port(), _free_port()
    tmp = Path("/tmp") / f"rlprm_ray_{os.getpid()}_{port}"  # short: Ray's socket paths are length-limited
    env = RAY_ENV
    log = open(tmp_path_factory.mktemp("ray") / "head.log", "w")
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--include-dashboard=true", "--num-cpus=16",
         "--num-gpus=2", f"--object-store-memory={400 * 1024**2}", f"--temp-dir={tmp}",
         f"--dashboard-agent-listen-port={_free_port()}", f"--ray-client-server-port={_free_port()}"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.time() + 180
        while True:
            if head.poll() is not None:
                raise RuntimeError(f"ray head exited ({head.returncode}); see {log.name}")
            r = subprocess.run([RAY, "job", "list", "--address", address], capture_output=True, text=True, timeout=60,
                               env=RAY_ENV)
            if r.returncode == 0:
                break
            if time.time() > deadline:
                raise TimeoutError(f"ray job server at {address} not up after 180 s; see {log.name}")
            time.sleep(3)
        yield address
    finally:
        try:
            os.killpg(head.pid, signal.SIGTERM)  # `ray start --block` tears its cluster down on SIGTERM
            head.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(head.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()


def _submit(address, args, timeout_s):
    runtime_env = {
        "excludes": [".venv", "runs", ".git", "data", "**/__pycache__", "*.egg-info"],
        "env_vars": {"RL_PRM_PYTHON": PY, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1",
                     "RL_PRM_CACHE": os.environ.get("RL_PRM_CACHE", str(Path.home() / ".cache" / "rl_prm"))},
    }
    agent_deadline = time.time() + 180
    while True:
        sub = subprocess.run(
            [RAY, "job", "submit", "--address", address, "--working-dir", str(REPO), "--no-wait",
             "--runtime-env-json", json.dumps(runtime_env), "--", "bash", "launch/grpo_rprm.sh", *args],
            capture_output=True, text=True, timeout=180, env=RAY_ENV,
        )
        # the job server answers before the head's job agent has registered; Ray says to try again later
        if sub.returncode == 0 or "No available agent" not in sub.stderr or time.time() > agent_deadline:
            break
        time.sleep(5)
    assert sub.returncode == 0, sub.stdout + sub.stderr
    job_id = next(w for ln in (sub.stdout + sub.stderr).splitlines() for w in ln.replace("'", " ").split() if w.startswith("raysubmit_"))
    deadline = time.time() + timeout_s
    status = None
    while time.time() < deadline:
        st = subprocess.run([RAY, "job", "status", "--address", address, job_id], capture_output=True, text=True,
                            timeout=60, env=RAY_ENV)
        text = st.stdout + st.stderr  # the CLI reports the status through its logger (stderr)
        # ray's CLI says "Job 'x' succeeded" / "Job 'x' failed" / "Job 'x' was stopped", else "Status for job 'x': S"
        m = re.search(r"Job '[^']+' (succeeded|failed|was stopped)", text)
        status = {"succeeded": "SUCCEEDED", "failed": "FAILED", "was stopped": "STOPPED"}[m.group(1)] if m else None
        if status:
            break
        time.sleep(5)
    lr = subprocess.run([RAY, "job", "logs", "--address", address, job_id], capture_output=True, text=True,
                        timeout=60, env=RAY_ENV)
    logs = lr.stdout + lr.stderr
    if status is None:
        subprocess.run([RAY, "job", "stop", "--address", address, job_id], capture_output=True, timeout=60, env=RAY_ENV)
        pytest.fail(f"job {job_id} not finished after {timeout_s} s; logs tail:\n{logs[-3000:]}")
    return status, logs


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_ray_job_submit_runs_verls_trainer_on_cpu_and_fails_cleanly_on_a_bad_key(ray_head, tmp_path, tiny_policy_dir,
                                                                                  tiny_judge_dir):
    """`ray job submit ... -- bash launch/grpo_rprm.sh recipes/tiny_cpu_verl.yaml`: verl's v1 trainer with our
    platform, the rprm reward manager + a judge replica on its own pool, rprm_rloo, weight syncs; 2 steps."""
    from test_verl_cpu import verl_steps

    out = tmp_path / "runs"  # absolute: the job runs in its own copy of the working dir
    t0 = time.time()
    status, logs = _submit(ray_head, ["recipes/tiny_cpu_verl.yaml", "model.policy=tiny", "model.judge=tiny",
                                      "reward.prm.gate=none", "trainer.total_steps=2", "trainer.save_every=2", "data.train_limit=64",
                                      "data.test_limit=8", "run.name=ci", f"run.output_dir={out}"], timeout_s=1000)
    run = out / "ci"
    log = (run / "verl.log").read_text() if (run / "verl.log").exists() else ""
    assert status == "SUCCEEDED", logs[-4000:] + log[-4000:]
    steps = verl_steps(log)
    assert sorted(steps) == [1, 2], sorted(steps)
    for n, m in steps.items():
        assert m["actor/grad_norm"] > 0, (n, m.get("actor/grad_norm"))
        assert m["training/rollout_probs_diff_valid"] == 1.0
        assert m["training/rollout_probs_diff_max"] < 1e-3  # the sync carried the weights (rollout starts dummy)
        for k in ("rprm/prm_mean", "rprm/num_steps", "rprm/acc", "rprm/prm_fallbacks"):
            assert k in m, k
        assert m["rprm/prm_fallbacks"] < m["rprm/num_steps"]  # the judge replica answered
        # the judge's work, as the local backend logs it (rl_prm.metrics.judge_cost_metrics)
        assert m["prm/judge_prompts"] >= m["prm/judge_prompts_distinct"] > 0 and m["prm/critique_tokens"] > 0
        assert 0 <= m["prm/dedup_frac"] < 1 and m["prm/gated_responses"] == 0
        # the local loop's per-response metrics (rl_prm.metrics.response_metrics): the hacking monitors, and the
        # world's truth for world rows (process rates, the judge against the checker); no warning in 2 steps
        for k in ("hack/steps_per_response", "hack/prm_vr_agreement", "hack/repetition", "prm/response_min_score_mean",
                  "process/trace_rate", "process/answer_rate", "judge/right_steps", "judge/first_errors"):
            assert k in m, k
        assert m["hack/warnings"] == 0
    assert len({round(steps[1]["actor/grad_norm"], 8), round(steps[2]["actor/grad_norm"], 8)}) == 2
    # the job's console: verl's step lines only (its full output is in verl.log)
    assert "verl step 1: " in logs and "grad_norm" in logs and len(logs.splitlines()) < 60, logs[-3000:]
    assert (run / "checkpoints" / "global_step_2").is_dir()
    assert (run / "checkpoints" / "latest_checkpointed_iteration.txt").read_text().strip() == "2"
    assert list((run / "wandb").glob("offline-run-*")), "no offline W&B run"
    assert not list(Path("/dev/shm").glob("verl_weights_*"))
    print(f"verl CPU job: {time.time() - t0:.0f}s, grad_norm {steps[1]['actor/grad_norm']:.4f} / "
          f"{steps[2]['actor/grad_norm']:.4f}, step time {steps[2]['timing_s/step']:.1f}s")

    status, logs = _submit(ray_head, ["recipes/tiny_cpu_verl.yaml", "trainer.no_such_key=1"], timeout_s=300)
    assert status == "FAILED"
    assert "trainer.no_such_key" in logs
