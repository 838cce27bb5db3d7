"""`rl-prm bench faults`: inject each fault into a short tiny-recipe run and check that the run survives.

    rl-prm bench faults [--faults rollout_kill,judge_hang,...] [--steps 4] [--at 2] [--out DIR]

Each fault gets its own run of `rl-prm train recipes/tiny_cpu.yaml model.policy=tiny model.judge=tiny`
(2 prompts x 2 samples, 48 tokens, a checkpoint every step; fresh run dir, private Ray temp dir).
The fault is injected while step `--at` runs (once step at-1 has logged its metrics):

    rollout_kill      kill -9 of the rollout engine's Ray actor process
    rollout_core_kill kill -9 of the rollout engine's vLLM engine-core process (the actor lives on); run with
                      VLLM_ENABLE_V1_MULTIPROCESSING=1: on CPU the engine core runs in the actor by default
    judge_kill        kill -9 of the R-PRM worker's Ray actor process
    judge_hang        SIGSTOP of the R-PRM worker (reward.prm.timeout_s=60: the call times out)
    driver_kill       kill -9 of the driver (and its Ray cluster), then the same command again (resume)
    truncated_ckpt    a run that stopped after step `at`; its latest checkpoint's weights truncated;
                      then the full run (its resume falls back to the checkpoint of step at-1)
    unwritable_ckpt   the checkpoint dir made unwritable until step `at`'s save has failed
    full_disk         the driver's file-size limit (RLIMIT_FSIZE) below the checkpoint's size until
                      step `at`'s save has failed (writes fail as on a full disk)

One row per fault: injected at step, survived (the command exited 0, every step 1..N is in
metrics.jsonl, and the run shows it met the fault: a restart, a timeout, a checkpoint warning or a
resume), steps lost (steps missing from metrics.jsonl), steps redone (steps trained twice after a
resume), metrics lines duplicated, leftover (processes of the run still alive 30 s after it ended,
killed by the bench; the driver_kill note counts those of the killed driver). Then
`faults: N injected, N survived, N steps lost`.
Console output of every run: OUT/<fault>/console.log.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import psutil

from rl_prm import argtypes
from rl_prm.registry import Registry

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "tiny_cpu.yaml"
BASE = ["model.policy=tiny", "model.judge=tiny", "rollout.prompts_per_step=2", "rollout.n=2", "rollout.max_tokens=48",
        "reward.prm.max_critique_tokens=48", "reward.prm.gate=none", "data.test_limit=4", "trainer.val_before_train=false",
        "trainer.eval_every=0", "trainer.save_every=1", "trainer.keep_checkpoints=3", "trainer.logger=[console]"]


@dataclass
class Run:
    """One `rl-prm train` process of a fault (its run dir, console log, Ray temp dir)."""

    name: str
    out: Path
    steps: int
    overrides: list[str] = field(default_factory=list)
    proc: Optional[subprocess.Popen] = None
    ray_tmp: str = ""
    leftover: int = 0  # processes of the run still alive 30 s after it ended (killed by the bench)
    env: dict[str, str] = field(default_factory=dict)  # set for the run's processes on top of ours

    @property
    def run_dir(self) -> Path:
        return self.out / "runs" / self.name

    def start(self, steps: Optional[int] = None) -> None:
        self.ray_tmp = tempfile.mkdtemp(prefix="rlprm_faults_")
        cmd = [sys.executable, "-m", "rl_prm", "train", str(RECIPE), *BASE, *self.overrides,
               f"trainer.total_steps={steps or self.steps}", f"run.output_dir={self.out / 'runs'}", f"run.name={self.name}"]
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RL_PRM_VERBOSE")}
        env.update(RAY_TMPDIR=self.ray_tmp, WANDB_MODE="offline", **self.env)
        log = open(self.out / "console.log", "a")
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(RECIPE.parents[1]))

    def wait(self, timeout: float = 1800) -> int:
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.leftover += self.reap()
        return rc

    def processes(self) -> list:
        """The driver, its descendants and its Ray cluster (found by the private Ray temp dir)."""
        found: dict[int, psutil.Process] = {}
        roots = []
        if self.proc is not None and self.proc.poll() is None:
            roots.append(psutil.Process(self.proc.pid))
        for p in psutil.process_iter(["cmdline"]):  # Ray daemons, and processes orphaned from the tree
            try:
                if self.ray_tmp and (self.ray_tmp in " ".join(p.info["cmdline"] or [])
                                     or p.environ().get("RAY_TMPDIR") == self.ray_tmp):
                    roots.append(p)
            except psutil.Error:
                continue
        for r in roots:
            try:
                for p in [r, *r.children(recursive=True)]:
                    found[p.pid] = p
            except psutil.Error:
                continue
        return list(found.values())

    def find(self, title: str) -> list:
        """Processes of this run whose title (cmdline) starts with `title`, e.g. 'ray::RolloutEngine'."""
        out = []
        for p in self.processes():
            try:
                if " ".join(p.cmdline()).startswith(title):
                    out.append(p)
            except Exception:  # noqa: BLE001 - gone meanwhile
                continue
        return out

    def reap(self, grace_s: float = 30.0) -> int:
        """Wait for this run's processes to exit; kill -9 what is left. Returns how many were left."""
        def alive(p) -> bool:
            try:
                return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
            except psutil.Error:
                return False

        deadline = time.time() + grace_s
        left = self.processes()
        while left and time.time() < deadline:
            time.sleep(1)
            left = [p for p in left if alive(p)]
        for p in left:
            try:
                p.kill()
            except psutil.Error:
                pass
        return len(left)

    def metrics_steps(self) -> list[int]:
        path = self.run_dir / "metrics.jsonl"
        steps = []
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    steps.append(int(json.loads(line)["step"]))
                except (ValueError, KeyError, TypeError):
                    continue
        return [s for s in steps if s > 0]

    def last_metrics(self) -> dict:
        path = self.run_dir / "metrics.jsonl"
        rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []
        return rows[-1] if rows else {}

    def warnings(self) -> list[str]:
        path = self.run_dir / "warnings.jsonl"
        return [json.loads(x)["message"] for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []

    def wait_for(self, cond: Callable[[], bool], what: str, timeout: float = 1200) -> None:
        deadline = time.time() + timeout
        while not cond():
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the run ended (exit {self.proc.returncode}) before {what}")
            if time.time() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            time.sleep(0.5)

    def wait_step_logged(self, step: int) -> None:
        self.wait_for(lambda: step in self.metrics_steps(), f"step {step}'s metrics")


@dataclass
class Fault:
    name: str
    run: Callable[[Run, int], str]  # injects the fault into a started run; returns what shows it was met
    overrides: tuple[str, ...] = ()


FAULTS: Registry = Registry("fault")
ORDER: list[str] = []  # registration order (the module doc's)


def _register(name: str, *overrides: str):
    def deco(fn):
        FAULTS.register(name)(Fault(name, fn, overrides))
        ORDER.append(name)
        return fn

    return deco


def _kill(procs: list, what: str, sig: int = signal.SIGKILL) -> None:
    if not procs:
        raise RuntimeError(f"no {what} process found")
    for p in procs:
        os.kill(p.pid, sig)


def _engine_core(run: Run, actor_title: str) -> list:
    cores = []
    for actor in run.find(actor_title):
        cores += [c for c in actor.children(recursive=True) if "EngineCore" in " ".join(c.cmdline())]
    return cores


def _kill_mid_run(run: Run, at: int, targets: Callable[[], list], what: str, metric: str, label: str) -> str:
    """kill -9 of `targets()` while step `at` runs; the note names the restarts `metric` counted."""
    run.start()
    run.wait_step_logged(at - 1)
    _kill(targets(), what)
    run.wait()
    n = run.last_metrics().get(metric, 0)
    return f"{label} restarts {n:g}" if n else ""


@_register("rollout_kill")
def _rollout_kill(run: Run, at: int) -> str:
    return _kill_mid_run(run, at, lambda: run.find("ray::RolloutEngine"), "rollout engine actor",
                         "rollout/engine_restarts", "rollout")


@_register("rollout_core_kill")
def _rollout_core_kill(run: Run, at: int) -> str:
    run.env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1"  # an engine-core process (on CPU it runs in the actor by default)
    return _kill_mid_run(run, at, lambda: _engine_core(run, "ray::RolloutEngine"), "rollout engine core",
                         "rollout/engine_restarts", "rollout")


@_register("judge_kill")
def _judge_kill(run: Run, at: int) -> str:
    return _kill_mid_run(run, at, lambda: run.find("ray::RPRMWorker"), "R-PRM worker actor",
                         "prm/worker_restarts", "judge")


@_register("judge_hang", "reward.prm.timeout_s=60")
def _judge_hang(run: Run, at: int) -> str:
    run.start()
    run.wait_step_logged(at - 1)
    _kill(run.find("ray::RPRMWorker"), "R-PRM worker actor", signal.SIGSTOP)
    run.wait()
    m = run.last_metrics()
    t, r = m.get("prm/timeouts", 0), m.get("prm/worker_restarts", 0)
    return f"judge timeouts {t:g}, restarts {r:g}" if t and r else ""


@_register("driver_kill")
def _driver_kill(run: Run, at: int) -> str:
    run.start()
    run.wait_step_logged(at - 1)
    run.proc.send_signal(signal.SIGKILL)
    run.proc.wait()
    left = run.reap()  # a killed driver's Ray cluster and engines: count what does not go by itself
    before = run.metrics_steps()
    run.start()  # the same command: resumes from the newest checkpoint
    if run.wait() != 0:
        return ""
    return f"resumed after step {max(before) if before else 0}; {left} processes of the killed driver left"


@_register("truncated_ckpt")
def _truncated_ckpt(run: Run, at: int) -> str:
    run.start(steps=at)  # a run that ended after step `at` (a checkpoint per step)
    if run.wait() != 0:
        raise RuntimeError("the first, short run failed")
    latest = sorted((run.run_dir / "checkpoints").glob("step_*"))[-1]
    weights = latest / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    run.start()  # the full run resumes: the truncated checkpoint is set aside
    if run.wait() != 0:
        return ""
    console = (run.out / "console.log").read_text()
    return f"fell back from {latest.name}" if f"checkpoint {latest} is incomplete" in console else ""


def _failed_save(run: Run, at: int) -> bool:
    return any(f"checkpoint step {at} was not written" in w for w in run.warnings())


@_register("unwritable_ckpt")
def _unwritable_ckpt(run: Run, at: int) -> str:
    run.start()
    root = run.run_dir / "checkpoints"
    run.wait_for(lambda: (root / f"step_{at - 1:06d}").is_dir(), f"checkpoint {at - 1}")
    if os.geteuid() == 0:  # root writes through permission bits: make the dir immutable instead
        subprocess.run(["chattr", "+i", str(root)], check=True, capture_output=True)
        undo = ["chattr", "-i", str(root)]
    else:
        os.chmod(root, 0o555)
        undo = ["chmod", "755", str(root)]
    try:
        run.wait_for(lambda: _failed_save(run, at), f"step {at}'s failed save")
    finally:
        subprocess.run(undo, check=True, capture_output=True)
    run.wait()
    return "save failed loudly, previous kept" if _failed_save(run, at) else ""


@_register("full_disk")
def _full_disk(run: Run, at: int) -> str:
    run.start()
    root = run.run_dir / "checkpoints"
    run.wait_for(lambda: (root / f"step_{at - 1:06d}").is_dir(), f"checkpoint {at - 1}")
    biggest_log = max((p.stat().st_size for p in run.run_dir.glob("*.jsonl")), default=0)
    limit = biggest_log + (1 << 20)  # room for the logs to grow; the weights and optimizer state do not fit
    resource.prlimit(run.proc.pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    try:
        run.wait_for(lambda: _failed_save(run, at), f"step {at}'s failed save")
    finally:
        if run.proc.poll() is None:
            resource.prlimit(run.proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    run.wait()
    return "save failed loudly, previous kept" if _failed_save(run, at) else ""


def _row(name: str, fault: Fault, out: Path, steps: int, at: int) -> dict:
    run_out = out / name
    if run_out.exists():
        shutil.rmtree(run_out)
    run_out.mkdir(parents=True)
    run = Run(name, run_out, steps, list(fault.overrides))
    t0 = time.time()
    try:
        evidence = fault.run(run, at)
        error = ""
    except Exception as e:  # noqa: BLE001 - the bench reports it as not survived
        evidence, error = "", f"{type(e).__name__}: {e}"
        if run.proc is not None and run.proc.poll() is None:
            run.proc.kill()
        run.reap()
    rc = run.proc.returncode if run.proc is not None else None
    logged = run.metrics_steps()
    lost = sorted(set(range(1, steps + 1)) - set(logged))
    dup = sum(logged.count(s) - 1 for s in set(logged))
    redone = _redone(run_out / "console.log")
    survived = rc == 0 and not lost and not dup and bool(evidence)
    note = evidence or error or f"fault not observed (exit {rc})"
    return {"fault": name, "at_step": at, "survived": survived, "steps_lost": len(lost), "steps_redone": redone,
            "duplicated": dup, "leftover": run.leftover, "note": note, "seconds": round(time.time() - t0)}


def _redone(console: Path) -> int:
    """Steps trained twice: (last step logged before a resume) - (resume step) + 1, over the resumes."""
    text = console.read_text() if console.is_file() else ""
    n, last = 0, 0
    for m in re.finditer(r"step (\d+) \||resuming at step (\d+)", text):
        if m.group(1):
            last = max(last, int(m.group(1)))
        else:
            n += max(0, last - int(m.group(2)) + 1)
    return n


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="rl-prm bench faults", description=__doc__.split("\n\n")[0])
    p.add_argument("--faults", default=",".join(ORDER), help="comma list of: " + ", ".join(ORDER))
    p.add_argument("--steps", type=argtypes.positive_int, default=4, help="training steps per run (default 4)")
    p.add_argument("--at", type=argtypes.positive_int, default=2,
                   help="step during which the fault is injected (default 2)")
    p.add_argument("--out", default="runs/bench_faults", help="where the runs and their console logs go")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.faults.split(",") if n.strip()]
    try:
        faults = [FAULTS.get(n) for n in names]
    except ValueError as e:
        print(f"rl-prm bench faults: {e}", file=sys.stderr)
        return 2
    if not 2 <= args.at < args.steps:
        print(f"rl-prm bench faults: --at must be in [2, --steps - 1], got {args.at}", file=sys.stderr)
        return 2
    out = Path(args.out)
    print(f"{'fault':<18} {'at step':>7} {'survived':>8} {'steps lost':>10} {'redone':>6} {'dup lines':>9} "
          f"{'leftover':>8} {'seconds':>7}  note", flush=True)
    rows = []
    for fault in faults:
        r = _row(fault.name, fault, out, args.steps, args.at)
        rows.append(r)
        print(f"{r['fault']:<18} {r['at_step']:>7} {'yes' if r['survived'] else 'no':>8} {r['steps_lost']:>10} "
              f"{r['steps_redone']:>6} {r['duplicated']:>9} {r['leftover']:>8} {r['seconds']:>7}  {r['note']}", flush=True)
    (out / "faults.json").write_text(json.dumps(rows, indent=1))
    n_ok, lost = sum(r["survived"] for r in rows), sum(r["steps_lost"] for r in rows)
    print(f"faults: {len(rows)} injected, {n_ok} survived, {lost} steps lost")
    return 0 if n_ok == len(rows) else 1
