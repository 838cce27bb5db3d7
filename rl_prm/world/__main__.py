"""Run the miniature world's RL comparison on its shipped models (or fresh builds): one command, one report.

    rl-prm world [--out runs/world] [--seeds 0 1 2] [--steps N] [--rebuild] [key=value ...]   (= python -m rl_prm.world)

Stages (each timed):
  1. policy  tiny Qwen2 SFT'd from scratch on gold, flawed and miracle world solutions: the shipped one
             (rl_prm.world.ship; $RL_PRM_WORLD picks another), or with --rebuild the local build
             (rl_prm.world.policy; built in $RL_PRM_CACHE/tiny/world/ on first use, then reused)
  2. judge   fine-tuned from the policy on R-PRM critiques, then DPO on its own: shipped, or with --rebuild
             built as the policy is (rl_prm.world.judge, .dpo)
  3. judge eval   mini-ProcessBench F1 at K = 1, 2, 4, 8 sampled critiques and of one greedy critique
                  (rl_prm.world.judge_eval, rl_prm.eval.processbench); the shipped judge's card holds it,
                  measured with the default recipe's settings, and is read instead (--judge-eval measures it)
  4. RL      the arms (rl_prm.world.compare.ARMS; default: R-PRM min-form answer-gated and ungated, oracle
             min-form, VR-only), same seeds and budget
             (rl_prm.world.compare)
  5. report  DIR/report.md, DIR/report.json (rl_prm.world.report; with the hack/* monitors checked against the
             judge's on-policy false-accept rate, rl_prm.world.monitors), DIR/results.json,
             DIR/process_vs_step.png, DIR/judge_f1_vs_k.png, DIR/steps_per_response.png, DIR/judge_truth.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from rl_prm import argtypes
from rl_prm.world import ship

# `rl-prm world --help` imports this module (rl_prm.commands.world): the rest of the world (torch, numpy and
# tqdm behind it, or tens of ms of plain modules) is imported inside the functions that run the command.

ROOT = Path(__file__).resolve().parents[2]


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--out", default="runs/world", help="report directory (default runs/world)")
    ap.add_argument("--recipe", default=str(ROOT / "recipes" / "tiny_cpu.yaml"), help="the RL recipe every arm starts from")
    ap.add_argument("--seeds", nargs="+", default=["0", "1", "2"], help="RL seeds: --seeds 0 1 2 (or 0,1,2)")
    ap.add_argument("--steps", type=argtypes.positive_int, default=None,
                    help="RL steps per run (default: the recipe's)")
    ap.add_argument("--arms", default="gated,min_form,oracle,vr_only",
                    help="arms to run, comma-separated, from rl_prm.world.compare.ARMS")
    ap.add_argument("--judge-eval-n", type=argtypes.positive_int, default=100,
                    help="mini-ProcessBench items for judge F1")
    ap.add_argument("--ks", type=argtypes.positive_ints, default="1,2,4,8",
                    help="critiques per step to report (comma list)")
    ap.add_argument("--skip-judge-eval", action="store_true")
    ap.add_argument("--judge-eval", action="store_true",
                    help="evaluate the shipped judge again (default: its card's evaluation, measured with the same "
                         "settings, when the recipe's reward.prm is the default one)")
    ap.add_argument("--skip-rl", action="store_true")
    ap.add_argument("--rebuild", action="store_true",
                    help="run on the local build of the world's models instead of the shipped ones (built in "
                         "$RL_PRM_CACHE/tiny/world/ on first use, tens of minutes on a CPU, then reused; the same "
                         "as RL_PRM_WORLD=build)")
    ap.add_argument("overrides", nargs="*", help="recipe overrides for every arm (key=value)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="rl-prm world", description=__doc__.splitlines()[0])
    add_arguments(ap)
    return run(ap.parse_args(argv))


def card_eval(args: argparse.Namespace, recipe) -> dict | None:
    """The judge evaluation in the card of the world `ship.world_source()` points at, if it was measured
    with this command's settings (items, Ks, sampling temperature, the recipe's judge dtype and critique
    length, and the default recipe's reward.prm); else None (the command evaluates the judge itself)."""
    # torch (rl_prm.config, .release), tqdm (.judge_eval): not for `--help` (module comment)
    from rl_prm.config import load_recipe
    from rl_prm.world.judge_eval import SAMPLED_TEMPERATURE
    from rl_prm.world.release import DEFAULT_RECIPE  # the recipe `rl-prm world build` evaluates the judge with

    try:
        pb = ship.card("judge", root=Path(ship.world_source())).get("processbench")
    except (OSError, ValueError):
        return None
    default_prm = load_recipe(DEFAULT_RECIPE).reward.prm
    if (not pb or pb.get("n_items") != args.judge_eval_n or sorted(map(int, pb["f1_per_k"])) != sorted(args.ks)
            or pb.get("temperature") != SAMPLED_TEMPERATURE or pb.get("dtype") != recipe.reward.prm.dtype
            or recipe.reward.prm != default_prm):
        return None
    return pb


def as_eval_result(pb: dict) -> dict:
    """A card's evaluation summary (rl_prm.world.judge_eval.eval_summary) in the shape plot_f1_vs_k reads."""
    splits = sorted({s for per in pb["per_k"].values() for s in per})
    return {"per_k": {k: {"splits": pb["per_k"][k], "avg_f1": pb["f1_per_k"][k]} for k in pb["f1_per_k"]},
            "splits": splits, "threshold": 0.5}


def split_seeds(seeds: list[str], overrides: list[str]) -> tuple[list[int], list[str]]:
    """(seeds, overrides) from --seeds' tokens ("0 1 2" or "0,1,2"); key=value tokens that followed
    --seeds are recipe overrides. A token that is neither raises ValueError naming it."""
    out, extra = [], list(overrides)
    for tok in seeds:
        if "=" in tok:
            extra.append(tok)
            continue
        for part in filter(None, tok.split(",")):
            if not part.lstrip("-").isdigit():
                raise ValueError(f"--seeds: {part!r} is not an integer seed")
            out.append(int(part))
    if not out:
        raise ValueError("--seeds: no seed given")
    return out, extra


def run(args: argparse.Namespace) -> int:
    """The command; ``args.rebuild``: $RL_PRM_WORLD=build while it runs, so that every arm's run
    (rl_prm.models) loads the local build too."""
    if not args.rebuild:
        return _run(args)
    saved = os.environ.get(ship.ENV)
    os.environ[ship.ENV] = ship.BUILD
    try:
        return _run(args)
    finally:
        if saved is None:
            os.environ.pop(ship.ENV, None)
        else:
            os.environ[ship.ENV] = saved


def _run(args: argparse.Namespace) -> int:
    os.environ.setdefault("WANDB_MODE", "offline")
    try:
        seeds, overrides = split_seeds(list(args.seeds), list(args.overrides))
    except ValueError as e:
        print(f"rl-prm world: {e}", file=sys.stderr)
        return 2
    args.overrides = overrides
    # torch (rl_prm.config), numpy and tqdm (the builders): not for `--help` (module comment)
    from rl_prm.config import load_recipe
    from rl_prm.world.cache import build_facts
    from rl_prm.world.judge import judge_path, sft_judge_path
    from rl_prm.world.policy import policy_path

    build = ship.world_source() == ship.BUILD

    try:  # every arm's base recipe: a bad key fails here, before minutes of builds
        recipe = load_recipe(args.recipe, list(args.overrides))
    except ValueError as e:
        print(f"rl-prm world: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timing: dict[str, float] = {}
    load: dict[str, float] = {}  # 1-minute load average at the end of each stage (the machine may be shared)

    def stage(name: str, fn):
        t = time.perf_counter()
        value = fn()
        timing[name], load[name] = time.perf_counter() - t, round(os.getloadavg()[0], 1)
        return value

    t0 = time.perf_counter()
    from rl_prm.world.compare import JUDGE_ARMS  # not for `--help` (module comment)

    arm_names = args.arms.split(",")
    need_judge = not args.skip_judge_eval or (not args.skip_rl and any(a in JUDGE_ARMS for a in arm_names))
    try:  # the oracle and VR-only arms run without the R-PRM judge
        if build:
            pol = stage("policy", policy_path)
            if need_judge:
                stage("judge_sft", lambda: sft_judge_path(policy=pol))
                jud = stage("judge_dpo", lambda: judge_path(policy=pol))
        else:  # the shipped world (or $RL_PRM_WORLD's), sha256-checked
            pol = stage("policy", lambda: ship.world_model("policy"))
            if need_judge:
                jud = stage("judge", lambda: ship.world_model("judge"))
    except ship.ShippedWorldError as e:
        print(f"rl-prm world: {e}", file=sys.stderr)
        return 2
    results: dict = {"policy": {"path": str(pol), "build": build_facts(pol)}}
    if need_judge:
        results["judge"] = {"path": str(jud), "build": build_facts(jud)}
    if not args.skip_judge_eval:  # tqdm, the scorer: imported here, not for `--help` (module comment)
        from rl_prm.eval.processbench import plot_f1_vs_k
        from rl_prm.world.judge_eval import SAMPLED_TEMPERATURE, eval_summary, evaluate_judge

        prm = recipe.reward.prm
        carded = None if build or args.judge_eval else card_eval(args, recipe)
        if carded is not None:  # the shipped judge, already evaluated with these settings when it was built
            plot_f1_vs_k(as_eval_result(carded), out / "judge_f1_vs_k.png")
            results["judge"]["processbench"] = {**carded, "from_card": True}
        else:
            r = stage("judge_eval", lambda: evaluate_judge(jud, n=args.judge_eval_n, ks=args.ks,
                                                           temperature=SAMPLED_TEMPERATURE,
                                                           max_critique_tokens=prm.max_critique_tokens, dtype=prm.dtype))
            plot_f1_vs_k(r, out / "judge_f1_vs_k.png")
            results["judge"]["processbench"] = eval_summary(r, SAMPLED_TEMPERATURE, prm.dtype)
    if not args.skip_rl:  # imported here, not for `--help` (module comment)
        from rl_prm.world.compare import plot_curves, run_arms, summarize

        runs = stage("rl", lambda: run_arms(args.recipe, out, seeds=seeds, steps=args.steps, arms=arm_names,
                                            overrides=args.overrides))
        arms = summarize(runs)
        plot_curves(arms, out / "process_vs_step.png",
                    keys=("eval/trace_accuracy", "eval/answer_accuracy", "eval/miracle_rate", "eval/accuracy"),
                    titles=("trace accuracy (answer and every step right), sampled", "answer accuracy, sampled",
                            "miracle rate (answer right, a step wrong), sampled", "greedy accuracy"))
        plot_curves(arms, out / "steps_per_response.png", keys=("hack/steps_per_response", "eval/steps_per_response"),
                    titles=("steps per response, training rollouts", "steps per response, greedy eval"))
        plot_curves(arms, out / "judge_truth.png",
                    keys=("judge/false_accept_rate", "judge/flawed_passed_rate", "judge/false_reject_rate",
                          "process/trace_rate"),
                    titles=("judge: first wrong steps passed (on-policy, vs the checker)",
                            "judge: responses with a wrong step passed whole", "judge: right steps flagged",
                            "trace rate of the training rollouts"))
        # numpy (rl_prm.metrics): not for `--help` (module comment)
        from dataclasses import asdict

        from rl_prm.metrics.watch import RULES
        from rl_prm.world.monitors import fooled_rises, monitor_keys, monitor_table, plot_monitors

        rises = fooled_rises(runs)
        monitors = ({"table": monitor_table(runs), "rises": rises, "rules": [asdict(r) for r in RULES],
                     "monitors": monitor_keys(runs)} if rises else None)
        if monitors:
            plot_monitors(runs, out / "monitors.png")
        results["rl"] = {"monitors": monitors, "recipe": str(args.recipe), "overrides": list(args.overrides),
                         "eval_samples": recipe.trainer.eval_samples,
                         "judge_scoring": {k: getattr(recipe.reward.prm, k) for k in
                                           ("k", "adaptive_k", "adaptive_min_k", "adaptive_rule", "temperature")},
                         "runs": {f"{a}_s{s}": str(d) for (a, s), d in runs.items()}, "arms": arms}
    timing["total"] = time.perf_counter() - t0
    results["timing_s"] = {k: round(v, 1) for k, v in timing.items()}
    results["load_avg"] = load
    from rl_prm.world.report import report_json, report_md  # not for `--help` (module comment)

    (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (out / "report.json").write_text(json.dumps(report_json(results), indent=1, default=str) + "\n")
    text = report_md(results)
    (out / "report.md").write_text(text)
    print(text)
    print(f"wrote {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
