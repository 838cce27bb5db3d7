"""Write verl RL parquet files from the shipped benchmarks.

Schema (rl_prm.data.verl_schema.ARROW_SCHEMA; as verl's examples/data_preprocess/{gsm8k,math_dataset}.py
write and RLHFDataset reads; both backends train on these files)::

    data_source  str                      e.g. "openai/gsm8k" (routes verl's default_compute_score)
    prompt       list<{role, content}>    chat messages; RLHFDataset reads config.prompt_key="prompt"
    ability      str                      "math"
    reward_model {style: "rule", ground_truth: str}
    extra_info   {split, index, id, source, answer, question}
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from rl_prm.data.loaders import MATH_BENCHMARKS, load_benchmark
from rl_prm.data.verl_schema import ARROW_SCHEMA

INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}."

# dataset -> split -> (benchmark, benchmark split, verl data_source)
# data_source names are the ones verl's default_compute_score knows, so the files also work without
# our custom reward; MATH test is MATH-500 (HuggingFaceH4/MATH-500 is one of verl's MATH names).
PREP: dict[str, dict[str, tuple[str, str, str]]] = {
    "gsm8k": {"train": ("gsm8k", "train", "openai/gsm8k"), "test": ("gsm8k", "test", "openai/gsm8k")},
    "math": {
        "train": ("math", "train", "DigitalLearningGmbH/MATH-lighteval"),
        "test": ("math500", "test", "HuggingFaceH4/MATH-500"),
    },
    # eval-only extras (test split only): `--datasets aime24,amc23,...`
    "math_full": {"test": ("math", "test", "DigitalLearningGmbH/MATH-lighteval")},
    "aime24": {"test": ("aime24", "test", "aime24")},
    "amc23": {"test": ("amc23", "test", "amc23")},
    "minerva_math": {"test": ("minerva_math", "test", "minerva_math")},
    "olympiadbench": {"test": ("olympiadbench", "test", "olympiadbench")},
}
DEFAULT_DATASETS = ("gsm8k", "math")


def make_prompt(problem: str, instruction: str = INSTRUCTION) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{problem.strip()} {instruction}".strip()}]


def verl_row(data_source: str, problem: str, gold: str, split: str, index: int, row_id: str, source: str,
             instruction: str = INSTRUCTION) -> dict:
    """One verl RL row (the schema above)."""
    return {
        "data_source": data_source,
        "prompt": make_prompt(problem, instruction),
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": gold},
        "extra_info": {"split": split, "index": index, "id": row_id, "source": source, "answer": gold,
                       "question": problem},
    }


def verl_rows(dataset: str, split: str, limit: int | None = None, instruction: str = INSTRUCTION) -> tuple[list[dict], int]:
    """verl rows for one dataset split; returns (rows, number of records skipped for an empty gold)."""
    if dataset not in PREP:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(PREP)}")
    if split not in PREP[dataset]:
        raise ValueError(f"dataset {dataset!r} has no split {split!r}; known: {', '.join(PREP[dataset])}")
    bench, bsplit, data_source = PREP[dataset][split]
    rows, skipped = [], 0
    for rec in load_benchmark(bench, bsplit):
        if limit is not None and len(rows) >= limit:
            break
        gold = str(rec["answer"]).strip()
        if not gold:  # 4 DeepScaleR MATH-train rows have no answer
            skipped += 1
            continue
        rows.append(verl_row(data_source, rec["problem"], gold, split, len(rows), rec["id"], rec["source"], instruction))
    return rows, skipped


def write_parquet(rows: list[dict], path: str | Path) -> None:
    """`rows` as a parquet file in verl's schema (rl_prm.data.verl_schema.ARROW_SCHEMA)."""
    table = pa.Table.from_pylist(rows, schema=ARROW_SCHEMA)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, str(path))


def prep(
    out_dir: str | Path,
    datasets: list[str] | tuple[str, ...] = DEFAULT_DATASETS,
    limit: int | None = None,
    instruction: str = INSTRUCTION,
    verbose: bool = True,
) -> dict[str, int]:
    """Write ``{dataset}_{split}.parquet`` for each dataset/split into ``out_dir``; returns path -> rows."""
    out_dir = Path(out_dir)
    written = {}
    for ds in datasets:
        if ds not in PREP:
            raise ValueError(f"unknown dataset {ds!r}; known: {', '.join(PREP)}")
        for split in PREP[ds]:
            rows, skipped = verl_rows(ds, split, limit=limit, instruction=instruction)
            path = out_dir / f"{ds}_{split}.parquet"
            write_parquet(rows, path)
            written[str(path)] = len(rows)
            if verbose:
                note = f" (skipped {skipped} without a gold answer)" if skipped else ""
                print(f"  {path}: {len(rows)} rows, data_source={PREP[ds][split][2]}{note}")
    return written


assert set(b for d in PREP.values() for b, _, _ in d.values()) <= set(MATH_BENCHMARKS)
