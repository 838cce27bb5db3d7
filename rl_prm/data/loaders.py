"""Loaders for the benchmark files shipped in ``rl_prm/data/benchmarks`` (see MANIFEST.json there).

Math benchmarks come back as uniform records::

    {"id": str, "problem": str, "answer": str (gold final answer), "source": str, "split": str,
     ...the original fields}

ProcessBench and PRMBench come back as in their files (with ``split`` added).
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from rl_prm.data.answers import clean_numeric, gsm8k_gold, last_boxed, strip_dollars

BENCH_DIR = Path(__file__).resolve().parent / "benchmarks"

PROCESSBENCH_SPLITS = ("gsm8k", "math", "olympiadbench", "omnimath")


def _read(rel: str) -> list[dict]:
    path = BENCH_DIR / rel
    if not path.is_file():
        raise FileNotFoundError(f"shipped benchmark file {path} is missing; regenerate with `rl-prm data ship --from ../shared/data`")
    text = gzip.decompress(path.read_bytes()).decode("utf-8")
    if rel.endswith(".jsonl.gz"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError(f"{rel}: expected a JSON list")
    return data


def _record(rid: str, problem: str, answer: str, source: str, split: str, raw: dict, **extra: Any) -> dict:
    """Uniform record: original fields first, then the uniform keys; an original field that the
    uniform keys replace with a different value is kept as ``orig_<key>``."""
    rec = dict(raw)
    uniform = {"id": str(rid), "problem": problem, "answer": answer, "source": source, "split": split, **extra}
    for k, v in uniform.items():
        if k in raw and raw[k] != v:
            rec[f"orig_{k}"] = raw[k]
        rec[k] = v
    return rec


# ---- per-benchmark record builders: (raw record, split, row index) -> uniform record ----------------


def _gsm8k(r: dict, split: str, i: int) -> dict:
    # the original "answer" is the worked solution ending in "#### gold": kept as "solution"
    return _record(f"gsm8k/{split}/{i}", r["question"], gsm8k_gold(r["answer"]), "gsm8k", split, r,
                   solution=r["answer"])


def _math500(r: dict, split: str, i: int) -> dict:
    return _record(r["unique_id"], r["problem"], r["answer"].strip(), "math500", split, r)


def _math(r: dict, split: str, i: int) -> dict:
    if split == "train":  # DeepScaleR's MATH-train problems with answers (4 of 7474 have none: "")
        ans = str(r.get("answer") or "").strip()
        rid = f"math/train/{i}"
    else:
        ans = last_boxed(r["solution"])
        if ans is None:
            raise ValueError(f"math/test[{i}]: no \\boxed{{}} in the solution")
        rid = f"math/test/{r.get('idx', i)}"
    return _record(rid, r["problem"], ans, "math", split, r)


def _aime_amc(name: str) -> Callable[[dict, str, int], dict]:
    def build(r: dict, split: str, i: int) -> dict:
        return _record(f"{name}/{r.get('id', i)}", r["problem"], clean_numeric(str(r["answer"])), name, split, r)

    return build


def _minerva(r: dict, split: str, i: int) -> dict:
    ans = last_boxed(r["solution"])
    if ans is None:
        raise ValueError(f"minerva_math[{i}]: no \\boxed{{}} in the solution")
    return _record(f"minerva_math/{r.get('idx', i)}", r["problem"], ans, "minerva_math", split, r)


def _olympiad(r: dict, split: str, i: int) -> dict:
    fa = r["final_answer"]
    parts = [strip_dollars(str(a)) for a in (fa if isinstance(fa, list) else [fa])]
    return _record(f"olympiadbench/{r.get('id', i)}", r["question"], ", ".join(parts), "olympiadbench", split, r)


# name -> {split: (shipped file, builder)}
MATH_BENCHMARKS: dict[str, dict[str, tuple[str, Callable[[dict, str, int], dict]]]] = {
    "gsm8k": {"train": ("gsm8k/train.jsonl.gz", _gsm8k), "test": ("gsm8k/test.jsonl.gz", _gsm8k)},
    "math": {"train": ("math/train.json.gz", _math), "test": ("math/test.jsonl.gz", _math)},
    "math500": {"test": ("math500/test.jsonl.gz", _math500)},
    "aime24": {"test": ("aime24/test.jsonl.gz", _aime_amc("aime24"))},
    "amc23": {"test": ("amc23/test.jsonl.gz", _aime_amc("amc23"))},
    "minerva_math": {"test": ("minerva_math/test.jsonl.gz", _minerva)},
    "olympiadbench": {"test": ("olympiadbench/test.jsonl.gz", _olympiad)},
}
OTHER_BENCHMARKS = ("processbench", "prmbench")


def list_benchmarks() -> dict[str, list[str]]:
    """All shipped benchmarks -> their splits (math benchmarks, then ProcessBench and PRMBench)."""
    out = {name: list(splits) for name, splits in MATH_BENCHMARKS.items()}
    out["processbench"] = list(PROCESSBENCH_SPLITS)
    out["prmbench"] = prmbench_splits()
    return out


def _check_split(name: str, split: str | None, splits: list[str] | tuple[str, ...], default: str | None) -> str:
    if split is None:
        if default is None:
            raise ValueError(f"benchmark {name!r} needs a split; one of: {', '.join(splits)}")
        return default
    if split not in splits:
        raise ValueError(f"unknown split {split!r} for benchmark {name!r}; known: {', '.join(splits)}")
    return split


@lru_cache(maxsize=None)
def _load_math_cached(name: str, split: str) -> tuple[dict, ...]:
    rel, build = MATH_BENCHMARKS[name][split]
    return tuple(build(r, split, i) for i, r in enumerate(_read(rel)))


def load_benchmark(name: str, split: str | None = None) -> list[dict]:
    """Records of a shipped benchmark. ``split`` defaults to "test".

    Math benchmarks (gsm8k, math, math500, aime24, amc23, minerva_math, olympiadbench) give uniform
    records with id/problem/answer/source/split plus the original fields; ``processbench`` and
    ``prmbench`` are forwarded to :func:`load_processbench` / :func:`load_prmbench`.
    Returns fresh dicts (safe to mutate).
    """
    if name == "processbench":
        return load_processbench(_check_split(name, split, PROCESSBENCH_SPLITS, None))
    if name == "prmbench":
        return load_prmbench(split)
    if name not in MATH_BENCHMARKS:
        known = ", ".join([*MATH_BENCHMARKS, *OTHER_BENCHMARKS])
        raise ValueError(f"unknown benchmark {name!r}; known: {known}")
    split = _check_split(name, split, list(MATH_BENCHMARKS[name]), "test")
    return [dict(r) for r in _load_math_cached(name, split)]


def load_processbench(split: str) -> list[dict]:
    """ProcessBench split (gsm8k 400, math 1000, olympiadbench 1000, omnimath 1000).

    Records: id, problem, steps (list[str]), label (index of the first wrong step, -1 if none),
    final_answer_correct (bool), generator, split.
    """
    split = _check_split("processbench", split, PROCESSBENCH_SPLITS, None)
    out = []
    for r in _read(f"processbench/{split}.json.gz"):
        out.append({"id": r["id"], "problem": r["problem"], "steps": list(r["steps"]), "label": int(r["label"]),
                    "final_answer_correct": bool(r["final_answer_correct"]), "generator": r.get("generator"),
                    "split": split})
    return out


def prmbench_splits() -> list[str]:
    """PRMBench files: the classified/*.jsonl stems plus "subset400"."""
    stems = sorted(p.name[: -len(".jsonl.gz")] for p in (BENCH_DIR / "prmbench" / "classified").glob("*.jsonl.gz"))
    if (BENCH_DIR / "prmbench" / "subset400" / "target_data.jsonl.gz").is_file():
        stems.append("subset400")
    return stems


def load_prmbench(split: str | None = None) -> list[dict]:
    """PRMBench records as in the files, plus ``split`` (the file stem).

    ``split``: None or "all" -> every classified file (6,216 items); "subset400" -> the 394-item subset;
    otherwise a classified file stem (e.g. "prm800k_test_p1_4o_circular") or a classification name
    ("circular", "confidence", ... , "multi_solutions") selecting all classified files of that class.
    """
    splits = prmbench_splits()
    classified = [s for s in splits if s != "subset400"]
    if split in (None, "all"):
        chosen = classified
    elif split in splits:
        chosen = [split]
    else:
        chosen = [s for s in classified if s.endswith("_" + split)]
        if not chosen:
            classes = sorted({s.split("_4o_")[-1] if "_4o_" in s else s.split("_p12_")[-1] for s in classified})
            raise ValueError(
                f"unknown PRMBench split {split!r}; known: all, subset400, a class ({', '.join(classes)}) "
                f"or a file stem ({', '.join(classified)})"
            )
    out = []
    for s in chosen:
        rel = "prmbench/subset400/target_data.jsonl.gz" if s == "subset400" else f"prmbench/classified/{s}.jsonl.gz"
        for r in _read(rel):
            r["split"] = s
            out.append(r)
    return out
