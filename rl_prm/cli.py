"""`rl-prm` command line (same as `python -m rl_prm`).

Each subcommand lives in its own module, imported only when that subcommand runs, so
`rl-prm --help` is instant. A command module exposes:
    add_arguments(parser: argparse.ArgumentParser) -> None
    run(args: argparse.Namespace) -> int | None
and may name subcommands of its own, `SUBCOMMANDS = {name: (module, one-line help)}` (modules of the same
interface), which run when their name is the command's first argument (`rl-prm world build`); the
command's own arguments stay free-form (`rl-prm world --seeds 0 1 2 key=value`).

Console: a command runs inside rl_prm.logs.session, which sends vLLM / Ray / transformers output to
log files and prints where they are; `--verbose` anywhere on the line (or RL_PRM_VERBOSE=1) keeps
it on the console.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Add a subcommand = add a line here + a module.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("rl_prm.commands.train", "train a policy from a recipe (GRPO/PPO with R-PRM rewards)"),
    "score": ("rl_prm.commands.score", "score solution steps with an R-PRM judge (JSONL in, JSONL out)"),
    "eval": ("rl_prm.commands.eval", "evaluate a judge (ProcessBench, PRMBench) or a policy (math benchmarks)"),
    "bench": ("rl_prm.commands.bench", "run a benchmark script (credit, reward, prm, train, faults, verl)"),
    "data": ("rl_prm.commands.data", "list shipped benchmarks or write verl parquet files (GSM8K, MATH)"),
    "tiny": ("rl_prm.commands.tiny", "build the tiny offline policy and judge models and print their paths"),
    "models": ("rl_prm.commands.models", "fetch the models a recipe names into the HF cache (pull [--dry-run])"),
    "plot": ("rl_prm.commands.plot", "render the key panels of a local run to PNG files"),
    "world": ("rl_prm.commands.world", "compare R-PRM min-form RL (answer-gated and not) with the oracle judge and "
                                       "VR-only on the miniature world (`world build`: rebuild its models)"),
}


def _top_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rl-prm",
        description="RL for math reasoning with a frozen generative process reward model (R-PRM).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="subcommands:\n"
        + "\n".join(f"  {name:<8} {help_}" for name, (_, help_) in COMMANDS.items())
        + "\n\nrun `rl-prm SUBCOMMAND --help` for its options.",
    )
    p.add_argument("command", choices=list(COMMANDS), metavar="SUBCOMMAND", help="one of: " + ", ".join(COMMANDS))
    p.add_argument("--version", action="version", version=f"rl-prm {__import__('rl_prm').__version__}")
    p.add_argument("--verbose", action="store_true",
                   help="print engine / library output (vLLM, Ray, transformers) on the console instead of log files")
    return p


def subcommand_epilog(name: str, subs: dict[str, tuple[str, str]]) -> str | None:
    """The help's list of a command's own subcommands (None: it has none)."""
    if not subs:
        return None
    return "subcommands:\n" + "\n".join(f"  rl-prm {name} {sub:<6} {help_}" for sub, (_, help_) in subs.items()) + \
        f"\n\nrun `rl-prm {name} SUBCOMMAND --help` for its options."


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv
    argv = [a for a in argv if a != "--verbose"]
    top = _top_parser()
    if not argv or argv[0] in ("-h", "--help") or argv[0].startswith("--version"):
        top.parse_args(argv or ["--help"])
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        top.error(f"unknown subcommand {name!r} (choose from {', '.join(COMMANDS)})")
    module_name, help_ = COMMANDS[name]
    module = importlib.import_module(module_name)
    subs = getattr(module, "SUBCOMMANDS", {})
    if rest and rest[0] in subs:
        (module_name, help_), name, rest = subs[rest[0]], f"{name} {rest[0]}", rest[1:]
        module, subs = importlib.import_module(module_name), {}
    parser = argparse.ArgumentParser(
        prog=f"rl-prm {name}", description=help_, epilog=subcommand_epilog(name, subs),
        formatter_class=argparse.RawDescriptionHelpFormatter if subs else argparse.HelpFormatter)
    module.add_arguments(parser)
    parser.add_argument("--verbose", action="store_true", help="engine / library output on the console, not in log files")
    args = parser.parse_args(rest)
    from rl_prm import logs  # logging's handlers (~15 ms): not before `--help` or a bad argument

    with logs.session(name.replace(" ", "-"), verbose_flag=verbose):  # runs/logs/world-build-<time>/
        rc = module.run(args)
    return int(rc or 0)


if __name__ == "__main__":
    raise SystemExit(main())
