"""`rl-prm score`: score solution steps with an R-PRM judge, JSONL in, JSONL out.

Input lines: {"question", "steps": [...]}, {"question", "response"} (split on blank lines), or
ProcessBench-style {"problem", "steps"}. Output: one line per input line, in order, with its
"line" number, status, step_scores, per-step p_yes / flags / fallback counts, token counts and the
input's "id" when present. A bad line gets status "bad_input" (blank, not UTF-8, not JSON, over
rl_prm.jsonl.MAX_LINE_BYTES, invalid Unicode, not an object, missing or mistyped fields) or the
scorer's status ("no_steps", "empty_step", "too_long"), and an error naming the line: never a
crash, never a dropped line. The output file is written atomically (temp file + rename). A bad
invocation (missing judge, unreadable input, unwritable output, bad numbers) exits 2 with one line.

    rl-prm score --judge DIR --input solutions.jsonl --output scores.jsonl --k 4 [--limit N]
                 [--early-reject 0.5] [--adaptive-k] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from rl_prm import argtypes

# What only running the command needs is imported inside the functions: rl_prm.cli imports this module
# to build the parser, so `--help` and a bad argument answer without it (start-up time of the CLI).


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--judge", required=True, help="judge model directory (local; nothing is downloaded)")
    p.add_argument("--input", required=True, help="JSONL with question+steps, question+response or problem+steps")
    p.add_argument("--output", required=True, help="JSONL to write (one line per input line)")
    p.add_argument("--k", type=argtypes.positive_int, default=4, help="critiques per step (default 4)")
    p.add_argument("--limit", type=argtypes.positive_int, default=None, help="score only the first N lines")
    p.add_argument("--early-reject", type=argtypes.probability, default=None, metavar="T",
                   help="score steps in order; after a step scored below T, later steps are not scored")
    p.add_argument("--adaptive-k", action="store_true", help="stop sampling a step once its first samples agree")
    p.add_argument("--max-critique-tokens", type=argtypes.positive_int, default=1024)
    p.add_argument("--temperature", type=argtypes.nonneg_float, default=0.95)
    p.add_argument("--top-p", type=argtypes.top_p, default=0.95)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=argtypes.positive_int, default=64, help="items per scorer call")
    p.add_argument("--max-model-len", type=argtypes.positive_int, default=4096, help="judge context length")
    p.add_argument("--keep-critiques", type=argtypes.nonneg_int, default=0,
                   help="critiques per step written to the output")
    p.add_argument("--server", default=None, help="use an OpenAI-compatible judge server at this URL instead of an in-process engine")


def read_items(path: str, limit: int | None = None) -> list[tuple[int, Any, str | None]]:
    """(line number, item, error) for each of the first `limit` lines, blank ones included; an
    unusable line has item None and an error naming the line (rl_prm.jsonl)."""
    from rl_prm.jsonl import read_lines  # not for `--help` (module comment)

    return [(ln.lineno, ln.value, None if ln.error is None else f"line {ln.lineno}: {ln.error}")
            for ln in read_lines(path, limit=limit)]


def score_items(scorer: Any, rows: list[tuple[int, Any, str | None]], batch_size: int = 64,
                progress: bool = True) -> list[dict[str, Any]]:
    """One output record per row, in order: unusable lines get "bad_input", the rest the scorer's result."""
    # tqdm, the scorer's modules: not for `--help` (module comment)
    from tqdm.auto import tqdm

    from rl_prm.score.scorer import ItemScore

    records: list[dict[str, Any]] = []
    bar = tqdm(total=len(rows), desc="R-PRM scoring", unit="item", file=sys.stderr, disable=not progress)
    for start in range(0, len(rows), batch_size):
        chunk = rows[start: start + batch_size]
        good = [item for _, item, err in chunk if err is None]
        try:
            results = iter(scorer.score(good) if good else [])
        except Exception as e:  # noqa: BLE001 - the engine failed this batch: its lines say so, the rest go on
            results = iter([ItemScore("error", [], f"scorer failed on this batch: {type(e).__name__}: {e}", 0, 0, 0.0)
                            for _ in good])
        for lineno, item, err in chunk:
            res = ItemScore("bad_input", [], err, 0, 0, 0.0) if err is not None else next(results)
            if res.status != "ok" and res.error and err is None:
                res.error = f"line {lineno}: {res.error}"
            records.append(_record(lineno, item, res))
        bar.update(len(chunk))
    bar.close()
    return records


def _record(lineno: int, item: Any, res: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {"line": lineno}
    if isinstance(item, dict) and "id" in item:
        rec["id"] = item["id"]
    rec.update(
        status=res.status,
        error=res.error,
        step_scores=res.step_scores,
        p_yes=[s.p_yes for s in res.steps],
        flags=[s.flag for s in res.steps],
        n_samples=[s.n_samples for s in res.steps],
        n_fallback=[s.n_fallback for s in res.steps],
        generated_tokens=res.generated_tokens,
        prompt_tokens=res.prompt_tokens,
        seconds=round(res.seconds, 4),
    )
    if any(s.critiques for s in res.steps):
        rec["critiques"] = [s.critiques for s in res.steps]
    return rec


def write_jsonl_atomic(path: str | os.PathLike, records: list[dict[str, Any]]) -> None:
    from rl_prm.jsonl import dumps_line  # not for `--help` (module comment)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for r in records:
                f.write(dumps_line(r))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _invocation_error(args: argparse.Namespace) -> str | None:
    """What is wrong with the command line (checked before any engine starts), else None."""
    if not Path(args.judge).is_dir() and not args.server:
        return f"--judge {args.judge!r} is not a model directory"
    inp, out = Path(args.input), Path(args.output)
    if not inp.exists():
        return f"--input {args.input!r} does not exist"
    if not inp.is_file():
        return f"--input {args.input!r} is not a file"
    if not os.access(inp, os.R_OK):
        return f"--input {args.input!r} is not readable"
    if out.is_dir():
        return f"--output {args.output!r} is a directory"
    parent = out.parent if str(out.parent) else Path(".")
    existing = next((p for p in (parent, *parent.parents) if p.exists()), Path("."))
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        return f"--output {args.output!r}: {existing} is not a writable directory"
    return None


def run(args: argparse.Namespace) -> int:
    # not for `--help` (module comment)
    from rl_prm.score.engines import HTTPJudgeEngine
    from rl_prm.score.scorer import RPRMScorer, ScoreConfig

    problem = _invocation_error(args)
    if problem is None:
        try:
            rows = read_items(args.input, args.limit)
            cfg = ScoreConfig(k=args.k, temperature=args.temperature, top_p=args.top_p,
                              max_critique_tokens=args.max_critique_tokens, early_reject_threshold=args.early_reject,
                              adaptive_k=args.adaptive_k, seed=args.seed, keep_critiques=args.keep_critiques)
        except (OSError, ValueError) as e:
            problem = str(e)
    if problem is not None:
        print(f"rl-prm score: {problem}", file=sys.stderr)
        return 2
    if args.server:
        scorer = RPRMScorer(HTTPJudgeEngine(args.server, args.judge), cfg)
    else:
        scorer = RPRMScorer.from_path(args.judge, cfg, max_model_len=args.max_model_len)
    records = score_items(scorer, rows, args.batch_size)
    write_jsonl_atomic(args.output, records)
    counts: dict[str, int] = {}
    for r in records:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    gen = sum(r["generated_tokens"] for r in records)
    print(f"rl-prm score: {len(records)} items -> {args.output}; status {counts}; {gen} judge tokens generated")
    return 0 if records else 1
