"""The `rl-prm` console script: help lists every subcommand; bad input fails clearly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rl_prm.cli import COMMANDS, main

BIN = Path(sys.executable).with_name("rl-prm")


def test_help_lists_subcommands_via_console_script():
    out = subprocess.run([str(BIN), "--help"], capture_output=True, text=True, check=True).stdout
    for name in ("train", "score", "eval", "bench"):
        assert f"  {name} " in out


def test_python_dash_m_matches_console_script():
    a = subprocess.run([sys.executable, "-m", "rl_prm", "--help"], capture_output=True, text=True, check=True).stdout
    b = subprocess.run([str(BIN), "--help"], capture_output=True, text=True, check=True).stdout
    assert a.replace("__main__.py", "rl-prm") == b


def test_every_subcommand_module_has_the_command_interface():
    import importlib

    for name, (module, _) in COMMANDS.items():
        mod = importlib.import_module(module)
        assert callable(mod.add_arguments) and callable(mod.run), name


def test_unknown_subcommand_is_named(capsys):
    with pytest.raises(SystemExit) as e:
        main(["trian"])
    assert e.value.code != 0 and "trian" in capsys.readouterr().err


def test_unknown_benchmark_is_named():
    with pytest.raises(SystemExit, match="nope"):
        main(["bench", "nope"])
