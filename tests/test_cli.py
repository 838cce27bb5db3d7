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
        for sub, (sub_module, _) in getattr(mod, "SUBCOMMANDS", {}).items():
            sm = importlib.import_module(sub_module)
            assert callable(sm.add_arguments) and callable(sm.run), f"{name} {sub}"


def test_world_build_is_a_subcommand_and_world_keeps_its_free_arguments(tmp_path, capsys, monkeypatch):
    """`rl-prm world build` runs the build command; `rl-prm world --seeds ... key=value` is still the
    comparison (a bad key stops it before anything is loaded); `--help` lists the subcommand."""
    import rl_prm.world.release as release

    with pytest.raises(SystemExit) as e:
        main(["world", "--help"])
    assert e.value.code == 0 and "rl-prm world build" in capsys.readouterr().out
    assert main(["world", "--out", str(tmp_path / "w"), "--seeds", "0", "1", "trainer.no_such_key=1"]) == 2
    assert "unknown key 'trainer.no_such_key'" in capsys.readouterr().err
    seen = {}
    monkeypatch.setattr(release, "build_world", lambda out, **kw: seen.update(out=out, **kw))
    assert main(["world", "build", "--out", str(tmp_path / "b"), "--fresh"]) == 0
    assert seen["out"] == tmp_path / "b" and seen["fresh"] is True
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    assert main(["world", "build", "--out", str(tmp_path / "taken")]) == 2  # never overwrites a dir that is not a world
    assert "not a world build" in capsys.readouterr().err


def test_unknown_subcommand_is_named(capsys):
    with pytest.raises(SystemExit) as e:
        main(["trian"])
    assert e.value.code != 0 and "trian" in capsys.readouterr().err


def test_unknown_benchmark_is_named():
    with pytest.raises(SystemExit, match="nope"):
        main(["bench", "nope"])
