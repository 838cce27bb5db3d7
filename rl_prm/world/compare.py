"""The miniature world's RL comparison: PURE-style RLOO with R-PRM min-form credit, against the same
with answer-gated judging (reward.prm.gate), the oracle judge (the world's checker),
verifiable-reward-only and R-PRM sum-form, same seeds, data and budget, on the one-node backend.

    from rl_prm.world.compare import ARMS, run_arms, summarize
    runs = run_arms("recipes/tiny_cpu.yaml", out_dir, seeds=(0, 1, 2), steps=10)   # {(arm, seed): run dir}
    table = summarize(runs)                                                         # metrics per arm and step

Every arm is the recipe plus its overrides (ARMS), so the only difference between arms is the
reward. One pair of vLLM engines (policy + judge) serves all runs (rl_prm.backends.local.Engines);
each run starts from the SFT policy's weights and writes its own run dir (metrics.jsonl, W&B).
Runs resume: a killed comparison continues where it stopped. Every arm of a seed starts from the
same SFT weights and evaluates with the same prompts and sampling seeds, so the starting policy is
evaluated once per seed (by its first arm) and summarize() gives that step-0 eval to the seed's other arms.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Iterable, Optional

from rl_prm.metrics.judge import RATE_COUNT

# arm -> recipe overrides on the R-PRM recipe; the VR-only arm runs the VR-only baseline recipe itself
# (the same estimator and options with the process reward removed: recipes/tiny_cpu_vr_only.yaml)
VR_ONLY = "vr_only"
ARMS: dict[str, list[str]] = {
    "min_form": ["reward.prm.enabled=true", "reward.credit.mode=min_form", "reward.prm.gate=none"],
    "gated": ["reward.prm.enabled=true", "reward.credit.mode=min_form", "reward.prm.gate=answer_correct"],
    "oracle": ["reward.prm.enabled=true", "reward.credit.mode=min_form", "model.judge=oracle", "reward.prm.gate=none"],
    VR_ONLY: [],
    "sum": ["reward.prm.enabled=true", "reward.credit.mode=sum", "reward.prm.gate=none"],
    # PURE's PRM-only reward: min-form R-PRM credit and no verifiable reward (what a judge-fooling policy exploits)
    "prm_only": ["reward.prm.enabled=true", "reward.credit.mode=min_form", "reward.prm.gate=none",
                 "reward.verifiable.enabled=false", "reward.verifiable.coef=1.0"],
}
JUDGE_ARMS = ("min_form", "gated", "sum", "prm_only")  # the arms that score with the world's R-PRM judge
VR_RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "tiny_cpu_vr_only.yaml"
ARM_LABELS = {"min_form": "R-PRM min-form + VR", "gated": "R-PRM min-form + VR, answer-gated",
              "oracle": "oracle PRM min-form + VR", "vr_only": "VR only", "sum": "R-PRM sum-form + VR",
              "prm_only": "R-PRM min-form only (no VR)"}
# eval keys summarized per arm (curves over steps; last-eval numbers with their spread over seeds)
EVAL_KEYS = ("eval/trace_accuracy", "eval/answer_accuracy", "eval/miracle_rate", "eval/accuracy",
             "eval/sampled_accuracy", "eval/greedy_trace_accuracy", "eval/greedy_miracle_rate")
# the judge's work per training step (rl_prm.metrics.judge_cost_metrics), averaged over steps and seeds per arm
JUDGE_WORK_KEYS = ("prm/judge_prompts", "prm/judge_prompts_distinct", "prm/dedup_frac", "prm/gated_responses",
                   "prm/critiques", "prm/critique_tokens", "prm/prompt_tokens_computed", "timing/score")
# the judge's on-policy errors against the world's checker and the training rollouts' process rates
JUDGE_TRUTH_KEYS = (*RATE_COUNT, *RATE_COUNT.values(), "process/trace_rate", "process/answer_rate",
                    "process/miracle_rate")
CURVE_KEYS = EVAL_KEYS + ("eval/steps_per_response", "hack/steps_per_response", "reward/vr_mean",
                          "timing/step") + JUDGE_WORK_KEYS + JUDGE_TRUTH_KEYS


def arm_recipe(arm: str, recipe: str | Path, vr_recipe: str | Path = VR_RECIPE) -> tuple[Path, list[str]]:
    """(recipe file, overrides) of an arm."""
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; expected one of {list(ARMS)}")
    return Path(vr_recipe if arm == VR_ONLY else recipe), list(ARMS[arm])


def run_arms(recipe: str | Path, out_dir: str | Path, seeds: Iterable[int] = (0, 1, 2), steps: Optional[int] = None,
             arms: Iterable[str] = tuple(ARMS), overrides: Iterable[str] = (),
             vr_recipe: str | Path = VR_RECIPE) -> dict[tuple[str, int], Path]:
    """Train every (arm, seed) into out_dir/runs/<arm>_s<seed>; returns the run dirs. `overrides` apply to
    every arm."""
    # torch, Ray, vLLM (seconds): only a comparison needs them; the report and monitors import this module too
    from rl_prm.backends.local import Engines, train
    from rl_prm.config import load_recipe, run_dir_of

    os.environ.setdefault("WANDB_MODE", "offline")
    runs: dict[tuple[str, int], Path] = {}
    extra = list(overrides) + ([f"trainer.total_steps={steps}"] if steps else [])
    arms = list(arms)
    plans = {arm: arm_recipe(arm, recipe, vr_recipe) for arm in arms}
    with Engines() as engines:
        for seed in seeds:
            for i, arm in enumerate(arms):
                shared_start = ["trainer.val_before_train=false"] if i else []  # step 0 = the first arm's eval
                path, arm_ov = plans[arm]
                cfg = load_recipe(path, [f"run.output_dir={Path(out_dir) / 'runs'}", f"run.name={arm}_s{seed}",
                                         f"run.seed={seed}", *arm_ov, *extra, *shared_start])
                t0 = time.time()
                print(f"=== arm {arm} seed {seed} ===", flush=True)
                train(cfg, engines=engines)
                print(f"=== arm {arm} seed {seed}: {time.time() - t0:.0f}s ===", flush=True)
                runs[(arm, seed)] = run_dir_of(cfg)
    return runs


def read_metrics(run_dir: str | Path) -> dict[int, dict]:
    """step -> merged metrics of a run's metrics.jsonl (later lines win)."""
    out: dict[int, dict] = {}
    for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            step = int(row.get("step", row.get("_step", 0)))
            out.setdefault(step, {}).update(row)
    return out


def summarize(runs: dict[tuple[str, int], Path]) -> dict:
    """Per arm: curves (step -> value per seed) of CURVE_KEYS (eval: process metrics, greedy and
    sampled accuracy, steps per response; training-rollout steps per response, VR, step time) and,
    for EVAL_KEYS, the last-eval numbers with their spread over seeds."""
    metrics = {key: read_metrics(d) for key, d in runs.items()}
    start: dict[int, dict] = {}  # seed -> its step-0 eval (run_arms evaluates the starting policy once per seed)
    for (arm, seed), m in metrics.items():
        if "eval/accuracy" in m.get(0, {}):
            start.setdefault(seed, {k: v for k, v in m[0].items() if k.startswith("eval/")})
    arms: dict[str, dict] = {}
    for (arm, seed), m in sorted(metrics.items()):
        if seed in start and "eval/accuracy" not in m.get(0, {}):
            m.setdefault(0, {}).update(start[seed])
        a = arms.setdefault(arm, {"seeds": [], "curves": {}})
        a["seeds"].append(seed)
        for key in CURVE_KEYS:
            for step, row in m.items():
                if key in row:
                    a["curves"].setdefault(key, {}).setdefault(step, {})[seed] = float(row[key])
    for arm, a in arms.items():
        a["final"] = {}
        for key in EVAL_KEYS:
            curve = a["curves"].get(key, {})
            if not curve:
                continue
            first, last = min(curve), max(curve)
            start, end = curve[first], curve[last]
            gains = [end[s] - start[s] for s in end if s in start]
            a["final"][key] = {"step": last, "start_mean": _mean(start.values()), "end_mean": _mean(end.values()),
                               "end_per_seed": end, "end_min": min(end.values()), "end_max": max(end.values()),
                               "gain_mean": _mean(gains), "gain_min": min(gains) if gains else None,
                               "gain_max": max(gains) if gains else None}
        steps = a["curves"].get("timing/step", {})
        a["train_s"] = sum(v for per in steps.values() for v in per.values()) / max(1, len(a["seeds"]))
        a["judge_work"] = {key: _mean(v for per in a["curves"][key].values() for v in per.values())
                           for key in JUDGE_WORK_KEYS if a["curves"].get(key)}
    return arms


def _mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else float("nan")


def plot_curves(arms: dict, path: str | Path, keys=("eval/sampled_accuracy", "eval/accuracy"),
                titles=("held-out accuracy, sampled T=1 (mean@k)", "held-out accuracy, greedy")) -> None:
    """One panel per key (two per row): mean over seeds per arm against step, the seeds' min-max shaded."""
    import matplotlib  # about a second to import: only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = min(2, len(keys))
    nrows = -(-len(keys) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.5 * ncols, 4 * nrows), squeeze=False)
    for ax in axes.flat[len(keys):]:
        ax.axis("off")
    for ax, key, title in zip(axes.flat, keys, titles):
        for arm, a in arms.items():
            curve = a["curves"].get(key)
            if not curve:
                continue
            xs = sorted(curve)
            mean = [_mean(curve[x].values()) for x in xs]
            ax.plot(xs, mean, marker="o", label=ARM_LABELS.get(arm, arm))
            ax.fill_between(xs, [min(curve[x].values()) for x in xs], [max(curve[x].values()) for x in xs], alpha=0.2)
        ax.set_xlabel("RL step")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
