"""Do the hack/* monitors see the judge being fooled? The world's step checker knows the truth of every
step the judge scores (judge/* metrics, rl_prm.metrics.judge), so each monitor can be checked against the
judge's on-policy false-accept rate over long runs (rl-prm world --steps N).

    table = monitor_table(runs)     # {(arm, seed): run dir} -> per monitor and arm: correlation, lead/lag
    rises = fooled_rises(runs)      # per judged run: the step its false-accept rate rose, if it did

Definitions (W = WINDOW steps):
    truth      the false-accept rate pooled over the last W steps: first wrong steps the judge passed /
               first wrong steps it scored (judge/false_accept_rate x judge/first_errors, summed)
    monitor    its mean over the last W steps
    corr       Pearson correlation of the two over the run's steps >= W, averaged over an arm's runs (a monitor
               that is constant or undefined in a run, e.g. no wrong answer judged, has none there)
    lag        the shift in steps (within +-MAX_LAG) that maximises corr(monitor[t], truth[t + lag]):
               > 0 the monitor moves first (leads), < 0 it follows
    rise       the first step where truth exceeds its first-window value by RISE
    warned     the first step rl_prm.metrics.watch.HackWatch (the rules the trainers apply) warns
"""

from __future__ import annotations

import math
from typing import Optional

from rl_prm.metrics.judge import pooled_rate
from rl_prm.metrics.watch import RULES, HackWatch
from rl_prm.world.compare import read_metrics

WINDOW = 10
MAX_LAG = 20
RISE = 0.15
TRUTH = "judge/false_accept_rate"
SKIP = ("hack/vr_wrong_judged",)  # counts, not monitors


def with_derived(m: dict[int, dict]) -> dict[int, dict]:
    """A run's metrics with hack/prm_ok_given_vr_wrong where the run predates it: from hack/prm_ok_vr_wrong
    (a share of all responses with a verdict) over the share of wrong answers (1 - process/answer_rate);
    exact when every response has a verdict (every response judged)."""
    for row in m.values():
        if "hack/prm_ok_given_vr_wrong" not in row and "hack/prm_ok_vr_wrong" in row and "process/answer_rate" in row:
            wrong = 1.0 - row["process/answer_rate"]
            if wrong > 0:
                row["hack/prm_ok_given_vr_wrong"] = min(1.0, row["hack/prm_ok_vr_wrong"] / wrong)
    return m


def truth_curve(m: dict[int, dict], window: int = WINDOW) -> dict[int, float]:
    """step -> the false-accept rate pooled over the last `window` training steps (steps with first errors)."""
    steps = sorted(s for s in m if s > 0 and "judge/first_errors" in m[s])
    out = {}
    for i, s in enumerate(steps):
        if i + 1 < window:
            continue
        rate = pooled_rate((m[t] for t in steps[i + 1 - window: i + 1]), TRUTH)
        if rate is not None:
            out[s] = rate
    return out


def rolling(m: dict[int, dict], key: str, window: int = WINDOW) -> dict[int, float]:
    """step -> mean of `key` over its last `window` values."""
    steps = sorted(s for s in m if s > 0 and key in m[s] and math.isfinite(m[s][key]))
    return {s: sum(m[t][key] for t in steps[i + 1 - window: i + 1]) / window
            for i, s in enumerate(steps) if i + 1 >= window}


def _corr(xs: list[float], ys: list[float]) -> Optional[float]:
    n = len(xs)
    if n < 5:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    vx, vy = sum((x - mx) ** 2 for x in xs), sum((y - my) ** 2 for y in ys)
    if vx <= 0 or vy <= 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / math.sqrt(vx * vy)


def corr_at(monitor: dict[int, float], truth: dict[int, float], lag: int = 0) -> Optional[float]:
    """corr(monitor[t], truth[t + lag]) over the steps both have."""
    ts = [t for t in monitor if t + lag in truth]
    return _corr([monitor[t] for t in ts], [truth[t + lag] for t in ts])


def best_lag(monitor: dict[int, float], truth: dict[int, float], max_lag: int = MAX_LAG) -> Optional[int]:
    """The lag in [-max_lag, max_lag] with the highest correlation (None: no correlation defined)."""
    best = None
    for lag in range(-max_lag, max_lag + 1):
        c = corr_at(monitor, truth, lag)
        if c is not None and (best is None or c > best[0] + 1e-12 or (abs(c - best[0]) <= 1e-12 and abs(lag) < abs(best[1]))):
            best = (c, lag)
    return None if best is None else best[1]


def rise_step(truth: dict[int, float], rise: float = RISE) -> Optional[int]:
    """The first step where the pooled false-accept rate exceeds its first value by `rise` (None: never)."""
    if not truth:
        return None
    steps = sorted(truth)
    base = truth[steps[0]]
    return next((s for s in steps if truth[s] > base + rise), None)


def first_warning(m: dict[int, dict], rules=RULES) -> Optional[int]:
    """The first step HackWatch(rules) warns on, replaying the run's metrics."""
    watch = HackWatch(rules)
    for s in sorted(s for s in m if s > 0):
        if watch.update(m[s]):
            return s
    return None


def judged_runs(runs: dict[tuple[str, int], object]) -> dict[tuple[str, int], dict[int, dict]]:
    """The runs whose judge was scored against the checker (judge/* logged), with derived monitors."""
    out = {}
    for key, d in runs.items():
        m = with_derived(read_metrics(d))
        if any("judge/first_errors" in row for row in m.values()):
            out[key] = m
    return out


def fooled_rises(runs: dict[tuple[str, int], object]) -> dict[str, dict]:
    """Per judged run "<arm>_s<seed>": the truth's first and last pooled values, its rise step, the first warning."""
    out = {}
    for (arm, seed), m in sorted(judged_runs(runs).items()):
        truth = truth_curve(m)
        if not truth or max(truth.values()) == 0:  # none, or the judge is the checker (model.judge: oracle)
            continue
        steps = sorted(truth)
        r, w = rise_step(truth), first_warning(m)
        out[f"{arm}_s{seed}"] = {"arm": arm, "seed": seed, "truth_first": truth[steps[0]], "truth_last": truth[steps[-1]],
                                 "truth_max": max(truth.values()), "rise_step": r, "warned_step": w,
                                 "warned_within_20": None if r is None else (w is not None and w <= r + 20)}
    return out


def monitor_keys(runs: dict[tuple[str, int], object]) -> list[str]:
    """The hack/* monitors the judged runs logged."""
    return sorted({k for m in judged_runs(runs).values() for row in m.values() for k in row
                   if k.startswith("hack/") and k not in SKIP})


def monitor_table(runs: dict[tuple[str, int], object]) -> dict[str, dict[str, dict]]:
    """Per hack/* monitor and judged arm, over the arm's runs where the monitor is defined: the mean [min, max]
    correlation with the truth at lag 0, the mean best lag and the mean correlation there."""
    judged = judged_runs(runs)
    keys = sorted({k for m in judged.values() for row in m.values() for k in row
                   if k.startswith("hack/") and k not in SKIP})
    table: dict[str, dict[str, dict]] = {}
    for key in keys:
        for arm in sorted({a for a, _ in judged}):
            cs, lags, cl = [], [], []
            for (a, _), m in judged.items():
                if a != arm:
                    continue
                truth, mon = truth_curve(m), rolling(m, key)
                c = corr_at(mon, truth)
                if c is None:
                    continue
                cs.append(c)
                lag = best_lag(mon, truth)
                if lag is not None:
                    lags.append(lag)
                    cl.append(corr_at(mon, truth, lag))
            if cs:
                table.setdefault(key, {})[arm] = {"runs": len(cs), "corr": _mean(cs), "corr_min": min(cs),
                                                  "corr_max": max(cs), "best_lag": _mean(lags),
                                                  "corr_at_best_lag": _mean(cl)}
    return table


def _mean(xs) -> Optional[float]:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def plot_monitors(runs: dict[tuple[str, int], object], path, keys=("hack/prm_ok_given_vr_wrong", "hack/prm_ok_vr_wrong")) -> bool:
    """One panel per judged run: the pooled false-accept rate and the rolling `keys` against step, with the
    rise (dashed) and the first warning (dotted). False when there is no judged run."""
    import matplotlib  # about a second to import: only when plotting

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    judged = judged_runs(runs)
    if not judged:
        return False
    fig, axes = plt.subplots(1, len(judged), figsize=(4.5 * len(judged), 3.6), squeeze=False)
    for ax, ((arm, seed), m) in zip(axes.flat, sorted(judged.items())):
        truth = truth_curve(m)
        ax.plot(sorted(truth), [truth[s] for s in sorted(truth)], color="black", label="judge false-accept rate (truth)")
        for key in keys:
            r = rolling(m, key)
            if r:
                ax.plot(sorted(r), [r[s] for s in sorted(r)], label=key)
        rise, warn = rise_step(truth), first_warning(m)
        if rise:
            ax.axvline(rise, color="black", ls="--", lw=0.8)
        if warn:
            ax.axvline(warn, color="tab:red", ls=":", lw=1.2)
        ax.set_title(f"{arm} seed {seed} (10-step windows)", fontsize=9)
        ax.set_xlabel("RL step")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
