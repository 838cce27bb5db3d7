"""RL basics (response lengths, rewards per group, throughput) and spike detection of metrics.

Pure Python + numpy.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Sequence

import numpy as np


# ---------------------------------------------------------------------------------------------
# Spike detection
# ---------------------------------------------------------------------------------------------


class SpikeDetector:
    """Warns when a metric moves sharply against its recent history.

    For each watched key, the new value x is compared with the last `window` values h:
        med = median(h); scale = max(1.4826*MAD(h), 1.2533*mean|h - med|, rel_floor*|med|, abs_floor)
        fire iff |x - med| > z * (1 + 6/(n-1)) * scale        (n = len(h) >= min_history)
    The (1 + 6/(n-1)) factor widens the band when the history is short (a scale estimated from
    3 points is unreliable); with Gaussian noise the false-alarm rate per key per step is about
    1e-3 at n=5 and 2e-4 at n=10 (z=4). After a key fires it stays quiet for `cooldown` updates
    (default: window), so a level shift gives one warning, not ten. rel_floor makes a jump
    relative to the level: a flat history (MAD 0) still needs |x - med| > z*rel_floor*|med|.
    Non-finite values (NaN/inf) always warn and are not added to the history.
    """

    DEFAULT_KEYS = ("reward/mean", "actor/kl", "actor/pg_loss", "hack/steps_per_response", "hack/mean_step_chars")

    def __init__(
        self,
        keys: Sequence[str] = DEFAULT_KEYS,
        window: int = 10,
        z: float = 4.0,
        min_history: int = 3,
        rel_floor: float = 0.05,
        abs_floor: float = 1e-8,
        cooldown: int | None = None,
    ):
        if window < 2 or min_history < 2 or min_history > window:
            raise ValueError(f"need 2 <= min_history <= window, got min_history={min_history}, window={window}")
        if z <= 0:
            raise ValueError(f"z must be > 0, got {z}")
        self.keys = tuple(keys)
        self.window, self.z, self.min_history = window, z, min_history
        self.rel_floor, self.abs_floor = rel_floor, abs_floor
        self.cooldown = window if cooldown is None else cooldown
        self._hist: dict[str, deque[float]] = {k: deque(maxlen=window) for k in self.keys}
        self._quiet: dict[str, int] = {k: 0 for k in self.keys}

    def update(self, metrics: dict[str, float]) -> list[str]:
        """Feed one step's metrics; returns a warning string per watched key that spiked."""
        warnings: list[str] = []
        for key in self.keys:
            if key not in metrics:
                continue
            try:
                x = float(metrics[key])
            except (TypeError, ValueError):
                continue
            if not math.isfinite(x):
                warnings.append(f"{key} is {x} (non-finite)")
                continue
            hist = self._hist[key]
            quiet = self._quiet[key]
            if quiet > 0:
                self._quiet[key] = quiet - 1
            if len(hist) >= self.min_history and quiet == 0:
                h = np.asarray(hist, dtype=float)
                med = float(np.median(h))
                dev = np.abs(h - med)
                scale = max(1.4826 * float(np.median(dev)), 1.2533 * float(dev.mean()),
                            self.rel_floor * abs(med), self.abs_floor)
                n = len(h)
                robust_z = (x - med) / scale
                if abs(robust_z) > self.z * (1.0 + 6.0 / (n - 1)):
                    warnings.append(
                        f"{key} spiked to {x:.4g} (median of last {n}: {med:.4g}, robust z {robust_z:+.1f})"
                    )
                    self._quiet[key] = self.cooldown
            hist.append(x)
        return warnings


# ---------------------------------------------------------------------------------------------
# RL basics
# ---------------------------------------------------------------------------------------------


def stats(values: Sequence[float], prefix: str) -> dict[str, float]:
    """{prefix}/mean, /std, /max, /min over the finite values (empty -> {})."""
    v = np.asarray([float(x) for x in values], dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {}
    return {f"{prefix}/mean": float(v.mean()), f"{prefix}/std": float(v.std()),
            f"{prefix}/max": float(v.max()), f"{prefix}/min": float(v.min())}


def length_metrics(lengths: Sequence[int], max_length: int | None = None, prefix: str = "response_length") -> dict[str, float]:
    """Token lengths: mean/max/min, and clip_ratio (fraction that hit max_length) when given."""
    if not len(lengths):
        return {}
    v = np.asarray(lengths, dtype=float)
    out = {f"{prefix}/mean": float(v.mean()), f"{prefix}/max": float(v.max()), f"{prefix}/min": float(v.min())}
    if max_length is not None:
        out[f"{prefix}/clip_ratio"] = float(np.mean(v >= max_length))
    return out


def group_metrics(rewards: Sequence[float], group_ids: Sequence[object], prefix: str = "reward") -> dict[str, float]:
    """Per-prompt groups (GRPO/RLOO): fraction of groups whose rewards are all equal (they give
    zero advantage = no learning signal) and the mean within-group std."""
    if len(rewards) != len(group_ids):
        raise ValueError(f"rewards ({len(rewards)}) and group_ids ({len(group_ids)}) differ in length")
    groups: dict[object, list[float]] = {}
    for r, g in zip(rewards, group_ids):
        groups.setdefault(g, []).append(float(r))
    if not groups:
        return {}
    stds = [float(np.std(v)) for v in groups.values()]
    return {f"{prefix}/frac_groups_zero_std": float(np.mean([s < 1e-8 for s in stds])),
            f"{prefix}/group_std_mean": float(np.mean(stds))}


def throughput_metrics(num_tokens: int, seconds: float, prefix: str = "perf") -> dict[str, float]:
    """{prefix}/throughput (tokens/s) and {prefix}/step_time (s)."""
    if seconds <= 0:
        return {}
    return {f"{prefix}/throughput": num_tokens / seconds, f"{prefix}/step_time": float(seconds)}


def rl_metrics(
    response_lengths: Sequence[int],
    max_response_length: int | None = None,
    rewards: Sequence[float] | None = None,
    group_ids: Sequence[object] | None = None,
    num_tokens: int | None = None,
    seconds: float | None = None,
) -> dict[str, float]:
    """The basic RL panel in one call: response_length/*, reward/* (stats and group stats),
    perf/* (throughput when num_tokens and seconds are given)."""
    out = length_metrics(response_lengths, max_response_length)
    if rewards is not None:
        out.update(stats(rewards, "reward"))
        if group_ids is not None:
            out.update(group_metrics(rewards, group_ids))
    if num_tokens is not None and seconds is not None:
        out.update(throughput_metrics(num_tokens, seconds))
    return out
