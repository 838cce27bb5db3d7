"""`rl-prm world`: run the RL comparison on the miniature R-PRM world (report + PNGs); `rl-prm world build`
rebuilds the world's models (rl_prm.commands.world_build)."""

from __future__ import annotations

import argparse

SUBCOMMANDS = {"build": ("rl_prm.commands.world_build",
                         "build the world's policy and judge, evaluate the judge, write the shipped layout")}


def add_arguments(p: argparse.ArgumentParser) -> None:
    # not when `rl-prm world build` only reads SUBCOMMANDS here (tens of ms)
    from rl_prm.world.__main__ import add_arguments as world_arguments

    world_arguments(p)


def run(args: argparse.Namespace) -> int:
    from rl_prm.world.__main__ import run as world_run  # as in add_arguments

    return world_run(args)
