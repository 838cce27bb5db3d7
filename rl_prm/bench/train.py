"""`rl-prm bench train`: time per stage and peak memory of the tiny recipe, R-PRM vs verifiable-only.

Runs `rl-prm train RECIPE` for the R-PRM recipe and the verifiable-reward-only recipe one after the
other (same budget, fresh run dirs), samples the resident memory of the whole process tree (the
driver, Ray's raylet/GCS and every Ray worker, vLLM engine processes included) every 0.25 s, then
prints mean seconds per stage from each run's metrics.jsonl and the ratios side by side.

    rl-prm bench train [--steps 6] [--recipe recipes/tiny_cpu.yaml] [--baseline recipes/tiny_cpu_vr_only.yaml]
                       [key=value ...]   # recipe overrides for both runs, e.g. model.policy=tiny model.judge=tiny

Goals printed with the numbers: R-PRM step <= 2x the VR-only step; peak RSS < 8 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

STAGES = ["generate", "score", "credit", "update", "sync", "step"]


def _tree_rss(root: int, own_ray_tmp: str) -> int:
    import psutil

    seen, total = set(), 0
    procs = []
    try:
        procs = [psutil.Process(root)] + psutil.Process(root).children(recursive=True)
    except psutil.NoSuchProcess:
        pass
    # Ray daemons (raylet, gcs, workers) are re-parented away from the driver: find them by temp dir.
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if own_ray_tmp in " ".join(p.info["cmdline"] or []):
                procs.append(p)
        except psutil.Error:
            continue
    for p in procs:
        if p.pid in seen:
            continue
        seen.add(p.pid)
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_one(recipe: str, steps: int, out_dir: Path, overrides: tuple[str, ...] = ()) -> dict:
    ray_tmp = tempfile.mkdtemp(prefix="rlprm_bench_ray_")
    env = dict(os.environ, WANDB_MODE="offline", RAY_TMPDIR=ray_tmp)
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, "-m", "rl_prm", "train", recipe, f"trainer.total_steps={steps}",
           f"run.output_dir={out_dir}", "trainer.eval_every=0", "trainer.save_every=0",
           "trainer.val_before_train=false", *overrides]
    peak, stop = [0], threading.Event()
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _tree_rss(proc.pid, ray_tmp))
            time.sleep(0.25)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    log = proc.communicate()[0]
    stop.set()
    th.join()
    wall = time.time() - t0
    if proc.returncode != 0:
        raise SystemExit(f"bench train: `{' '.join(cmd)}` failed ({proc.returncode}):\n{log[-3000:]}")
    metrics = [json.loads(line) for p in out_dir.glob("*/metrics.jsonl") for line in p.read_text().splitlines() if line.strip()]
    per_stage = {}
    for s in STAGES:
        vals = [m[f"timing/{s}"] for m in metrics if f"timing/{s}" in m]
        per_stage[s] = statistics.mean(vals[1:] or vals) if vals else float("nan")  # first step warms up
    startup = next((m["timing/startup_total"] for m in metrics if "timing/startup_total" in m), float("nan"))
    return {"recipe": recipe, "wall_s": wall, "peak_rss_gib": peak[0] / 2**30, "stage_s": per_stage, "startup_s": startup}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="rl-prm bench train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="recipes/tiny_cpu.yaml")
    ap.add_argument("--baseline", default="recipes/tiny_cpu_vr_only.yaml")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("overrides", nargs="*", help="recipe overrides key=value, applied to both recipes")
    args = ap.parse_args(argv)
    for r in (args.recipe, args.baseline):
        if not Path(r).is_file():
            raise SystemExit(f"bench train: recipe not found: {r}")
    with tempfile.TemporaryDirectory(prefix="rlprm_bench_train_") as tmp:
        ours = run_one(args.recipe, args.steps, Path(tmp) / "prm", tuple(args.overrides))
        base = run_one(args.baseline, args.steps, Path(tmp) / "vr", tuple(args.overrides))
    print(f"{'stage (s/step)':<16}{'R-PRM':>10}{'VR-only':>10}{'ratio':>8}")
    for s in STAGES:
        a, b = ours["stage_s"][s], base["stage_s"][s]
        ratio = a / b if b and b == b and b > 0 else float("nan")
        print(f"{s:<16}{a:>10.3f}{b:>10.3f}{ratio:>8.2f}")
    print(f"{'startup':<16}{ours['startup_s']:>10.1f}{base['startup_s']:>10.1f}")
    print(f"{'wall':<16}{ours['wall_s']:>10.1f}{base['wall_s']:>10.1f}")
    print(f"{'peak RSS (GiB)':<16}{ours['peak_rss_gib']:>10.2f}{base['peak_rss_gib']:>10.2f}")
    step_ratio = ours["stage_s"]["step"] / base["stage_s"]["step"]
    print(f"RATIO R-PRM/VR-only step time {step_ratio:.2f} (goal <= 2.00); peak RSS {ours['peak_rss_gib']:.2f} GiB (goal < 8)")
    if args.json:
        Path(args.json).write_text(json.dumps({"prm": ours, "vr_only": base, "step_ratio": step_ratio}, indent=2))
    return 0
