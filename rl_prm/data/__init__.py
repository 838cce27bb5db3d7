"""Shipped benchmark data, loaders and verl parquet prep.

    from rl_prm.data import load_benchmark, list_benchmarks, load_processbench, load_prmbench
    load_benchmark("gsm8k", "test")   # [{"id", "problem", "answer", "source", "split", ...original}, ...]

Files live in rl_prm/data/benchmarks (gzip-compressed originals, licenses and MANIFEST.json);
`rl-prm data ship --from ../shared/data` regenerates them, `rl-prm data prep --out DIR` writes
verl parquet files, `rl-prm data list` prints what is shipped.
"""

from rl_prm.data.answers import clean_numeric, gsm8k_gold, last_boxed, strip_dollars
from rl_prm.data.loaders import (
    BENCH_DIR,
    MATH_BENCHMARKS,
    PROCESSBENCH_SPLITS,
    list_benchmarks,
    load_benchmark,
    load_prmbench,
    load_processbench,
    prmbench_splits,
)

__all__ = [
    "BENCH_DIR",
    "MATH_BENCHMARKS",
    "PROCESSBENCH_SPLITS",
    "clean_numeric",
    "gsm8k_gold",
    "last_boxed",
    "list_benchmarks",
    "load_benchmark",
    "load_prmbench",
    "load_processbench",
    "prmbench_splits",
    "strip_dollars",
]
