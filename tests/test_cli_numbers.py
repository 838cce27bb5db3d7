"""Every numeric flag of the command line refuses a bad number while parsing (exit 2, argparse's
one-line error naming the flag), before a model is built or an engine starts."""

from __future__ import annotations

import argparse
import importlib

import pytest

from rl_prm import argtypes
from rl_prm.cli import COMMANDS, main
from rl_prm.commands.bench import _names as bench_names

# value type -> (values refused, values accepted)
CASES = {
    argtypes.positive_int: (["0", "-3", "1.5", "x"], ["1", "7"]),
    argtypes.nonneg_int: (["-1", "2.0", "x"], ["0", "3"]),
    argtypes.nonneg_float: (["-0.1", "nan", "inf", "x"], ["0", "0.6"]),
    argtypes.probability: (["-0.01", "1.5", "nan", "x"], ["0", "0.5", "1"]),
    argtypes.top_p: (["0", "1.01", "x"], ["0.5", "1"]),
    argtypes.margin: (["-0.1", "0.6"], ["0", "0.25", "0.5"]),
    argtypes.positive_ints: (["0", "1,x", "2,-1", ","], ["4", "1,2,4"]),
}


def test_value_types():
    for fn, (bad, good) in CASES.items():
        for s in bad:
            with pytest.raises(argparse.ArgumentTypeError, match=repr(s)):
                fn(s)
        for s in good:
            want = sorted({int(x) for x in s.split(",")}) if fn is argtypes.positive_ints else type(fn(s))(s)
            assert fn(s) == want
    assert argtypes.positive_ints("4,1,2,1") == [1, 2, 4]


def _parsers() -> list[tuple[list[str], argparse.ArgumentParser]]:
    """(argv prefix, parser) of every subcommand and every benchmark (bench parsers are built inside
    their main(): captured by patching parse_args)."""
    out = []
    for name, (module_name, _) in COMMANDS.items():
        if name == "bench":
            continue
        module = importlib.import_module(module_name)
        own = [([name, sub], importlib.import_module(m)) for sub, (m, _) in getattr(module, "SUBCOMMANDS", {}).items()]
        for prefix, mod in [([name], module), *own]:  # a command's own subcommands (rl_prm.cli: `world build`)
            p = argparse.ArgumentParser(prog="rl-prm " + " ".join(prefix))
            mod.add_arguments(p)
            subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
            if subs:
                out += [([*prefix, sub], sp) for sub, sp in subs[0].choices.items()]
            else:
                out.append((prefix, p))
    for b in bench_names():
        seen = []

        def grab(self, args=None, namespace=None, _seen=seen):
            _seen.append(self)
            raise SystemExit(0)

        mp = pytest.MonkeyPatch()
        mp.setattr(argparse.ArgumentParser, "parse_args", grab)
        try:
            importlib.import_module(f"rl_prm.bench.{b}").main([])
        except SystemExit:
            pass
        finally:
            mp.undo()
        assert seen, f"bench {b}: main() built no parser"
        out.append((["bench", b], seen[0]))
    return out


def _numeric_flags():
    for prefix, p in _parsers():
        for a in p._actions:
            if a.option_strings and a.type in (int, float):
                yield prefix, a.option_strings[-1], a.type
            elif a.option_strings and a.type in CASES:
                yield prefix, a.option_strings[-1], a.type


FLAGS = list(_numeric_flags())
SEEDS = {"--seed"}  # any integer is a seed


def test_every_numeric_flag_is_checked():
    unchecked = [(" ".join(pre), flag) for pre, flag, t in FLAGS if t in (int, float) and flag not in SEEDS]
    assert not unchecked, f"numeric flags parsed without a range check: {unchecked}"
    assert len(FLAGS) > 30  # the walk found the commands' flags


@pytest.mark.parametrize("prefix, flag, kind", [f for f in FLAGS if f[2] in CASES],
                         ids=lambda x: x if isinstance(x, str) else None)
def test_bad_number_refused_before_anything_starts(capsys, prefix, flag, kind):
    bad = CASES[kind][0][0]
    required = {"score": ["--judge", "j", "--input", "i", "--output", "o"]}.get(prefix[0], [])
    with pytest.raises(SystemExit) as e:
        main([*prefix, *required, f"{flag}={bad}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and f"argument {flag}: expected " in err[-1] and err[-1].endswith(f"got '{bad}'"), err
