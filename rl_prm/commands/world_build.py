"""`rl-prm world build [--out DIR] [--fresh]`: build the miniature world's policy and R-PRM judge, evaluate
the judge, and write the shipped layout (rl_prm.world.release; the layout: rl_prm.world.ship).

    rl-prm world build                 # refresh the package's shipped world (then commit rl_prm/world/shipped/)
    rl-prm world build --out DIR       # a world elsewhere: RL_PRM_WORLD=DIR makes runs load it
    rl-prm world build --fresh         # from scratch: an empty temporary cache, no cached build reused
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rl_prm import argtypes

# What only running the command needs is imported inside the functions: rl_prm.cli imports this module
# to build the parser, so `--help` and a bad argument answer without it (start-up time of the CLI).


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=None,
                   help="directory to write (default: the package's shipped world, rl_prm/world/shipped/; a previous "
                        "world build there is replaced)")
    p.add_argument("--fresh", action="store_true",
                   help="build from scratch in an empty temporary cache (deleted after; the same as RL_PRM_CACHE=<an "
                        "empty dir>) instead of reusing the builds cached in $RL_PRM_CACHE/tiny/world/ (default "
                        "~/.cache/rl_prm): needed after a change of generator or teacher code that no config or "
                        "version constant names (a build takes tens of minutes on a CPU: docs/world.md)")
    p.add_argument("--recipe", default=None,
                   help="recipe whose reward.prm max_critique_tokens and dtype the judge evaluation uses (default "
                        "recipes/tiny_cpu.yaml, the world's)")
    p.add_argument("--judge-eval-n", type=argtypes.positive_int, default=100,
                   help="mini-ProcessBench items of the judge evaluation (default 100)")


def run(args: argparse.Namespace) -> int:
    # torch (rl_prm.config, the world's builders): not for `--help` (module comment)
    from rl_prm.config import load_recipe
    from rl_prm.world.release import DEFAULT_RECIPE, build_world, check_out
    from rl_prm.world.ship import SHIPPED_DIR

    out = Path(args.out) if args.out else SHIPPED_DIR
    recipe = Path(args.recipe) if args.recipe else DEFAULT_RECIPE
    try:  # what can be checked before a half-hour build
        check_out(out)
        load_recipe(recipe)
    except ValueError as e:
        print(f"rl-prm world build: {e}", file=sys.stderr)
        return 2
    build_world(out, fresh=args.fresh, recipe=recipe, judge_eval_n=args.judge_eval_n)
    return 0
