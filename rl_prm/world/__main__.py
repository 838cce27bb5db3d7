"""Build (or reuse) the miniature world and run its RL comparison: one command, one report.

    rl-prm world [--out runs/world] [--seeds 0,1] [--steps N]      (same as python -m rl_prm.world)

Stages (each timed; cached models are reused):
  1. policy  tiny Qwen2 SFT'd from scratch on gold + flawed world solutions (rl_prm.world.policy)
  2. judge   fine-tuned from the policy on R-PRM critiques (rl_prm.world.judge)
  3. judge eval   mini-ProcessBench F1 at K = 1, 2, 4, 8 (rl_prm.eval.processbench)
  4. RL      min-form R-PRM vs VR-only vs sum-form, same seeds and budget (rl_prm.world.compare)
  5. report  DIR/report.md, DIR/results.json, DIR/accuracy_vs_step.png, DIR/judge_f1_vs_k.png,
             DIR/steps_per_response.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--out", default="runs/world", help="report directory (default runs/world)")
    ap.add_argument("--recipe", default=str(ROOT / "recipes" / "tiny_cpu.yaml"), help="the RL recipe every arm starts from")
    ap.add_argument("--seeds", default="0,1", help="RL seeds, comma list (default 0,1)")
    ap.add_argument("--steps", type=int, default=None, help="RL steps per run (default: the recipe's)")
    ap.add_argument("--arms", default="min_form,vr_only,sum", help="arms to run (rl_prm.world.compare.ARMS)")
    ap.add_argument("--judge-eval-n", type=int, default=60, help="mini-ProcessBench items for judge F1")
    ap.add_argument("--ks", default="1,2,4,8", help="critiques per step to report (comma list)")
    ap.add_argument("--skip-judge-eval", action="store_true")
    ap.add_argument("--skip-rl", action="store_true")
    ap.add_argument("overrides", nargs="*", help="recipe overrides for every arm (key=value)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="rl-prm world", description=__doc__.splitlines()[0])
    add_arguments(ap)
    return run(ap.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("WANDB_MODE", "offline")
    from rl_prm.config import load_recipe
    from rl_prm.world.cache import build_facts
    from rl_prm.world.judge import judge_path
    from rl_prm.world.policy import policy_path

    try:  # every arm's base recipe: a bad key fails here, before minutes of builds
        recipe = load_recipe(args.recipe, list(args.overrides))
    except ValueError as e:
        print(f"rl-prm world: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    pol = policy_path()
    timing["policy"] = time.perf_counter() - t0
    t = time.perf_counter()
    jud = judge_path(policy=pol)
    timing["judge"] = time.perf_counter() - t
    results: dict = {"policy": {"path": str(pol), "build": build_facts(pol)},
                     "judge": {"path": str(jud), "build": build_facts(jud)}}
    if not args.skip_judge_eval:
        from rl_prm.eval.processbench import plot_f1_vs_k
        from rl_prm.world.judge import evaluate_judge

        prm = recipe.reward.prm
        t = time.perf_counter()
        r = evaluate_judge(jud, n=args.judge_eval_n, ks=[int(k) for k in args.ks.split(",")],
                           temperature=prm.temperature, max_critique_tokens=prm.max_critique_tokens)
        plot_f1_vs_k(r, out / "judge_f1_vs_k.png")
        results["judge"]["processbench"] = {"f1_per_k": r["f1_per_k"], "timing_s": r["timing_s"],
                                            "step_accuracy": r["step_accuracy"],
                                            "temperature": prm.temperature,
                                            "per_k": {k: v["splits"] for k, v in r["per_k"].items()},
                                            "status_counts": r.get("status_counts"), "n_items": r["n_items"]}
        timing["judge_eval"] = time.perf_counter() - t
    if not args.skip_rl:
        from rl_prm.world.compare import plot_curves, run_arms, summarize

        t = time.perf_counter()
        runs = run_arms(args.recipe, out, seeds=[int(s) for s in args.seeds.split(",")], steps=args.steps,
                        arms=args.arms.split(","), overrides=args.overrides)
        timing["rl"] = time.perf_counter() - t
        arms = summarize(runs)
        plot_curves(arms, out / "accuracy_vs_step.png")
        plot_curves(arms, out / "steps_per_response.png", keys=("hack/steps_per_response", "eval/steps_per_response"),
                    titles=("steps per response, training rollouts", "steps per response, greedy eval"))
        results["rl"] = {"recipe": str(args.recipe), "overrides": list(args.overrides),
                         "eval_samples": recipe.trainer.eval_samples,
                         "runs": {f"{a}_s{s}": str(d) for (a, s), d in runs.items()}, "arms": arms}
    timing["total"] = time.perf_counter() - t0
    results["timing_s"] = {k: round(v, 1) for k, v in timing.items()}
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    text = report(results)
    (out / "report.md").write_text(text)
    print(text)
    print(f"wrote {out / 'report.md'}")
    return 0


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}"


def report(results: dict) -> str:
    """The markdown report of a world run (results.json's content)."""
    from rl_prm.world.compare import ARM_LABELS, _mean

    tm = results["timing_s"]
    pb, jb = results["policy"]["build"], results["judge"]["build"]
    lines = ["# Miniature R-PRM world", "",
             f"Wall time {tm['total']:.0f} s on this machine: " + ", ".join(f"{k} {v:.0f} s" for k, v in tm.items()
                                                                          if k != "total")
             + " (a cached model costs ~0 s; its build time is below).", "",
             "## Policy and judge", "",
             f"- policy: SFT from scratch, {pb.get('config', {}).get('steps')} steps on gold + "
             f"{pb.get('config', {}).get('flawed_fraction')} flawed solutions, built in {pb.get('build_s')} s; "
             f"held-out accuracy at build (n={pb.get('n')}): greedy {_pct(pb.get('greedy_acc'))}%, "
             f"sampled T=1 {_pct(pb.get('sampled_acc'))}%",
             f"- judge: fine-tuned from the policy on {jb.get('config', {}).get('steps')} steps of R-PRM critiques, "
             f"built in {jb.get('build_s')} s, final SFT loss {jb.get('final_loss')}"]
    j = results["judge"].get("processbench")
    if j:
        lines += ["", f"Mini-ProcessBench ({j['n_items']} items, critiques sampled at the recipe's judge temperature "
                  f"T={j.get('temperature')}, threshold 0.5):", "",
                  "| K | F1 | error-sample acc | correct-sample acc |", "|---|---|---|---|"]
        for k, f1 in j["f1_per_k"].items():
            sp = next(iter(j["per_k"][str(k)].values()))
            lines.append(f"| {k} | {f1} | {sp.get('error_acc', float('nan')):.1f} | {sp.get('correct_acc', float('nan')):.1f} |")
        ks = list(j["f1_per_k"])
        lo, hi = j["f1_per_k"][ks[0]], j["f1_per_k"][ks[-1]]
        acc = j.get("step_accuracy")
        if acc:
            lines += ["", "Step by step (what the RL reward sees; a step counts as judged correct when its mean P(Yes) "
                      "over K critiques is above 0.5):", "",
                      "| K | correct steps judged correct | first-error steps judged wrong |", "|---|---|---|"]
            for k, a in acc.items():
                lines.append(f"| {k} | {a['correct_steps_yes']}% of {a['n_correct_steps']} | "
                             f"{a['error_steps_no']}% of {a['n_error_steps']} |")
        lines += ["", f"F1 at K={ks[-1]} is {hi} against {lo} at K={ks[0]}: "
                  + ("it rises with K." if hi > lo else "it does NOT rise with K."), "",
                  "![judge F1 vs K](judge_f1_vs_k.png)"]
    rl = results.get("rl")
    if rl:
        arms = rl["arms"]
        seeds = sorted({s for a in arms.values() for s in a["seeds"]})
        lines += ["", "## RL comparison", "",
                  f"Recipe `{Path(rl['recipe']).name}` {' '.join(rl['overrides'])}; seeds {seeds}; every arm starts "
                  "from the SFT policy with the same data order, sampling seeds, optimiser and budget; only the "
                  "reward differs. Accuracy is on held-out world problems (step 0 = the SFT policy).", ""]
        for key, name in (("eval/sampled_accuracy", f"sampled T=1, mean of {rl.get('eval_samples', '?')} samples per problem"),
                          ("eval/accuracy", "greedy")):
            lines += [f"Held-out accuracy, {name} (%; mean over seeds, [min, max] over seeds):", "",
                      "| arm | step 0 (SFT) | last step | gain | per seed (last) |", "|---|---|---|---|---|"]
            for arm, a in arms.items():
                f = a["final"].get(key)
                if not f:
                    continue
                per = ", ".join(f"s{s}: {_pct(v)}" for s, v in sorted(f["end_per_seed"].items()))
                lines.append(f"| {ARM_LABELS.get(arm, arm)} | {_pct(f['start_mean'])} | {_pct(f['end_mean'])} "
                             f"[{_pct(f['end_min'])}, {_pct(f['end_max'])}] (step {f['step']}) | "
                             f"{100 * f['gain_mean']:+.1f} [{100 * f['gain_min']:+.1f}, {100 * f['gain_max']:+.1f}] | {per} |")
            lines.append("")
        lines += _verdicts(arms)
        lines += ["", "![accuracy vs step](accuracy_vs_step.png)", "",
                  "Steps per response (the hacking check: a PRM-rewarded policy that games the judge tends to "
                  "change how many steps it writes):", ""]
        for arm, a in arms.items():
            c = a["curves"].get("hack/steps_per_response", {})
            if c:
                first, last = min(c), max(c)
                lines.append(f"- {ARM_LABELS.get(arm, arm)}: {_mean(c[first].values()):.2f} at step "
                             f"{first} -> {_mean(c[last].values()):.2f} at step {last} "
                             f"(RL time per run {a['train_s']:.0f} s)")
        lines += ["", "![steps per response](steps_per_response.png)"]
    return "\n".join(lines) + "\n"


def _verdicts(arms: dict) -> list[str]:
    """Plain statements from the numbers (sampled accuracy, the metric RL optimises)."""
    from rl_prm.world.compare import ARM_LABELS

    key = "eval/sampled_accuracy"
    f = {arm: a["final"][key] for arm, a in arms.items() if key in a["final"]}
    out = []
    if "min_form" in f:
        m = f["min_form"]
        clear = m["gain_min"] > 0
        out.append(f"- Min-form R-PRM arm vs the SFT policy: {100 * m['gain_mean']:+.1f} points "
                   f"(every seed {'improves' if clear else 'does NOT improve'}; worst seed {100 * m['gain_min']:+.1f}).")
        for other in ("vr_only", "sum"):
            if other in f:
                d = m["end_mean"] - f[other]["end_mean"]
                overlap = not (m["end_min"] > f[other]["end_max"] or m["end_max"] < f[other]["end_min"])
                out.append(f"- Min-form vs {ARM_LABELS[other]}: {100 * d:+.1f} points at the last step "
                           + ("(the seeds' ranges overlap: not a clear difference at this budget)." if overlap
                              else "(the seeds' ranges do not overlap)."))
    return out


if __name__ == "__main__":
    raise SystemExit(main())
