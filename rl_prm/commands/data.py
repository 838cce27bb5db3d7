"""`rl-prm data {list,prep,ship,verify}`: shipped benchmarks and verl parquet files.

    rl-prm data list                                   # benchmarks, splits, row counts
    rl-prm data prep --out DIR [--datasets gsm8k,math] [--limit N]
    rl-prm data ship --from ../shared/data             # regenerate rl_prm/data/benchmarks
    rl-prm data verify                                 # sha256 of shipped files vs MANIFEST.json

A bad invocation (unknown dataset, --limit below 1, an --out that is a file or cannot be made) exits 2
with one line naming it, before anything is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rl_prm import argtypes

# What only running the command needs is imported inside the functions: rl_prm.cli imports this module
# to build the parser, so `--help` and a bad argument answer without it (start-up time of the CLI).


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("list", help="print shipped benchmarks, splits and row counts")
    pp = sub.add_parser("prep", help="write verl parquet files ({dataset}_{split}.parquet)")
    pp.add_argument("--out", required=True, help="output folder")
    pp.add_argument("--datasets", default="gsm8k,math",
                    help="comma list (default gsm8k,math; also math_full, aime24, amc23, minerva_math, olympiadbench)")
    pp.add_argument("--limit", type=argtypes.positive_int, default=None,
                    help="at most N rows per file (for smoke tests)")
    ps = sub.add_parser("ship", help="regenerate the shipped benchmark files from the shared data folder")
    ps.add_argument("--from", dest="src", default="../shared/data", help="shared data folder (default ../shared/data)")
    ps.add_argument("--to", dest="dst", default=None, help="destination (default: the package's benchmarks/ folder)")
    sub.add_parser("verify", help="check shipped files against MANIFEST.json sha256")


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        from rl_prm.data import list_benchmarks, load_benchmark  # not for `--help` (module comment)

        total = 0
        print(f"{'benchmark':<16} {'split':<46} {'rows':>6}")
        for name, splits in list_benchmarks().items():
            for split in splits:
                n = len(load_benchmark(name, split))
                total += n
                print(f"{name:<16} {split:<46} {n:>6}")
        print(f"{'total':<16} {'':<46} {total:>6}")
        return 0
    if args.action == "prep":
        from rl_prm.data.prep import prep  # pyarrow (a fifth of a second): not for `--help` (module comment)

        datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
        out = Path(args.out)
        blocked = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
        problem = f"--out {args.out}: {blocked} is a file, not a folder" if blocked is not None else None
        if problem is None and not datasets:
            problem = "--datasets is empty"
        if problem is None:
            try:
                prep(args.out, datasets, limit=args.limit)
            except (OSError, ValueError) as e:
                problem = str(e)
        if problem is not None:
            print(f"rl-prm data prep: {problem}", file=sys.stderr)
            return 2
        return 0
    if args.action == "ship":
        from rl_prm.data.ship import BENCH_DIR, ship  # not for `--help` (module comment)

        ship(args.src, args.dst or BENCH_DIR)
        return 0
    if args.action == "verify":
        from rl_prm.data.ship import verify_shipped  # not for `--help` (module comment)

        problems = verify_shipped()
        for p in problems:
            print(p)
        print("ok" if not problems else f"{len(problems)} problem(s)")
        return 1 if problems else 0
    raise SystemExit(f"unknown action {args.action!r}")
