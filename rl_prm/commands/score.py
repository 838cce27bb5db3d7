"""`rl-prm score`: score solution steps with an R-PRM judge, JSONL in, JSONL out.

Input lines: {"question", "steps": [...]}, {"question", "response"} (split on blank lines), or
ProcessBench-style {"problem", "steps"}. Output: one line per input line, in order, with
status, step_scores, per-step p_yes / flags / fallback counts, token counts and the input's "id"
when present. A bad line (not JSON, missing fields, empty step, prompt too long) gets a status
and an error, never a crash. The output file is written atomically (temp file + rename).

    rl-prm score --judge DIR --input solutions.jsonl --output scores.jsonl --k 4 [--limit N]
                 [--early-reject 0.5] [--adaptive-k] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--judge", required=True, help="judge model directory (local; nothing is downloaded)")
    p.add_argument("--input", required=True, help="JSONL with question+steps, question+response or problem+steps")
    p.add_argument("--output", required=True, help="JSONL to write (one line per input line)")
    p.add_argument("--k", type=int, default=4, help="critiques per step (default 4)")
    p.add_argument("--limit", type=int, default=None, help="score only the first N lines")
    p.add_argument("--early-reject", type=float, default=None, metavar="T",
                   help="score steps in order; after a step scored below T, later steps are not scored")
    p.add_argument("--adaptive-k", action="store_true", help="stop sampling a step once its first samples agree")
    p.add_argument("--max-critique-tokens", type=int, default=1024)
    p.add_argument("--temperature", type=float, default=0.95)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64, help="items per scorer call")
    p.add_argument("--max-model-len", type=int, default=4096, help="judge context length")
    p.add_argument("--keep-critiques", type=int, default=0, help="critiques per step written to the output")
    p.add_argument("--server", default=None, help="use an OpenAI-compatible judge server at this URL instead of an in-process engine")


def _read(path: str, limit: int | None) -> list[tuple[Any, str | None]]:
    """(item, parse error) per line; blank lines are skipped."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            if limit is not None and len(rows) >= limit:
                break
            try:
                rows.append((json.loads(line), None))
            except json.JSONDecodeError as e:
                rows.append((None, f"line {lineno}: not JSON ({e.msg})"))
    return rows


def _record(item: Any, res: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {}
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from rl_prm.score.scorer import ItemScore, RPRMScorer, ScoreConfig

    if not Path(args.judge).is_dir():
        raise SystemExit(f"rl-prm score: --judge {args.judge!r} is not a model directory")
    if not Path(args.input).is_file():
        raise SystemExit(f"rl-prm score: --input {args.input!r} does not exist")
    rows = _read(args.input, args.limit)
    cfg = ScoreConfig(k=args.k, temperature=args.temperature, top_p=args.top_p,
                      max_critique_tokens=args.max_critique_tokens, early_reject_threshold=args.early_reject,
                      adaptive_k=args.adaptive_k, seed=args.seed, keep_critiques=args.keep_critiques)
    if args.server:
        from rl_prm.score.engines import HTTPJudgeEngine

        scorer = RPRMScorer(HTTPJudgeEngine(args.server, args.judge), cfg)
    else:
        scorer = RPRMScorer.from_path(args.judge, cfg, max_model_len=args.max_model_len)
    records: list[dict[str, Any]] = []
    bar = tqdm(total=len(rows), desc="R-PRM scoring", unit="item", file=sys.stderr)
    for start in range(0, len(rows), args.batch_size):
        chunk = rows[start: start + args.batch_size]
        good = [item for item, err in chunk if err is None]
        results = iter(scorer.score(good))
        for item, err in chunk:
            res = ItemScore("bad_input", [], err, 0, 0, 0.0) if err is not None else next(results)
            records.append(_record(item, res))
        bar.update(len(chunk))
    bar.close()
    write_jsonl_atomic(args.output, records)
    counts: dict[str, int] = {}
    for r in records:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    gen = sum(r["generated_tokens"] for r in records)
    print(f"rl-prm score: {len(records)} items -> {args.output}; status {counts}; {gen} judge tokens generated")
    return 0 if records else 1
