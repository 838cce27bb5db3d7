"""Build (or reuse) the miniature world and write a report: python -m rl_prm.world [--out DIR].

Stages: world policy SFT (cached) -> its held-out accuracy; world judge SFT (cached) -> its
mini-ProcessBench F1 at K = 1, 2, 4, 8 (rl_prm.eval.processbench). Writes DIR/report.md,
DIR/results.json and DIR/judge_f1_vs_k.png. One heavy process, torch on one thread.
(The GRPO comparison of issue #7 is not wired in yet.)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rl_prm.world", description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/world", help="report directory (default runs/world)")
    ap.add_argument("--policy-eval-n", type=int, default=200, help="held-out problems for policy accuracy")
    ap.add_argument("--judge-eval-n", type=int, default=100, help="mini-ProcessBench items for judge F1")
    ap.add_argument("--ks", default="1,2,4,8", help="critiques per step to report (comma list)")
    ap.add_argument("--skip-judge-eval", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("WANDB_MODE", "offline")
    import torch

    torch.set_num_threads(1)
    from rl_prm.eval.processbench import plot_f1_vs_k
    from rl_prm.world.cache import build_facts
    from rl_prm.world.judge import evaluate_judge, judge_path
    from rl_prm.world.policy import evaluate_policy, policy_path

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    pol = policy_path()
    t_pol = time.perf_counter() - t0
    pol_facts = build_facts(pol)
    acc = {k: pol_facts[k] for k in ("greedy_acc", "sampled_acc", "greedy_all_steps_correct", "n") if k in pol_facts}
    if args.policy_eval_n != pol_facts.get("n"):
        acc = evaluate_policy(pol, n=args.policy_eval_n)
    t1 = time.perf_counter()
    jud = judge_path()
    t_jud = time.perf_counter() - t1
    results = {"policy": {"path": str(pol), "build": pol_facts, "accuracy": acc, "resolve_s": round(t_pol, 1)},
               "judge": {"path": str(jud), "build": build_facts(jud), "resolve_s": round(t_jud, 1)}}
    if not args.skip_judge_eval:
        ks = [int(k) for k in args.ks.split(",")]
        r = evaluate_judge(jud, n=args.judge_eval_n, ks=ks)
        plot_f1_vs_k(r, out / "judge_f1_vs_k.png")
        results["judge"]["processbench"] = {"f1_per_k": r["f1_per_k"], "timing_s": r["timing_s"],
                                            "per_k": {k: v["splits"] for k, v in r["per_k"].items()},
                                            "status_counts": r["status_counts"], "n_items": r["n_items"]}
    results["total_s"] = round(time.perf_counter() - t0, 1)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    lines = ["# Miniature R-PRM world", "",
             f"Total wall time: {results['total_s']} s (cached stages are reused).", "",
             "## Policy (SFT from scratch on gold + flawed solutions)", "",
             f"- build time: {pol_facts.get('build_s')} s, SFT loss {pol_facts.get('final_loss')}",
             f"- held-out accuracy (n={acc.get('n')}): greedy {acc.get('greedy_acc')}, sampled T=1 "
             f"{acc.get('sampled_acc')}, greedy with every step correct {acc.get('greedy_all_steps_correct')}", "",
             "## Judge (SFT on recomputing R-PRM teacher critiques)", "",
             f"- build time: {results['judge']['build'].get('build_s')} s, SFT loss {results['judge']['build'].get('final_loss')}"]
    pb = results["judge"].get("processbench")
    if pb:
        lines += [f"- mini-ProcessBench ({pb['n_items']} items), F1 per K at threshold 0.5:", "",
                  "| K | F1 | error acc | correct acc |", "|---|---|---|---|"]
        for k, f1 in pb["f1_per_k"].items():
            sp = next(iter(pb["per_k"][str(k)].values()))
            lines.append(f"| {k} | {f1} | {sp.get('error_acc', float('nan')):.1f} | {sp.get('correct_acc', float('nan')):.1f} |")
        lines += ["", f"Scoring time {pb['timing_s']}.", "", "![F1 vs K](judge_f1_vs_k.png)"]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwrote {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
