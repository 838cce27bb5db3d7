"""argparse value types for the command line: a bad number is refused while parsing, before anything
starts, and argparse names the flag ("argument --k: expected a positive integer, got '0'", exit 2).

    p.add_argument("--k", type=positive_int, default=4)
    p.add_argument("--threshold", type=probability, default=0.5)
"""

from __future__ import annotations

import argparse
import math


def _checked(s: str, kind: type, what: str, ok) -> int | float:
    """``kind(s)`` if it parses, is finite and passes ``ok``; else argparse's error naming ``s``."""
    try:
        v = kind(s)
    except ValueError:
        v = None
    if v is None or (isinstance(v, float) and not math.isfinite(v)) or not ok(v):
        raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}")
    return v


def positive_int(s: str) -> int:
    """An integer >= 1 (counts, sizes, steps)."""
    return _checked(s, int, "a positive integer", lambda v: v >= 1)


def nonneg_int(s: str) -> int:
    """An integer >= 0 (0 = off / none)."""
    return _checked(s, int, "an integer >= 0", lambda v: v >= 0)


def nonneg_float(s: str) -> float:
    """A finite number >= 0 (temperatures)."""
    return _checked(s, float, "a number >= 0", lambda v: v >= 0)


def probability(s: str) -> float:
    """A number in [0, 1] (thresholds)."""
    return _checked(s, float, "a number in [0, 1]", lambda v: 0 <= v <= 1)


def top_p(s: str) -> float:
    """A number in (0, 1] (nucleus sampling)."""
    return _checked(s, float, "a number in (0, 1]", lambda v: 0 < v <= 1)


def margin(s: str) -> float:
    """A number in [0, 0.5] (adaptive K's agreement margin around 0.5)."""
    return _checked(s, float, "a number in [0, 0.5]", lambda v: 0 <= v <= 0.5)


def positive_ints(s: str) -> list[int]:
    """A comma list of integers >= 1 ("1,2,4"): sorted, without repeats."""
    try:
        vals = [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        vals = []
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {s!r}")
    return sorted(set(vals))
