"""`rl-prm world`: build (or reuse) the miniature R-PRM world and run its RL comparison (report + PNGs)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from rl_prm.world.__main__ import add_arguments as world_arguments

    world_arguments(p)


def run(args: argparse.Namespace) -> int:
    from rl_prm.world.__main__ import run as world_run

    return world_run(args)
