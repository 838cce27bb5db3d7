"""Stage timing, as verl's `marked_timer`: a `with` block adds its wall seconds to a metrics dict.

    m = {}
    with marked_timer("generate", m):      # m["timing/generate"] += seconds of the block
        ...
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def marked_timer(name: str, metrics: dict, prefix: str = "timing/") -> Iterator[None]:
    """Add the block's wall seconds to metrics[prefix + name] (also when the block raises)."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        key = prefix + name
        metrics[key] = metrics.get(key, 0.0) + time.perf_counter() - t0
