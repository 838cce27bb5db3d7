"""A CPU verl run's processes: a `kill -9` of the launcher takes verl's trainer process with it, and
the next launch of the same run dir stops what a killed run left behind (Ray workers that outlived
it), before starting; a run dir whose launcher still runs is refused. The launcher is the real one
(rl_prm.backends.verl_run.run_cpu on the tiny CPU verl recipe); verl's main_ppo is replaced by a
stand-in that starts a detached worker (as Ray's raylet does) and sleeps."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from rl_prm.backends.verl_run import marked_pids

# run_cpu(cfg, cmd) with cmd = a stand-in trainer: it writes its pid and its worker's pid, then sleeps
LAUNCHER = textwrap.dedent("""
    import sys
    from rl_prm.backends.verl_run import run_cpu
    from rl_prm.config import load_recipe
    out, pids = sys.argv[1], sys.argv[2]
    cfg = load_recipe("recipes/tiny_cpu_verl.yaml", [f"run.output_dir={out}", "run.name=r", "trainer.logger=[console]"])
    trainer = ("import os, subprocess, sys, time; "
               "w = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True); "
               f"open({pids!r}, 'w').write(f'{{os.getpid()}} {{w.pid}}'); print('stand-in trainer up', flush=True); "
               "time.sleep(600)")
    raise SystemExit(run_cpu(cfg, [sys.executable, "-c", trainer]))
""")


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _launch(tmp_path, tag):
    pids = tmp_path / f"pids_{tag}"
    proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(tmp_path / "out"), str(pids)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return proc, pids


def _wait_for(path: Path, timeout=60) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text()
        time.sleep(0.2)
    raise AssertionError(f"{path} never written")


def test_kill_9_of_the_launcher_stops_verl_and_the_next_launch_stops_leftovers(tmp_path):
    run_dir = str((tmp_path / "out" / "r").resolve())
    first, pids = _launch(tmp_path, "a")
    trainer, worker = map(int, _wait_for(pids).split())
    assert set(marked_pids(run_dir)) >= {trainer, worker}  # both carry the run dir's marker

    # a second launch while the first runs is refused with one line, and kills nothing
    second, _ = _launch(tmp_path, "b")
    out = second.communicate(timeout=120)[0]
    assert second.returncode == 2 and f"run dir {run_dir} is in use" in out, out
    assert _alive(trainer) and _alive(worker)

    log = tmp_path / "out" / "r" / "verl.log"
    deadline = time.time() + 20
    while "stand-in trainer up" not in log.read_text() and time.time() < deadline:
        time.sleep(0.2)
    assert "stand-in trainer up" in log.read_text(), "verl.log lags the trainer's output (lost in a kill -9)"
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    deadline = time.time() + 10
    while _alive(trainer) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(trainer), "verl's trainer process outlived the killed launcher"
    assert _alive(worker)  # a detached worker survives its trainer (Ray's fate sharing is slower)

    third, pids_c = _launch(tmp_path, "c")
    trainer_c, worker_c = map(int, _wait_for(pids_c).split())
    assert not _alive(worker), "the next launch left the killed run's worker running"
    third.send_signal(signal.SIGTERM)  # stops like Ctrl-C: its session's processes go with it
    out = third.communicate(timeout=60)[0]
    assert "stopped 1 process(es) left running by an earlier launch" in out, out
    assert not _alive(trainer_c)
    if _alive(worker_c):  # own session (start_new_session): left for the next launch; clean up here
        os.kill(worker_c, signal.SIGKILL)


def test_verl_step_line_parses_to_metrics_and_one_console_line():
    from rl_prm.backends.verl_run import parse_step_line, step_summary

    line = ("\x1b[36m(TaskRunnerV1 pid=12164)\x1b[0m step:2 - actor/pg_loss:-0.0053 - actor/grad_norm:np.float64(0.345) - "
            "rprm/prm_mean:0.4145 - rprm/num_steps:1.0 - timing_s/step:16.09 - training/rollout_probs_diff_max:5.1e-09 - "
            "note:n/a\n")
    step, m = parse_step_line(line)
    assert step == 2
    assert m == {"actor/pg_loss": -0.0053, "actor/grad_norm": 0.345, "rprm/prm_mean": 0.4145, "rprm/num_steps": 1.0,
                 "timing_s/step": 16.09, "training/rollout_probs_diff_max": 5.1e-09}  # 'note:n/a' is not a number
    assert step_summary(line) == ("verl step 2: 16.1s, grad_norm 0.3450, prm_mean 0.414, steps/response 1.00, "
                                  "rollout-vs-actor |dp| max 5.10e-09\n")
    assert parse_step_line("Training Progress: 50%") is None and step_summary("x") == ""
