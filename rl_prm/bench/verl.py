"""`rl-prm bench verl`: verl's real trainer on CPU, measured against the local backend and under faults.

Three parts, each through `bash launch/grpo_rprm.sh` as a user runs it (fresh run dirs, W&B offline):

  steps   the same recipe settings on both backends (recipes/tiny_cpu.yaml on the local backend,
          recipes/tiny_cpu_verl.yaml on verl: they differ only in backend and device), mean seconds
          per stage after the first step, side by side. verl scores each response inside `gen`
          (its reward loop runs while rollouts finish), so local generate+score is compared with it.
  resume  kill -9 of the launcher right after verl's first checkpoint, then the same command again:
          the step it resumes from, steps trained twice, the W&B run id of both launches, what the
          killed run left running.
  ranks   two actor ranks (trainer.gpus_per_node=2: FSDP2 over gloo on two processes): exit code,
          seconds per step, actor/grad_norm per step.

    rl-prm bench verl [--steps 4] [--parts steps,resume,ranks] [--out DIR] [--json F] [key=value ...]
    rl-prm bench verl model.policy=tiny model.judge=tiny      # the random plumbing models (the world's are shipped)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from rl_prm import argtypes
from rl_prm.backends.verl_cpu import wandb_run_id
from rl_prm.backends.verl_run import marked_pids, parse_step_line
from rl_prm.tracking import Tracker
from rl_prm.world.compare import read_metrics

LOCAL, VERL = "recipes/tiny_cpu.yaml", "recipes/tiny_cpu_verl.yaml"
# row label -> (local timing/* keys summed, verl timing_s/* keys summed)
STAGES = {
    "generate+score": (["generate", "score"], ["gen"]),
    "credit": (["credit"], ["adv"]),
    "update": (["update"], ["old_log_prob", "ref", "update_actor"]),
    "sync": (["sync"], ["update_weights"]),
    "step": (["step"], ["step"]),
}
QUIET = ["trainer.eval_every=0", "trainer.val_before_train=false"]


def launch(recipe: str, out: Path, name: str, args: list[str], wait: bool = True) -> subprocess.Popen | dict:
    env = dict(os.environ, WANDB_MODE="offline", HF_HUB_OFFLINE="1")
    env.pop("RAY_ADDRESS", None)
    cmd = ["bash", "launch/grpo_rprm.sh", recipe, f"run.output_dir={out}", f"run.name={name}", *args]
    console = out / f"{name}.console.log"
    t0 = time.time()
    with open(console, "a") as log:  # the child keeps its own copy of the file
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    if not wait:
        return proc
    rc = proc.wait()
    return {"rc": rc, "wall_s": time.time() - t0, "cmd": " ".join(cmd), "console": str(console)}


def verl_steps(run_dir: Path, launch_no: int = -1) -> dict[int, dict[str, float]]:
    """{step: metrics} of one launch in <run dir>/verl.log (launches are separated by '===== ' headers)."""
    text = (run_dir / "verl.log").read_text(errors="replace").split("\n===== ")[1:][launch_no]
    return dict(p for p in map(parse_step_line, text.splitlines()) if p)


def local_steps(run_dir: Path) -> dict[int, dict[str, float]]:
    return {s: m for s, m in read_metrics(run_dir).items() if "timing/step" in m}


def _mean_after_first(steps: dict[int, dict[str, float]], keys: list[str], prefix: str) -> float:
    vals = [sum(m.get(f"{prefix}{k}", 0.0) for k in keys) for _, m in sorted(steps.items())]
    return statistics.mean(vals[1:] or vals) if vals else float("nan")


def part_steps(tmp: Path, n: int, ov: list[str]) -> dict:
    args = [f"trainer.total_steps={n}", "trainer.save_every=0", *QUIET, *ov]
    res = {"local": launch(LOCAL, tmp, "local", args), "verl": launch(VERL, tmp, "verl", args)}
    for k, r in res.items():
        if r["rc"] != 0:
            raise SystemExit(f"bench verl: {r['cmd']} exited {r['rc']}:\n"
                             + Path(r["console"]).read_text(errors="replace")[-3000:])
    loc, ver = local_steps(tmp / "local"), verl_steps(tmp / "verl")
    table = {row: (_mean_after_first(loc, lk, "timing/"), _mean_after_first(ver, vk, "timing_s/"))
             for row, (lk, vk) in STAGES.items()}
    print(f"\n[steps] {n} steps each, mean s/step after the first (overrides: {' '.join(ov) or 'none'})")
    print(f"{'stage':<16}{'local':>9}{'verl':>9}{'verl/local':>12}")
    for row, (a, b) in table.items():
        print(f"{row:<16}{a:>9.2f}{b:>9.2f}{b / a if a else float('nan'):>12.2f}")
    print(f"{'wall (s)':<16}{res['local']['wall_s']:>9.0f}{res['verl']['wall_s']:>9.0f}")
    ratio = table["step"][1] / table["step"][0]
    print(f"RATIO verl/local step time {ratio:.2f}")
    return {"stages": table, "wall_s": {k: r["wall_s"] for k, r in res.items()}, "step_ratio": ratio}


def _tracker(run_dir: Path) -> int:
    try:
        return int((run_dir / "checkpoints" / "latest_checkpointed_iteration.txt").read_text().strip())
    except (OSError, ValueError):
        return 0


def _wandb_ids(run_dir: Path) -> list[str]:
    return sorted({rid for _, rid in Tracker.offline_runs(run_dir)})


def part_resume(tmp: Path, n: int, ov: list[str]) -> dict:
    args = [f"trainer.total_steps={n}", "trainer.save_every=1", *QUIET, *ov]
    run_dir = (tmp / "resume").resolve()
    proc = launch(VERL, tmp, "resume", args, wait=False)
    deadline = time.time() + 900
    while _tracker(run_dir) < 1 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    if _tracker(run_dir) < 1:
        proc.kill()
        raise SystemExit(f"bench verl: no checkpoint within 900 s (rc {proc.poll()}); see {run_dir}/verl.log")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    ckpt = _tracker(run_dir)
    left, t_kill = {}, time.time()
    for t in (0, 5):  # then relaunch at once, as a user would
        time.sleep(max(0.0, t_kill + t - time.time()))
        left[t] = len(marked_pids(str(run_dir)))
    first = verl_steps(run_dir, 0)
    second = launch(VERL, tmp, "resume", args)
    again = verl_steps(run_dir, -1)
    log2 = (run_dir / "verl.log").read_text(errors="replace").split("\n===== ")[-1]
    console = Path(second["console"]).read_text(errors="replace")
    stopped = next((ln for ln in console.splitlines() if "left running by an earlier launch" in ln), "")
    out = {"rc": second["rc"], "checkpoint_at_kill": ckpt, "steps_before_kill": sorted(first),
           "steps_after_resume": sorted(again), "redone": sorted(set(again) & set(range(1, ckpt + 1))),
           "found_checkpoint": "Found checkpoint" in log2 or "Load from checkpoint" in log2,
           "marked_left_after_kill": left, "stopped_line": stopped, "wandb_ids": _wandb_ids(run_dir),
           "wandb_run_id": wandb_run_id(run_dir) or ""}
    print(f"\n[resume] kill -9 of the launcher at checkpoint {ckpt} (steps logged before: {out['steps_before_kill']})")
    print(f"  verl processes of the run left after the kill at +0/+5 s: {list(left.values())}")
    print(f"  relaunch: rc {out['rc']}, resumed from a checkpoint: {out['found_checkpoint']}, steps trained "
          f"{out['steps_after_resume']}, checkpointed steps trained again: {len(out['redone'])}")
    print(f"  W&B run ids in the run dir: {out['wandb_ids']} (wandb_run_id {out['wandb_run_id']})"
          + (f"; {stopped.strip()}" if stopped else ""))
    return out


def part_ranks(tmp: Path, n: int, ov: list[str]) -> dict:
    # each rank takes half of a step's responses: micro-batches of 16 (same gradient, accumulated)
    args = [f"trainer.total_steps={n}", "trainer.save_every=0", "trainer.gpus_per_node=2",
            "optim.micro_batch_size=16", *QUIET, *ov]
    r = launch(VERL, tmp, "ranks", args)
    if r["rc"] != 0:
        print(Path(r["console"]).read_text(errors="replace")[-3000:])
    steps = verl_steps(tmp / "ranks") if (tmp / "ranks" / "verl.log").exists() else {}
    out = {"rc": r["rc"], "wall_s": r["wall_s"], "steps": sorted(steps),
           "step_s": [steps[s].get("timing_s/step") for s in sorted(steps)],
           "grad_norm": [steps[s].get("actor/grad_norm") for s in sorted(steps)]}
    print(f"\n[ranks] trainer.gpus_per_node=2: rc {r['rc']}, wall {r['wall_s']:.0f} s, steps {out['steps']}, "
          f"s/step {[round(x, 1) for x in out['step_s'] if x is not None]}, "
          f"grad_norm {[round(x, 4) for x in out['grad_norm'] if x is not None]}")
    return out


PARTS = {"steps": part_steps, "resume": part_resume, "ranks": part_ranks}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="rl-prm bench verl", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=argtypes.positive_int, default=4,
                    help="training steps per run (resume: kill after the first)")
    ap.add_argument("--parts", default="steps,resume,ranks", help=f"comma-separated, of: {', '.join(PARTS)}")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--out", help="keep the run dirs here (default: a temp dir, removed)")
    ap.add_argument("overrides", nargs="*", help="recipe overrides key=value for every run")
    args = ap.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    bad = [p for p in parts if p not in PARTS]
    if bad:
        raise SystemExit(f"bench verl: unknown part(s) {bad}; known: {', '.join(PARTS)}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="rlprm_bench_verl_") as tmp:
        out = Path(args.out or tmp).resolve()
        out.mkdir(parents=True, exist_ok=True)
        for p in parts:
            results[p] = PARTS[p](out, max(args.steps, 2), list(args.overrides))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0
