"""CLI subcommands: one module each (see rl_prm.cli.COMMANDS)."""
