"""Run directories, atomic writes and precomputed-score files for the evaluators.

Run directory policy: every evaluator writes into ONE output directory. If it already holds results
(any file), the run refuses unless ``overwrite=True``; with overwrite, the files a previous run of the
evaluators wrote there (names in RESULT_FILES / matching ``*.png``) are deleted first, so old and new
results never mix. Without ``--out`` a fresh ``runs/eval/<name>-<timestamp>`` directory is used.
Every file is written to a temp file in the same directory and renamed into place (os.replace).
A `logs/` folder (engine and library logs of a quiet session, rl_prm.logs) does not make the
directory "hold results"; --overwrite empties it too.

Readers (precomputed scores, samples) go through rl_prm.jsonl: a bad line (not UTF-8, not JSON,
too long, not an object, a field of the wrong type) raises rl_prm.jsonl.InputError naming the file
and line; blank lines are skipped.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

from rl_prm.jsonl import InputError, read_objects

RESULT_FILES = ("results.json", "scores.jsonl", "table.txt", "samples.jsonl", "search.jsonl")


def prepare_out_dir(out: str | os.PathLike | None, name: str, overwrite: bool = False) -> Path:
    """The run's output directory (created). Refuses a non-empty directory unless ``overwrite``."""
    if out is None:
        out = Path("runs") / "eval" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(p.name != "logs" for p in out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"--out {out} already holds files; pass --overwrite to replace the results there, "
                "or choose another --out (results of two runs are never mixed)")
        for p in out.iterdir():
            if p.is_file() and (p.name in RESULT_FILES or p.suffix == ".png"):
                p.unlink()
    if overwrite and (out / "logs").is_dir():
        for p in (out / "logs").glob("*.log"):
            p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def _clean(x: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None."""
    if isinstance(x, float):
        return None if (math.isnan(x) or math.isinf(x)) else x
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(_clean(obj), indent=2, ensure_ascii=False) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    return atomic_write_text(path, "".join(json.dumps(_clean(r), ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The JSON objects of a JSONL file, blank lines skipped; InputError (PATH:LINE) at a bad line."""
    return [row for _, row in read_objects(path)]


def _numbers(v: Any, allow_none: bool = True) -> bool:
    """True when v is a list of numbers (None allowed where a sample or step was dropped)."""
    return isinstance(v, list) and all((x is None and allow_none) or (isinstance(x, (int, float))
                                                                     and not isinstance(x, bool)) for x in v)


def read_scores(path: str | os.PathLike) -> dict[str, dict]:
    """Precomputed step scores, one JSON object per line, keyed by ``id``::

        {"id": "gsm8k-0", "p_yes": [[0.9, 0.8], [0.2, 0.4]]}   # per step, per sample P(Yes) (None = dropped)
        {"id": "gsm8k-1", "step_scores": [0.85, 0.3]}          # or per-step scores directly

    ``p_yes`` lets several K be evaluated from one file (mean of the first k samples); with only
    ``step_scores`` every K gets the same scores. A missing or mistyped field or a duplicate id
    raises InputError naming the file and line."""
    out: dict[str, dict] = {}
    for n, row in read_objects(path):
        rid = row.get("id")
        if not isinstance(rid, (str, int)) or isinstance(rid, bool):
            raise InputError(path, n, "no 'id' (a string or an integer)")
        if "p_yes" not in row and "step_scores" not in row:
            raise InputError(path, n, f"id {rid!r} has neither 'p_yes' nor 'step_scores'")
        p_yes = row.get("p_yes")
        if p_yes is not None and not (isinstance(p_yes, list) and all(_numbers(x) for x in p_yes)):
            raise InputError(path, n, f"id {rid!r}: 'p_yes' must be a list (per step) of lists of numbers")
        if row.get("step_scores") is not None and not _numbers(row["step_scores"]):
            raise InputError(path, n, f"id {rid!r}: 'step_scores' must be a list of numbers (or null)")
        if str(rid) in out:
            raise InputError(path, n, f"duplicate id {rid!r}")
        out[str(rid)] = row
    return out


def read_samples(path: str | os.PathLike) -> dict[str, dict]:
    """Precomputed policy samples ``{"id": ..., "responses": ["...", ...]}`` per line, keyed by id;
    a missing or mistyped field or a duplicate id raises InputError naming the file and line."""
    out: dict[str, dict] = {}
    for n, row in read_objects(path):
        rid = row.get("id")
        if not isinstance(rid, (str, int)) or isinstance(rid, bool):
            raise InputError(path, n, "no 'id' (a string or an integer)")
        resp = row.get("responses")
        if not isinstance(resp, list) or not all(isinstance(r, str) for r in resp):
            raise InputError(path, n, f"id {rid!r}: 'responses' must be a list of strings")
        if str(rid) in out:
            raise InputError(path, n, f"duplicate id {rid!r}")
        out[str(rid)] = row
    return out
