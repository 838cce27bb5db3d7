"""`rl-prm bench train`: time per stage and peak memory of the tiny recipe, R-PRM vs verifiable-only.

Runs `rl-prm train RECIPE` for the R-PRM recipe and the verifiable-reward-only recipe one after the
other (same budget, fresh run dirs), samples the resident memory of the whole process tree (the
driver, Ray's raylet/GCS and every Ray worker, vLLM engine processes included) every 0.25 s, then
prints mean seconds per stage from each run's metrics.jsonl and the ratios side by side.

    rl-prm bench train [--steps 6] [--recipe recipes/tiny_cpu.yaml] [--baseline recipes/tiny_cpu_vr_only.yaml]
                       [--pipeline] [--stream] [key=value ...]   # overrides for every run, e.g. model.policy=tiny model.judge=tiny
                                                       # (reward.prm.* only for the runs with the judge)

--pipeline adds a third run: the R-PRM recipe with trainer.pipeline=true (the next step's rollouts are
generated while a step is scored and learned from); its `generate` is the time a step waited for its
rollouts, `generate_engine` the engine's time generating them. --stream adds the R-PRM recipe with
reward.prm.stream=true (each prompt's responses scored as soon as they finish); its `score` is the wait
after generation, `score_judge` the judge's time, overlapping generation.

Beside the stage table: the judge's work per step of each run with a judge (judge prompts, the distinct ones
the engine judged, the dedup fraction, responses kept from the judge by reward.prm.gate, critiques, critique
tokens), and the machine's CPU with the judge engine's dtype (the ratio depends on both).
Goals printed with the numbers: R-PRM step <= 2x the VR-only step; peak RSS <= 6 GiB.
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

import psutil

from rl_prm import argtypes
from rl_prm.machine import machine_facts
from rl_prm.vllm_engine import judge_dtype

STAGES = ["generate", "score", "credit", "update", "sync", "step"]
# the judge's work per step (rl_prm.metrics.judge_cost_metrics), printed beside the stage table
JUDGE_WORK = [("judge prompts", "prm/judge_prompts", ".1f"), ("distinct (judged)", "prm/judge_prompts_distinct", ".1f"),
              ("dedup", "prm/dedup_frac", ".3f"), ("gated responses", "prm/gated_responses", ".1f"),
              ("critiques", "prm/critiques", ".1f"), ("critique tokens", "prm/critique_tokens", ".0f")]
EXTRA = ["generate_engine", "wait_next_rollouts", "score_judge"]  # pipelined / streamed runs (printed when a run has them)


def _tree_rss(root: int, own_ray_tmp: str) -> int:
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
    for s in STAGES + EXTRA:
        vals = [m[f"timing/{s}"] for m in metrics if f"timing/{s}" in m]
        per_stage[s] = statistics.mean(vals[1:] or vals) if vals else float("nan")  # first step warms up
    startup = next((m["timing/startup_total"] for m in metrics if "timing/startup_total" in m), float("nan"))
    work = {key: statistics.mean(vals) for _, key, _ in JUDGE_WORK
            if (vals := [m[key] for m in metrics if key in m])}  # every step: the judge's work needs no warm-up
    return {"recipe": recipe, "wall_s": wall, "peak_rss_gib": peak[0] / 2**30, "stage_s": per_stage, "startup_s": startup,
            "judge_work": work}


def machine_line(recipe: str, overrides: tuple[str, ...]) -> str:
    """The CPU and the judge engine's dtype: the ratio depends on both (bfloat16 only where the CPU computes it)."""
    from rl_prm.config import load_recipe  # imports torch (seconds): not before `--help` or a bad argument

    m, prm = machine_facts(), load_recipe(recipe, list(overrides)).reward.prm
    return (f"machine: {m['cpu'] or 'unknown CPU'}, {m['cores']} cores, native bfloat16 {'yes' if m['bfloat16'] else 'no'}; "
            f"judge engine dtype {judge_dtype(prm.dtype) or 'the model’s'} (reward.prm.dtype={prm.dtype}), gate {prm.gate}")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="rl-prm bench train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="recipes/tiny_cpu.yaml")
    ap.add_argument("--baseline", default="recipes/tiny_cpu_vr_only.yaml")
    ap.add_argument("--steps", type=argtypes.positive_int, default=6)
    ap.add_argument("--pipeline", action="store_true", help="also run the R-PRM recipe with trainer.pipeline=true")
    ap.add_argument("--stream", action="store_true", help="also run the R-PRM recipe with reward.prm.stream=true")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("overrides", nargs="*", help="recipe overrides key=value, applied to every run (reward.prm.* "
                    "to the R-PRM runs only)")
    args = ap.parse_args(argv)
    for r in (args.recipe, args.baseline):
        if not Path(r).is_file():
            raise SystemExit(f"bench train: recipe not found: {r}")
    runs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="rlprm_bench_train_") as tmp:
        runs["R-PRM"] = run_one(args.recipe, args.steps, Path(tmp) / "prm", tuple(args.overrides))
        runs["VR-only"] = run_one(args.baseline, args.steps, Path(tmp) / "vr",  # the baseline has no judge
                                  tuple(o for o in args.overrides if not o.startswith("reward.prm.")))
        if args.pipeline:
            runs["pipelined"] = run_one(args.recipe, args.steps, Path(tmp) / "pipe",
                                        (*args.overrides, "trainer.pipeline=true"))
        if args.stream:
            runs["streamed"] = run_one(args.recipe, args.steps, Path(tmp) / "stream",
                                       (*args.overrides, "reward.prm.stream=true"))
    ours, base = runs["R-PRM"], runs["VR-only"]
    names = list(runs)
    shown = STAGES + [s for s in EXTRA if any(r["stage_s"][s] == r["stage_s"][s] for r in runs.values())]
    print(f"{'stage (s/step)':<20}" + "".join(f"{n:>11}" for n in names) + f"{'ratio':>8}")
    for s in shown:
        a, b = ours["stage_s"][s], base["stage_s"][s]
        ratio = a / b if b and b == b and b > 0 else float("nan")
        print(f"{s:<20}" + "".join(f"{runs[n]['stage_s'][s]:>11.3f}" for n in names) + f"{ratio:>8.2f}")
    for label, key, fmt in (("startup", "startup_s", ".1f"), ("wall", "wall_s", ".1f"), ("peak RSS (GiB)", "peak_rss_gib", ".2f")):
        print(f"{label:<20}" + "".join(f"{runs[n][key]:>11{fmt}}" for n in names))
    judged = [n for n in names if runs[n]["judge_work"]]
    if judged:
        print(f"{'judge work (/step)':<20}" + "".join(f"{n:>11}" for n in judged))
        for label, key, fmt in JUDGE_WORK:
            print(f"{label:<20}" + "".join(f"{runs[n]['judge_work'].get(key, float('nan')):>11{fmt}}" for n in judged))
    print(machine_line(args.recipe, tuple(args.overrides)))
    step_ratio = ours["stage_s"]["step"] / base["stage_s"]["step"]
    print(f"RATIO R-PRM/VR-only step time {step_ratio:.2f} (goal <= 2.00); peak RSS {ours['peak_rss_gib']:.2f} GiB "
          "(goal <= 6)")
    out = {"prm": ours, "vr_only": base, "step_ratio": step_ratio}
    if args.pipeline:
        pipe = runs["pipelined"]
        out["pipelined"], out["pipelined_step_ratio"] = pipe, pipe["stage_s"]["step"] / base["stage_s"]["step"]
        print(f"RATIO pipelined/sequential R-PRM step time {pipe['stage_s']['step'] / ours['stage_s']['step']:.2f}; "
              f"pipelined R-PRM/VR-only {out['pipelined_step_ratio']:.2f}")
    if args.stream:
        st = runs["streamed"]
        out["streamed"], out["streamed_step_ratio"] = st, st["stage_s"]["step"] / base["stage_s"]["step"]
        print(f"RATIO streamed/sequential R-PRM step time {st['stage_s']['step'] / ours['stage_s']['step']:.2f}; "
              f"streamed R-PRM/VR-only {out['streamed_step_ratio']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0
