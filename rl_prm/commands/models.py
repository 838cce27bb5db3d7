"""`rl-prm models pull RECIPE [key=value ...] [--dry-run]`: fetch every model a recipe names.

    rl-prm models pull recipes/grpo_rprm_qwen2.5_math_7b.yaml             # policy + judge into the HF cache
    rl-prm models pull recipes/my.yaml model.judge=org/other --dry-run    # what it would fetch, and how much

The policy, the judge (unless reward.prm.enabled=false) and the reference policy (when set), each
resolved as training resolves it (rl_prm.models): a hub id is downloaded into the standard HF cache
($HF_HOME/hub; HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE honoured), a local dir is checked, the built-in
models (tiny: built on this machine; world: shipped in the package) are never downloaded. On a cluster,
run it on every node (or share HF_HOME) before `rl-prm train`. Exit code 2 when a model cannot be had (one line naming it).
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    pp = sub.add_parser("pull", help="fetch the recipe's policy, judge and reference models into the HF cache")
    pp.add_argument("recipe", help="recipe YAML")
    pp.add_argument("overrides", nargs="*", metavar="key=value",
                    help="override recipe keys, e.g. model.policy=org/name")
    pp.add_argument("--dry-run", action="store_true",
                    help="list what would be fetched (and its size); download nothing")


def _line(kind: str, spec: str, dry_run: bool) -> str:
    """One model: where it went (or would go) and its size."""
    # rl_prm.models (the registry's entry points, the tiny builders: tens of ms): not for `--help`
    from rl_prm.models import BUILT, dir_size, human_size, is_hub_id, plan_hub_model, resolve_model

    if spec in BUILT:
        what = (BUILT.get(spec).__doc__ or "").strip().rstrip(".")
        return (f"model.{kind} {spec}: built-in (shipped in the package or made on this machine, never downloaded), "
                f"nothing to fetch ({what})")
    if not is_hub_id(spec):
        path = resolve_model(spec, kind)
        return f"model.{kind} {spec}: a local dir, nothing to fetch ({human_size(dir_size(path))})"
    if dry_run:
        plan = plan_hub_model(spec, kind)
        where = f"cached at {plan['cached']}" if plan["cached"] else "not cached"
        return f"model.{kind} {spec}: would fetch into the HF cache; {where}; {plan['note']}"
    path = resolve_model(spec, kind)
    return f"model.{kind} {spec}: {path} ({human_size(dir_size(path))})"


def run(args: argparse.Namespace) -> int:
    # torch (rl_prm.config, seconds), rl_prm.models (tens of ms): not for `--help`
    from rl_prm.config import load_recipe
    from rl_prm.models import hub_cache, hub_endpoint, hub_offline, recipe_models

    try:
        cfg = load_recipe(args.recipe, list(args.overrides))
    except ValueError as e:
        print(f"rl-prm models: {e}", file=sys.stderr)
        return 2
    mode = "offline (HF_HUB_OFFLINE=1)" if hub_offline() else f"from {hub_endpoint()}"
    print(f"rl-prm models pull{' --dry-run' if args.dry_run else ''}: {args.recipe}, HF cache {hub_cache()}, {mode}")
    if not cfg.reward.prm.enabled:
        print("model.judge: skipped (reward.prm.enabled=false)")
    for kind, spec in recipe_models(cfg):
        try:
            print(_line(kind, spec, args.dry_run), flush=True)
        except ValueError as e:
            print(f"rl-prm models: {e}", file=sys.stderr)
            return 2
    return 0
