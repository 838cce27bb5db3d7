"""`rl-prm eval {processbench,prmbench,math}`: judge and policy evaluation.

    rl-prm eval processbench --judge PATH --k 1,2,4 [--splits gsm8k,math] [--limit N] [--threshold 0.5]
                             [--scores precomputed.jsonl] [--out DIR] [--overwrite]
    rl-prm eval prmbench     --judge PATH [--k 4] [--limit N] [--threshold 0.5] [--scores ...] [--out DIR]
    rl-prm eval math         --policy PATH [--judge PATH] --datasets math500,gsm8k --n 4 [--limit L]
                             [--temperature 0.7] [--max-tokens 1024] [--search] [--samples FILE] [--scores FILE]

Every run writes into one directory (``--out``, default runs/eval/<benchmark>-<timestamp>):
results.json, table.txt, scores.jsonl (the judge's per-step, per-sample P(Yes) in the format
``--scores`` reads back), plus f1_vs_k.png (processbench, several K) or samples.jsonl / search.jsonl
(math). A directory that already holds files is refused unless ``--overwrite`` (which first deletes
the result files there), so two runs are never mixed. Files are written atomically.

Several K (processbench/prmbench): the judge is run ONCE with K = max(K) and each k is evaluated
with the mean of the first k samples per step (the same estimator as a separate K=k run with the
same sample order). The in-process functions ``run_processbench / run_prmbench / run_math`` take a
score source (live scorer or precomputed file) and engines, so tests reuse session engines.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
from pathlib import Path
from typing import Any, Sequence

from rl_prm import argtypes
from rl_prm.registry import Registry
from rl_prm.vllm_engine import make_llm, shutdown_llm

# What only running the command needs is imported inside the functions: rl_prm.cli imports this module
# to build the parser, so `--help` and a bad argument answer without it (start-up time of the CLI).

EVALS: Registry = Registry("eval benchmark")


def _names(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return "-" if math.isnan(x) else f"{x:.1f}"
    return str(x)


def _console():
    from rich.console import Console  # rich (tens of ms): not for `--help` (module comment)

    return Console(record=True, width=200)


def _finish(console, out: Path, results: dict) -> None:
    from rl_prm.eval.io import atomic_write_text, write_json  # not for `--help` (module comment)

    write_json(out / "results.json", results)
    atomic_write_text(out / "table.txt", console.export_text())
    print(f"results: {out / 'results.json'}", file=sys.stderr)


def _judge_source(judge: str | None, scores: str | None, k: int, args: Any = None):
    # tqdm, the scorer (rl_prm.eval.scoring): not for `--help` (module comment)
    from rl_prm.eval.scoring import PrecomputedSource, ScorerSource, make_scorer

    if scores:
        return PrecomputedSource(scores)
    if not judge:
        raise SystemExit("rl-prm eval: give --judge PATH (a judge model) or --scores FILE (precomputed scores)")
    extra = {}
    if args is not None:
        extra = dict(temperature=args.judge_temperature, max_critique_tokens=args.max_critique_tokens, seed=args.seed)
    return ScorerSource(make_scorer(judge, k, **extra), name=judge)


def _judge_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--judge", help="judge model directory (R-PRM or the tiny judge)")
    p.add_argument("--scores", help="precomputed scores JSONL instead of a judge (format: rl_prm.eval.io.read_scores)")
    p.add_argument("--judge-temperature", type=argtypes.nonneg_float, default=0.95)
    p.add_argument("--max-critique-tokens", type=argtypes.positive_int, default=1024)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=argtypes.positive_int, default=32, help="items per scorer call")
    p.add_argument("--out", help="output directory (default runs/eval/<benchmark>-<timestamp>)")
    p.add_argument("--overwrite", action="store_true", help="replace the results in a non-empty --out")
    p.add_argument("--no-progress", action="store_true")


# ---------------------------------------------------------------------------------------- processbench


def run_processbench(source, *, ks: Sequence[int] = (1,), splits: Sequence[str] | None = None,
                     limit: int | None = None, threshold: float = 0.5, out: str | Path | None = None,
                     overwrite: bool = False, progress: bool = True, batch_size: int = 32,
                     meta: dict | None = None) -> dict:
    # tqdm, the scorer, matplotlib when plotting (rl_prm.eval.processbench): not for `--help` (module comment)
    from rl_prm.data import PROCESSBENCH_SPLITS
    from rl_prm.eval.io import prepare_out_dir, write_jsonl
    from rl_prm.eval.processbench import SWEEP, plot_f1_vs_k, processbench_items, processbench_results, score_processbench
    from rl_prm.eval.scoring import max_samples

    splits = list(splits or PROCESSBENCH_SPLITS)
    bad = [s for s in splits if s not in PROCESSBENCH_SPLITS]
    if bad:
        raise ValueError(f"unknown ProcessBench split(s) {bad}; known: {', '.join(PROCESSBENCH_SPLITS)}")
    outdir = prepare_out_dir(out, "processbench", overwrite)
    items = processbench_items(splits, limit)
    records = score_processbench(source, items, batch_size=batch_size, progress=progress)
    write_jsonl(outdir / "scores.jsonl", [{"id": it["id"], "split": it["split"], **records[it["id"]]} for it in items])
    have = max_samples(records)
    if have is not None and max(ks) > have:
        raise ValueError(f"K={max(ks)} asked but the scores hold only {have} samples per step")
    eval_ks: list[int | None] = list(ks) if have is not None else [None]
    res = processbench_results(items, records, ks=eval_ks, threshold=threshold, thresholds=SWEEP)
    res.update({"benchmark": "processbench", "source": getattr(source, "name", "?"), "limit": limit, **(meta or {})})

    con = _console()
    from rich.table import Table  # rich: as in _console

    t = Table(title=f"ProcessBench (threshold {threshold}; {res['scored_steps']})")
    t.add_column("K")
    for s in res["splits"]:
        t.add_column(f"{s} err/cor/F1", justify="right")
    t.add_column("avg F1", justify="right")
    for k, r in res["per_k"].items():
        t.add_row(k, *[f"{_fmt(r['splits'][s]['error_acc'])} / {_fmt(r['splits'][s]['correct_acc'])} / "
                       f"{_fmt(r['splits'][s]['f1'])}" for s in res["splits"]], _fmt(r["avg_f1"]))
    con.print(t)
    kk = list(res["per_k"])[-1]
    sw = Table(title=f"threshold sweep (K={kk}): F1")
    sw.add_column("threshold")
    for s in res["splits"]:
        sw.add_column(s, justify="right")
    sw.add_column("avg", justify="right")
    for j, row in enumerate(res["per_k"][kk]["avg_sweep"]):
        sw.add_row(f"{row['threshold']:.1f}", *[_fmt(res["per_k"][kk]["sweep"][s][j]["f1"]) for s in res["splits"]],
                   _fmt(row["avg_f1"]))
    con.print(sw)
    if len([k for k in res["per_k"] if k != "stored"]) > 1:
        plot_f1_vs_k(res, outdir / "f1_vs_k.png")
        res["plot"] = str(outdir / "f1_vs_k.png")
    res["out_dir"] = str(outdir)
    _finish(con, outdir, res)
    return res


def _add_processbench(p: argparse.ArgumentParser) -> None:
    _judge_args(p)
    p.add_argument("--k", type=argtypes.positive_ints, default=[4], help="critiques per step, e.g. 1,2,4 (scored once with the max)")
    p.add_argument("--splits", type=_names, default=None, help="gsm8k,math,olympiadbench,omnimath (default: all)")
    p.add_argument("--limit", type=argtypes.positive_int, default=None, help="first N items of each split")
    p.add_argument("--threshold", type=argtypes.probability, default=0.5)


@EVALS.register("processbench")
def _cmd_processbench(args: argparse.Namespace) -> int:
    source = _judge_source(args.judge, args.scores, max(args.k), args)
    run_processbench(source, ks=args.k, splits=args.splits, limit=args.limit, threshold=args.threshold,
                     out=args.out, overwrite=args.overwrite, progress=not args.no_progress,
                     batch_size=args.batch_size, meta={"judge": args.judge, "scores_file": args.scores})
    return 0


# ---------------------------------------------------------------------------------------- prmbench


def run_prmbench(source, *, k: int | None = None, split: str | None = None, limit: int | None = None,
                 threshold: float = 0.5, out: str | Path | None = None, overwrite: bool = False,
                 progress: bool = True, batch_size: int = 32, meta: dict | None = None) -> dict:
    # rich, tqdm, the scorer: not for `--help` (module comment)
    from rich.table import Table

    from rl_prm.eval.io import prepare_out_dir, write_jsonl
    from rl_prm.eval.prmbench import prmbench_items, prmbench_results, score_prmbench
    from rl_prm.eval.scoring import max_samples

    outdir = prepare_out_dir(out, "prmbench", overwrite)
    items = prmbench_items(split, limit)
    records = score_prmbench(source, items, batch_size=batch_size, progress=progress)
    write_jsonl(outdir / "scores.jsonl", [{"id": it["id"], **records[it["id"]]} for it in items])
    if k is not None and (max_samples(records) or 0) < k:
        k = None  # fewer stored samples than asked (or none): use the stored step scores
    res = prmbench_results(items, records, threshold=threshold, k=k)
    res.update({"benchmark": "prmbench", "source": getattr(source, "name", "?"), "limit": limit, **(meta or {})})
    con = _console()
    t = Table(title=f"PRMBench (threshold {threshold}; positive = correct step; PRMScore = (F1 + neg F1)/2, recalled)")
    cols = ["precision", "recall", "f1", "negative_precision", "negative_recall", "negative_f1", "prmscore"]
    t.add_column("class")
    for c in cols:
        t.add_column(c.replace("negative_", "neg "), justify="right")
    t.add_column("steps (+/-)", justify="right")
    rows = list(res["classes"].items()) + [("overall", res["overall"]), ("overall+correct", res["overall_with_correct"])]
    for name, m in rows:
        t.add_row(name, *[_fmt(m[c]) for c in cols], f"{m['tp'] + m['fn']}/{m['tn'] + m['fp']}")
    con.print(t)
    con.print(f"items {res['n_items']}, steps {res['n_steps']}, unscored steps {res['unscored_steps']} "
              f"(counted as predicted correct), scorer statuses {res['status_counts']}")
    res["out_dir"] = str(outdir)
    _finish(con, outdir, res)
    return res


def _add_prmbench(p: argparse.ArgumentParser) -> None:
    _judge_args(p)
    p.add_argument("--k", type=argtypes.positive_int, default=4, help="critiques per step")
    p.add_argument("--split", default=None, help="PRMBench file stem or class (default: all classified files)")
    p.add_argument("--limit", type=argtypes.positive_int, default=None, help="first N items of each class")
    p.add_argument("--threshold", type=argtypes.probability, default=0.5)


@EVALS.register("prmbench")
def _cmd_prmbench(args: argparse.Namespace) -> int:
    source = _judge_source(args.judge, args.scores, args.k, args)
    run_prmbench(source, k=args.k, split=args.split, limit=args.limit, threshold=args.threshold, out=args.out,
                 overwrite=args.overwrite, progress=not args.no_progress, batch_size=args.batch_size,
                 meta={"judge": args.judge, "scores_file": args.scores})
    return 0


# ---------------------------------------------------------------------------------------- math


def run_math(*, datasets: Sequence[str], n: int, policy_llm=None, policy: str | None = None, source=None,
             judge: str | None = None, judge_k: int = 4, limit: int | None = None, temperature: float = 0.7,
             top_p: float = 1.0, max_tokens: int = 1024, seed: int = 0, search: bool = False,
             search_n: int | None = None, max_steps: int = 12, max_step_tokens: int = 256,
             samples_file: str | None = None, out: str | Path | None = None, overwrite: bool = False,
             progress: bool = True, batch_size: int = 32, kv_cache_gib: float = 1, max_model_len: int = 4096,
             judge_args: dict | None = None) -> dict:
    """Sample (or read ``samples_file``), grade, judge-score and search. Engines are made here only
    when not given: the policy engine is shut down before the judge starts unless ``search`` needs both."""
    # rich, tqdm, the scorer, math_verify (seconds, reward_fns): not for `--help` (module comment)
    from rich.table import Table

    from rl_prm.eval.io import prepare_out_dir, read_samples, write_jsonl
    from rl_prm.eval.math_eval import grade_samples, math_items, math_results, sample_solutions, score_samples
    from rl_prm.eval.scoring import ScorerSource, make_scorer
    from rl_prm.eval.search import grade_search, guided_search

    from reward_fns.math_verify_reward import get_stats, reset_stats

    outdir = prepare_out_dir(out, "math", overwrite)
    items = math_items(datasets, limit)
    reset_stats()
    owned: list[Any] = []
    if samples_file:
        rows = read_samples(samples_file)
        missing = [it["id"] for it in items if str(it["id"]) not in rows]
        if missing:
            raise KeyError(f"{samples_file}: no samples for {len(missing)} problems (first: {missing[:3]})")
        samples = [{"id": it["id"], "responses": list(rows[str(it["id"])]["responses"])[:n]} for it in items]
        if any(len(s["responses"]) < n for s in samples):
            raise ValueError(f"{samples_file}: fewer than n={n} responses for some problems")
    else:
        if policy_llm is None:
            if not policy:
                raise SystemExit("rl-prm eval math: give --policy PATH or --samples FILE")
            policy_llm = make_llm(policy, max_model_len=max_model_len, seed=seed, kv_cache_gib=kv_cache_gib)
            owned.append(policy_llm)
        samples = sample_solutions(policy_llm, items, n, temperature=temperature, top_p=top_p,
                                   max_tokens=max_tokens, seed=seed, progress=progress)
    graded = grade_samples(items, samples, progress=progress)
    if owned and not search:
        shutdown_llm(owned.pop())
        policy_llm = None
    if source is None and judge:
        source = ScorerSource(make_scorer(judge, judge_k, kv_cache_gib=kv_cache_gib, **(judge_args or {})), name=judge)
    searched = None
    if source is not None:
        problems = {it["id"]: it["problem"] for it in items}
        graded, recs = score_samples(source, graded, problems, batch_size=batch_size, progress=progress)
        write_jsonl(outdir / "scores.jsonl", [{"id": key, **r} for key, r in recs.items()])
        if search:
            if policy_llm is None:
                raise SystemExit("rl-prm eval math --search needs a policy engine (not --samples)")
            searched = grade_search(items, guided_search(policy_llm, source, items, n=search_n or n,
                                                         max_steps=max_steps, max_step_tokens=max_step_tokens,
                                                         temperature=temperature, top_p=top_p, seed=seed,
                                                         progress=progress))
            write_jsonl(outdir / "search.jsonl", searched)
    write_jsonl(outdir / "samples.jsonl", graded)
    for llm in owned:
        shutdown_llm(llm)
    res = math_results(items, graded, searched)
    res.update({"benchmark": "math", "policy": policy, "judge": judge or getattr(source, "name", None),
                "limit": limit, "temperature": temperature, "max_tokens": max_tokens, "seed": seed,
                "samples_file": samples_file})
    res["grader_stats"] = get_stats()
    con = _console()
    cols = list(dict.fromkeys(c for d in res["datasets"].values() for c in d if c != "n_problems"))
    t = Table(title=f"math (n={res['n']} samples/problem, temperature {temperature}; percent)")
    t.add_column("dataset")
    t.add_column("problems", justify="right")
    for c in cols:
        t.add_column(c, justify="right")
    for name, d in res["datasets"].items():
        t.add_row(name, str(d["n_problems"]), *[_fmt(d.get(c, float("nan"))) for c in cols])
    con.print(t)
    res["out_dir"] = str(outdir)
    _finish(con, outdir, res)
    return res


def _add_math(p: argparse.ArgumentParser) -> None:
    p.add_argument("--policy", help="policy model directory")
    p.add_argument("--samples", help="precomputed samples JSONL ({'id', 'responses': [...]} per problem) instead of --policy")
    p.add_argument("--judge", help="judge model directory: adds Best-of-N (min/last step) and --search")
    p.add_argument("--scores", help="precomputed judge scores JSONL for the samples (ids '<problem id>#<j>')")
    p.add_argument("--judge-k", type=argtypes.positive_int, default=4, help="critiques per step for the judge")
    p.add_argument("--datasets", type=_names, default=["math500"],
                   help="comma list of math500,gsm8k,aime24,amc23,minerva,olympiadbench (also math)")
    p.add_argument("--n", type=argtypes.positive_int, default=4, help="samples per problem")
    p.add_argument("--limit", type=argtypes.positive_int, default=None, help="first L problems of each dataset")
    p.add_argument("--temperature", type=argtypes.nonneg_float, default=0.7)
    p.add_argument("--top-p", type=argtypes.top_p, default=1.0)
    p.add_argument("--max-tokens", type=argtypes.positive_int, default=1024)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--search", action="store_true", help="also run PRM-guided greedy step search (needs --judge)")
    p.add_argument("--search-n", type=argtypes.positive_int, default=None, help="candidates per step (default --n)")
    p.add_argument("--max-steps", type=argtypes.positive_int, default=12)
    p.add_argument("--max-step-tokens", type=argtypes.positive_int, default=256)
    p.add_argument("--max-model-len", type=argtypes.positive_int, default=4096)
    p.add_argument("--batch-size", type=argtypes.positive_int, default=32)
    p.add_argument("--out", help="output directory (default runs/eval/math-<timestamp>)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-progress", action="store_true")


@EVALS.register("math")
def _cmd_math(args: argparse.Namespace) -> int:
    from rl_prm.eval.scoring import PrecomputedSource  # tqdm, the scorer: not for `--help` (module comment)

    if args.search and not args.judge:
        raise SystemExit("rl-prm eval math: --search needs --judge")
    source = PrecomputedSource(args.scores) if args.scores else None
    run_math(datasets=args.datasets, n=args.n, policy=args.policy, source=source, judge=None if source else args.judge,
             judge_k=args.judge_k, limit=args.limit, temperature=args.temperature, top_p=args.top_p,
             max_tokens=args.max_tokens, seed=args.seed, search=args.search, search_n=args.search_n,
             max_steps=args.max_steps, max_step_tokens=args.max_step_tokens, samples_file=args.samples,
             out=args.out, overwrite=args.overwrite, progress=not args.no_progress, batch_size=args.batch_size,
             max_model_len=args.max_model_len)
    return 0


# ---------------------------------------------------------------------------------------- CLI


_ADDERS = {"processbench": _add_processbench, "prmbench": _add_prmbench, "math": _add_math}
_HELP = {"processbench": "judge: ProcessBench first-error F1 (per split, threshold sweep, F1 vs K)",
         "prmbench": "judge: PRMBench step-level precision/recall/F1 and PRMScore",
         "math": "policy: pass@k, maj@k, PRM Best-of-N and guided search on math benchmarks"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for name in EVALS.names():
        _ADDERS[name](sub.add_parser(name, help=_HELP[name], description=_HELP[name]))


def run(args: argparse.Namespace) -> int:
    """The output dir is made first (engine logs of a quiet session go to OUT/logs); a bad file, value or
    directory exits 2 with one line (files name their line: rl_prm.eval.io), leaving no empty OUT behind."""
    # not for `--help` (module comment)
    from rl_prm import logs
    from rl_prm.eval.io import prepare_out_dir

    out, existed = None, args.out is not None and Path(args.out).exists()
    try:
        out = prepare_out_dir(args.out, args.benchmark, args.overwrite)
        args.out = str(out)
        logs.set_dir(out / "logs")
        return EVALS.get(args.benchmark)(args)
    except (OSError, KeyError, ValueError) as e:
        print(f"rl-prm eval {args.benchmark}: {e}", file=sys.stderr)
        if out is not None and not existed and not any(p.is_file() for p in out.rglob("*")):
            shutil.rmtree(out, ignore_errors=True)
        return 2
