"""verl's RL parquet schema: what verl's RLHFDataset and reward managers read, what both backends train
on and what `rl-prm data prep` writes (ARROW_SCHEMA).

    column        type                                   needed
    prompt        list<{role, content}> chat messages    yes; the local backend also takes a plain string (one
                                                         user turn, as written: data.prompt_instruction not added)
    reward_model  {style, ground_truth}                  yes; ground_truth: str | number | list of them (any matches)
    data_source   str                                    no ("unknown"); the verifiable reward's data_source
    extra_info    {split, index, question, answer, ...}  no; extra_info.question is the judge's problem text
                                                         (else the last user message)
    ability       str                                    no

    check_file(path, backend)          # ValueError naming the first column that is missing or mistyped
    rows, skipped = read_rows(path, limit)   # rl-prm rows {"problem", "prompt", "answer", "source"}

A row that cannot train (no ground truth, no user message) is skipped and counted, never guessed.
"""

from __future__ import annotations

from typing import Any, Optional

import pyarrow as pa
import pyarrow.parquet as pq

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
ARROW_SCHEMA = pa.schema([
    ("data_source", pa.string()),
    ("prompt", pa.list_(MESSAGE)),
    ("ability", pa.string()),
    ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
    ("extra_info", pa.struct([("split", pa.string()), ("index", pa.int64()), ("id", pa.string()),
                              ("source", pa.string()), ("answer", pa.string()), ("question", pa.string())])),
])
REQUIRED = ("prompt", "reward_model")
COLUMNS = ("prompt", "reward_model", "data_source", "extra_info")  # what read_rows reads
FORMAT = "a verl RL parquet needs prompt (chat messages) and reward_model.ground_truth"


def _base(t: pa.DataType) -> pa.DataType:
    return t.value_type if pa.types.is_dictionary(t) else t


def _is_text(t: pa.DataType) -> bool:
    t = _base(t)
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _is_scalar_gold(t: pa.DataType) -> bool:
    return _is_text(t) or pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def _field(t: pa.DataType, name: str) -> Optional[pa.DataType]:
    idx = t.get_field_index(name) if pa.types.is_struct(t) else -1
    return t.field(idx).type if idx >= 0 else None


def schema_problem(schema: pa.Schema, backend: str = "local") -> Optional[str]:
    """What is wrong with a parquet schema for `backend` (local | verl), naming the column; None if fine."""
    names = schema.names
    have = f"(has: {', '.join(names) or 'no columns'})"
    for col in REQUIRED:
        if col not in names:
            return f"no column {col!r}: {FORMAT} {have}"
    prompt = schema.field("prompt").type
    if _is_text(prompt):
        if backend == "verl":
            return ("column 'prompt' holds plain strings; verl's RLHFDataset needs chat messages (a list of "
                    "{role, content}): rewrite it as [{'role': 'user', 'content': text}], or train with "
                    "trainer.backend=local")
    elif not (_is_list(prompt) and all(_field(prompt.value_type, k) is not None
                                       and _is_text(_field(prompt.value_type, k)) for k in ("role", "content"))):
        return f"column 'prompt' is {prompt}: expected chat messages (a list of {{role, content}} strings) or a string"
    rm = schema.field("reward_model").type
    gold = _field(rm, "ground_truth")
    if gold is None:
        return f"column 'reward_model' ({rm}) has no field 'ground_truth'"
    if not (_is_scalar_gold(gold) or (_is_list(gold) and _is_scalar_gold(gold.value_type))):
        return f"column 'reward_model.ground_truth' is {gold}: expected a string, a number or a list of them"
    if "data_source" in names and not _is_text(schema.field("data_source").type):
        return f"column 'data_source' is {schema.field('data_source').type}: expected a string"
    if "extra_info" in names:
        extra = schema.field("extra_info").type
        if not (pa.types.is_struct(extra) or pa.types.is_null(extra)):
            return f"column 'extra_info' is {extra}: expected a struct (e.g. {{split, index, question}})"
        q = _field(extra, "question")
        if q is not None and not (_is_text(q) or pa.types.is_null(q)):
            return f"column 'extra_info.question' is {q}: expected a string"
    return None


def check_file(path: str, backend: str = "local") -> None:
    """ValueError naming what is wrong with the parquet file at `path` for `backend` (reads the schema only)."""
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as e:
        raise ValueError(f"{path}: not a readable parquet file ({e})") from None
    problem = schema_problem(schema, backend)
    if problem:
        raise ValueError(f"{path}: {problem}")


def check_data_files(cfg: Any) -> None:
    """Config-time check of a recipe's parquet data (data.train / data.test) for its backend."""
    for split in ("train", "test"):
        spec = cfg.data[split]
        if isinstance(spec, str) and spec.endswith(".parquet"):
            try:
                check_file(spec, str(cfg.trainer.backend))
            except ValueError as e:
                raise ValueError(f"data.{split} {e}") from None


def _gold(v: Any) -> Any:
    """ground_truth as the verifiable reward grades it: str, or a list of str (any may match); None if empty."""
    if isinstance(v, (list, tuple)):
        out = [g for g in (_gold(x) for x in v) if isinstance(g, str)]
        return out or None
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, float):
        v = repr(v)
    v = str(v).strip()
    return v or None


def _messages(prompt: Any) -> Optional[list[dict[str, str]]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}] if prompt.strip() else None
    msgs = [{"role": str(m.get("role") or ""), "content": str(m.get("content") or "")} for m in prompt or []
            if isinstance(m, dict)]
    return msgs or None


def to_row(r: dict) -> tuple[Optional[dict], str]:
    """One parquet record -> an rl-prm row, or (None, why it cannot train)."""
    msgs = _messages(r.get("prompt"))
    users = [m["content"] for m in msgs or [] if m["role"] == "user" and m["content"].strip()]
    if not users:
        return None, "no user message in prompt"
    gold = _gold((r.get("reward_model") or {}).get("ground_truth"))
    if gold is None:
        return None, "no reward_model.ground_truth"
    extra = r.get("extra_info") if isinstance(r.get("extra_info"), dict) else {}
    q = extra.get("question")
    question = q if isinstance(q, str) and q.strip() else users[-1]
    return {"problem": question, "prompt": msgs, "answer": gold, "source": r.get("data_source") or "unknown"}, ""


def read_rows(path: str, limit: Optional[int] = None, batch_size: int = 4096) -> tuple[list[dict], dict[str, int]]:
    """The first `limit` trainable rows of a verl parquet file (all when None), and {reason: rows skipped}."""
    f = pq.ParquetFile(path)
    cols = [c for c in COLUMNS if c in f.schema_arrow.names]
    rows: list[dict] = []
    skipped: dict[str, int] = {}
    for batch in f.iter_batches(batch_size=batch_size, columns=cols):
        for rec in batch.to_pylist():
            row, why = to_row(rec)
            if row is None:
                skipped[why] = skipped.get(why, 0) + 1
            else:
                rows.append(row)
            if limit and len(rows) >= limit:
                return rows, skipped
    return rows, skipped
