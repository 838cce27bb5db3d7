"""`rl-prm train RECIPE.yaml [key=value ...]`: train a policy from a recipe.

    rl-prm train recipes/tiny_cpu.yaml                          # the embedded default (CPU, minutes)
    rl-prm train recipes/tiny_cpu.yaml trainer.total_steps=4 run.name=smoke
    rl-prm train recipes/my.yaml trainer.backend=verl           # multi-GPU via verl

Overrides use the recipe's dotted keys (rl_prm.config; `rl-prm train --help-config` lists them); a
bad key or value fails before anything starts, with one line naming it (exit code 2). `trainer.backend` picks the backend (rl_prm.backends.BACKENDS). A killed run restarted
with the same recipe/run.name resumes from its newest checkpoint (trainer.resume=true).
"""

from __future__ import annotations

import argparse
import sys
import traceback


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", nargs="?", help="recipe YAML (see recipes/; `--help-config` lists every key)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="override recipe keys, e.g. rollout.n=8")
    p.add_argument("--print-config", action="store_true", help="print the resolved recipe and exit")
    p.add_argument("--help-config", action="store_true",
                   help="list every recipe key with its type, default, choices and help, and exit")


def run(args: argparse.Namespace) -> int:
    # omegaconf, torch (rl_prm.config): seconds, not for `--help` or a bad argument
    from omegaconf import OmegaConf

    from rl_prm.backends import get_backend
    from rl_prm.config import help_config, load_recipe, run_dir_of
    from rl_prm.models import ModelUnavailable

    if args.help_config:
        print(help_config(), end="")
        return 0
    if not args.recipe:
        print("rl-prm train: a recipe is required (e.g. recipes/tiny_cpu.yaml; --help-config lists every key)",
              file=sys.stderr)
        return 2
    try:
        cfg = load_recipe(args.recipe, list(args.overrides))
        train_fn = get_backend(cfg.trainer.backend)
    except ValueError as e:
        print(f"rl-prm train: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        print(OmegaConf.to_yaml(cfg))
        return 0
    run_dir = run_dir_of(cfg)
    print(f"rl-prm train: backend={cfg.trainer.backend} run_dir={run_dir}", flush=True)
    try:
        result = train_fn(cfg)
    except KeyboardInterrupt:
        print(f"rl-prm train: interrupted; restart the same command to resume from {run_dir / 'checkpoints'}",
              file=sys.stderr)
        return 130
    except ModelUnavailable as e:  # a model that cannot be had (rl_prm.models): one line, as a bad recipe
        print(f"rl-prm train: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # a fatal error: say what and where, exit non-zero
        traceback.print_exc()
        print(f"rl-prm train: FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if result.exit_code:  # verl's trainer failed: its output said why
        return result.exit_code
    print(f"rl-prm train: done in {result.wall_s:.0f}s", flush=True)
    print(f"  run dir:     {result.run_dir}")
    if result.checkpoint:
        print(f"  checkpoint:  {result.checkpoint}")
    if result.run_id:
        print(f"  W&B run id:  {result.run_id}  (offline files under {run_dir / 'wandb'}; `wandb sync` them)")
    print(f"  metrics:     {run_dir / 'metrics.jsonl'}   plots: rl-prm plot {run_dir}")
    return 0
