"""Run directories, atomic writes and precomputed-score files for the evaluators.

Run directory policy: every evaluator writes into ONE output directory. If it already holds results
(any file), the run refuses unless ``overwrite=True``; with overwrite, the files a previous run of the
evaluators wrote there (names in RESULT_FILES / matching ``*.png``) are deleted first, so old and new
results never mix. Without ``--out`` a fresh ``runs/eval/<name>-<timestamp>`` directory is used.
Every file is written to a temp file in the same directory and renamed into place (os.replace).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

RESULT_FILES = ("results.json", "scores.jsonl", "table.txt", "samples.jsonl", "search.jsonl")


def prepare_out_dir(out: str | os.PathLike | None, name: str, overwrite: bool = False) -> Path:
    """The run's output directory (created). Refuses a non-empty directory unless ``overwrite``."""
    if out is None:
        out = Path("runs") / "eval" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"--out {out} already holds files; pass --overwrite to replace the results there, "
                "or choose another --out (results of two runs are never mixed)")
        for p in out.iterdir():
            if p.is_file() and (p.name in RESULT_FILES or p.suffix == ".png"):
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
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{n}: expected a JSON object per line")
            rows.append(row)
    return rows


def read_scores(path: str | os.PathLike) -> dict[str, dict]:
    """Precomputed step scores, one JSON object per line, keyed by ``id``::

        {"id": "gsm8k-0", "p_yes": [[0.9, 0.8], [0.2, 0.4]]}   # per step, per sample P(Yes) (None = dropped)
        {"id": "gsm8k-1", "step_scores": [0.85, 0.3]}          # or per-step scores directly

    ``p_yes`` lets several K be evaluated from one file (mean of the first k samples); with only
    ``step_scores`` every K gets the same scores. Duplicate ids are an error."""
    out: dict[str, dict] = {}
    for n, row in enumerate(read_jsonl(path), 1):
        rid = row.get("id")
        if rid is None:
            raise ValueError(f"{path}: line {n} has no 'id'")
        if "p_yes" not in row and "step_scores" not in row:
            raise ValueError(f"{path}: line {n} (id {rid!r}) has neither 'p_yes' nor 'step_scores'")
        if str(rid) in out:
            raise ValueError(f"{path}: duplicate id {rid!r}")
        out[str(rid)] = row
    return out
