"""`rl-prm bench NAME [args]`: benchmark scripts that print ratios measured side by side in one run.

Each benchmark is a module rl_prm.bench.<NAME> exposing `main(argv: list[str]) -> int | None`.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil

import rl_prm.bench


def _names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(rl_prm.bench.__path__) if not m.name.startswith("_"))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", help="benchmark to run; one of: " + ", ".join(_names()))
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the benchmark (see `rl-prm bench NAME --help`)")


def run(args: argparse.Namespace) -> int:
    if args.name not in _names():
        raise SystemExit(f"rl-prm bench: unknown benchmark {args.name!r}; known: {', '.join(_names())}")
    module = importlib.import_module(f"rl_prm.bench.{args.name}")
    return int(module.main(list(args.args)) or 0)
