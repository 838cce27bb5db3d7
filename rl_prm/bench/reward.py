"""`rl-prm bench reward`: the math_verify reward on every gold answer and on perturbed (wrong) answers.

For each item the gold must score 1.0 and a perturbed answer 0.0:
  gsm8k/boxed   GSM8K test (1,319): the dataset's own solution, calculator annotations removed and the
                "#### x" line rewritten as "The answer is \\boxed{x}." (x as written, e.g. "1,000")
  gsm8k/hashes  GSM8K test: the raw solution text ending in "#### x"
  math500       MATH-500 (500): the reference solution with its \\boxed{}
  (--extra adds MATH test 5000 and Minerva-Math, whose golds come from the same solutions' boxes)
Perturbed: the final answer replaced by gold+1 (numbers), the first integer in it +1 (expressions),
2(gold) (symbolic without digits) or another option / text (\\text{...} answers).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from decimal import Decimal, InvalidOperation

from reward_fns import math_verify_reward as R
from reward_fns.math_verify_reward import _last_boxed
from rl_prm import argtypes
from rl_prm.data import load_benchmark

_NUM = re.compile(r"^[+-]?\d+(?:\.\d+)?$")


def perturb(gold: str) -> str:
    """A different final answer (never equivalent to ``gold`` for the shipped benchmarks)."""
    g = gold.strip()
    plain = g.replace(",", "")
    if _NUM.match(plain):
        try:
            return str(Decimal(plain) + 1)
        except InvalidOperation:
            pass
    m = re.match(r"^\\text\{\(([A-E])\)\}$", g)
    if m:
        return "\\text{(%s)}" % "BCDEA"["ABCDE".index(m.group(1))]
    if g.startswith("\\text{"):
        return "\\text{not " + g[len("\\text{"):]
    digits = list(re.finditer(r"\d+", g))
    if digits:  # the first number: the value itself, not a base subscript (52_8) or a unit power (cm^2)
        d = digits[0]
        return g[: d.start()] + str(int(d.group()) + 1) + g[d.end():]
    return "2(" + g + ")"


def _replace_last_box(solution: str, new: str) -> str:
    i = solution.rfind("\\boxed")
    inner = _last_boxed(solution)
    if i < 0 or inner is None:
        return solution + f" \\boxed{{{new}}}"
    j = solution.find(inner, i)
    k = j + len(inner)
    return solution[:j] + new + solution[k:]


def _gsm8k_items(limit):
    out = []
    for r in load_benchmark("gsm8k", "test")[:limit]:
        raw = r["solution"]
        body, written = raw.rsplit("####", 1)
        body = re.sub(r"<<[^>]*>>", "", body).rstrip()
        written = written.strip()
        boxed = f"{body}\nThe answer is \\boxed{{{written}}}."
        wrong = perturb(r["answer"])
        out.append(("gsm8k/boxed", r["id"], boxed, r["answer"], f"{body}\nThe answer is \\boxed{{{wrong}}}."))
        out.append(("gsm8k/hashes", r["id"], raw, r["answer"], f"{raw.rsplit('####', 1)[0]}#### {wrong}"))
    return out


def _boxed_solution_items(name, split, limit):
    out = []
    for r in load_benchmark(name, split)[:limit]:
        sol = r["solution"]
        out.append((name, r["id"], sol, r["answer"], _replace_last_box(sol, perturb(r["answer"]))))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="rl-prm bench reward", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=argtypes.positive_int, default=None, help="first N items per benchmark")
    ap.add_argument("--extra", action="store_true", help="also MATH test (5000) and Minerva-Math (272)")
    ap.add_argument("--show", type=argtypes.nonneg_int, default=10, help="print up to N failures per group")
    ap.add_argument("--no-shortcut", action="store_true",
                    help="grade identical strings through math_verify too (no string-equality shortcut)")
    args = ap.parse_args(argv or [])

    if args.no_shortcut:
        R.STRING_SHORTCUT = False

    items = _gsm8k_items(args.limit) + _boxed_solution_items("math500", "test", args.limit)
    if args.extra:
        items += _boxed_solution_items("math", "test", args.limit)
        items += _boxed_solution_items("minerva_math", "test", args.limit)

    R.reset_stats()
    groups: dict[str, dict] = {}
    t_all = time.perf_counter()
    for group, rid, sol, gold, wrong_sol in items:
        g = groups.setdefault(group, {"n": 0, "gold_ok": 0, "pert_wrong": 0, "t": 0.0, "fail": []})
        t0 = time.perf_counter()
        d_ok = R.score_detail(sol, gold)
        d_bad = R.compute_score(data_source=group, solution_str=wrong_sol, ground_truth=gold, extra_info={"id": rid})
        g["t"] += time.perf_counter() - t0
        g["n"] += 1
        g["gold_ok"] += d_ok["score"] == 1.0
        g["pert_wrong"] += d_bad == 0.0
        if d_ok["score"] != 1.0:
            g["fail"].append(f"gold not matched  {rid}: gold={gold!r} pred={d_ok['pred']!r} status={d_ok['status']}")
        if d_bad != 0.0:
            g["fail"].append(f"perturbed matched {rid}: gold={gold!r} perturbed={perturb(gold)!r}")
    elapsed = time.perf_counter() - t_all

    print(f"{'group':<14} {'gold correct':>16} {'perturbed wrong':>18} {'time':>8} {'ms/item':>8}")
    all_ok = True
    for name, g in groups.items():
        ok = g["gold_ok"] == g["n"] and g["pert_wrong"] == g["n"]
        all_ok &= ok
        print(f"{name:<14} {g['gold_ok']:>7}/{g['n']:<8} {g['pert_wrong']:>9}/{g['n']:<8} {g['t']:>7.1f}s "
              f"{1000 * g['t'] / max(1, 2 * g['n']):>8.1f}")
    print(f"total time {elapsed:.1f}s for {2 * len(items)} reward calls; counters: "
          + ", ".join(f"{k}={v}" for k, v in R.get_stats().items() if v))
    for name, g in groups.items():
        for line in g["fail"][: args.show]:
            print(f"  [{name}] {line}")
    print("ALL PASS" if all_ok else "SOME FAILED")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
