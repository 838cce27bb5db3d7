"""`rl-prm tiny`: build (or reuse) the tiny offline policy and judge and print their directories."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("which", nargs="?", choices=["policy", "judge", "all"], default="all")


def run(args: argparse.Namespace) -> int:
    from rl_prm.tiny import judge_path, policy_path  # the builders (tens of ms, torch to build): not for `--help`

    if args.which in ("policy", "all"):
        print(f"policy {policy_path()}")
    if args.which in ("judge", "all"):
        print(f"judge  {judge_path()}")
    return 0
