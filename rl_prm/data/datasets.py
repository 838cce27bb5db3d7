"""Training datasets by name (`data.train` / `data.test`), verl parquet files, and the data order.

    rows = load_data("world", "train", limit=1024, seed=0)   # [{"problem", "answer", "source", ("prompt")}]
    ids = prompt_ids(tokenizer, rows[0], instruction)        # chat-templated prompt token ids
    batch_indices(len(rows), step, per_step, seed)           # which rows step `step` trains on

A name is a task (rl_prm.tasks.TASKS: tiny_arith, gsm8k, math and plugins such as the world); a path
ending in .parquet is read as a
verl RL parquet file (rl_prm.data.verl_schema: prompt chat messages or a plain string,
reward_model.ground_truth str | number | list, optional data_source / extra_info; `rl-prm data prep`
writes them). A row's "answer" is then a str or a list of acceptable answers.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any, Optional

from rl_prm.tasks import TASKS

def _parquet(path: str, limit: Optional[int]) -> list[dict]:
    """A verl RL parquet file (rl_prm.data.verl_schema: `rl-prm data prep` output or any file in verl's
    schema); rows that cannot train are skipped and counted on stderr."""
    from rl_prm.data.verl_schema import check_file, read_rows  # imports pyarrow (~0.2 s): only a .parquet spec needs it

    check_file(path)
    rows, skipped = read_rows(path, limit)
    if skipped:
        why = ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items()))
        print(f"data file {path}: skipped {sum(skipped.values())} rows that cannot train ({why})",
              file=sys.stderr, flush=True)
    return rows


def load_data(spec: str, split: str, limit: Optional[int], seed: int) -> list[dict]:
    """`spec`: a task name (rl_prm.tasks.TASKS) or a .parquet path."""
    if spec.endswith(".parquet"):
        if not Path(spec).is_file():
            raise ValueError(f"data file {spec} not found")
        rows = _parquet(spec, limit)
    else:
        rows = TASKS.get(spec).rows(split, limit, seed)
    if not rows:
        raise ValueError(f"data {spec!r} ({split}) has no rows")
    return rows


def prompt_ids(tokenizer: Any, row: dict, instruction: str) -> list[int]:
    from rl_prm.generate import chat_prompt_ids  # imports torch (seconds); the rest of this module does not need it

    if "prompt" in row:  # verl parquet: messages already carry the instruction
        ids = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True)
        ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "input_ids") else ids
        return [int(i) for i in ids]
    return chat_prompt_ids(tokenizer, row["problem"], instruction)


def batch_indices(n_rows: int, step: int, per_step: int, seed: int) -> list[int]:
    """Row indices of training step `step` (1-based): consecutive slices of per-epoch shuffles.
    A pure function of (step, seed), so a resumed run sees exactly the prompts it would have."""
    out = []
    start = (step - 1) * per_step
    for pos in range(start, start + per_step):
        epoch, i = divmod(pos, n_rows)
        perm = list(range(n_rows))
        random.Random(seed * 1_000_003 + epoch).shuffle(perm)
        out.append(perm[i])
    return out


def tokenize_prompts(rows: list[dict], tokenizer: Any, instruction: str, max_tokens: int) -> tuple[list[dict], list[list[int]], int]:
    """Chat-templated prompt ids of `rows`, dropping prompts longer than `max_tokens`.

    Returns (kept rows, their ids, number dropped)."""
    ids = [prompt_ids(tokenizer, r, instruction) for r in rows]
    keep = [i for i, x in enumerate(ids) if len(x) <= max_tokens]
    return [rows[i] for i in keep], [ids[i] for i in keep], len(rows) - len(keep)
