"""Verifiable math reward on top of HuggingFace `math_verify` (parse + verify), in verl's signature.

verl:
    reward.custom_reward_function.path=reward_fns/math_verify_reward.py
    reward.custom_reward_function.name=compute_score

    compute_score(data_source, solution_str, ground_truth, extra_info=None) -> float  (1.0 / 0.0)
    score_detail(solution_str, ground_truth, ...) -> {"score", "pred", "gold", "status"}

What is graded: the content of the LAST ``\\boxed{...}`` (or ``\\fbox``) in the solution; without a box,
the last GSM8K-style ``#### x``; without either, an anchored "final answer is x" / "answer: x"
(math_verify's anchored extraction, no free-floating numbers). Golds may be plain (``18``,
``\\frac{1}{2}``), GSM8K ``... #### 1,000`` texts, boxed solutions, or a list of acceptable answers.
Equivalence (1/2 = \\frac{1}{2} = 0.5, \\dfrac, degrees, percentages, sets, tuples, intervals, ...)
is math_verify's; we only normalise around it (thousands commas, currency, plain-word units after
a number when the gold is a number, a trailing period).

Never raises: None / empty / non-UTF-8 bytes / huge inputs give 0.0 and bump a counter in the
module-level, thread-safe ``STATS`` (see ``get_stats()`` / ``reset_stats()``). Statuses/counter keys:
correct, wrong, no_answer, malformed, too_long, bad_gold, timeout, error (plus "calls").

Timeouts: math_verify's timeouts use SIGALRM, which only works in the main thread. In the main
thread we use them (and re-arm any outer ITIMER_REAL alarm, e.g. verl's compute_score_timeout,
afterwards). In other threads (verl's reward loop calls us via run_in_executor) grading runs in a
small spawn process pool whose workers grade in their main thread with signal timeouts; a worker
stuck past a hard deadline is killed and the pool restarted. Set RL_PRM_REWARD_THREAD_MODE=inline
to grade in-thread without timeouts instead (length caps still apply).
Env: RL_PRM_REWARD_TIMEOUT (s per parse/verify, default 3), RL_PRM_REWARD_WORKERS (default 2).
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import re
import signal
import threading
import time
from functools import lru_cache
from typing import Any

from rl_prm.data.answers import NUMERIC as _NUMERIC
from rl_prm.data.answers import extract_answer, gold_text as _gold_text
from rl_prm.data.answers import normalize_answer as _normalize, strip_wrappers as _strip_wrappers
from rl_prm.data.answers import last_boxed_or_earlier as _last_boxed  # noqa: F401

__all__ = ["STATS", "compute_score", "extract_answer", "get_stats", "reset_stats", "score_detail"]

MAX_SOLUTION_CHARS = 200_000  # ~50k tokens; longer responses are "too_long" (0.0)
MAX_ANSWER_CHARS = 1_000  # extracted answer / gold longer than this is "too_long" / "bad_gold"
TIMEOUT_S = max(1, int(os.environ.get("RL_PRM_REWARD_TIMEOUT", "3")))
THREAD_MODE = os.environ.get("RL_PRM_REWARD_THREAD_MODE", "process")  # process | inline
N_WORKERS = max(1, int(os.environ.get("RL_PRM_REWARD_WORKERS", "2")))

STRING_SHORTCUT = True  # identical normalised strings are correct without calling math_verify

STATUSES = ("correct", "wrong", "no_answer", "malformed", "too_long", "bad_gold", "timeout", "error")
STATS: collections.Counter = collections.Counter()
_STATS_LOCK = threading.Lock()

# math_verify logs a warning per timeout and one about disabled timeouts; we count them instead.
logging.getLogger("math_verify").setLevel(logging.ERROR)


def _bump(status: str) -> None:
    with _STATS_LOCK:
        STATS["calls"] += 1
        STATS[status] += 1


def get_stats() -> dict[str, int]:
    """Snapshot of the counters (every status key present)."""
    with _STATS_LOCK:
        out = {k: 0 for k in ("calls", *STATUSES)}
        out.update(STATS)
        return out


def reset_stats() -> None:
    with _STATS_LOCK:
        STATS.clear()


# ------------------------------------------------------------------------------------------ grading


class _Timeout(Exception):
    pass


def _mv():
    import math_verify  # noqa: F401  (lazy: keeps `import reward_fns` cheap)
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
    from math_verify.errors import TimeoutException

    return parse, verify, LatexExtractionConfig, ExprExtractionConfig, TimeoutException


def _parse(text: str, configs, timeout: int | None):
    parse, _, _, _, TimeoutException = _mv()
    try:
        return parse(text, configs, parsing_timeout=timeout, raise_on_error=True)
    except TimeoutException as e:
        raise _Timeout() from e
    except Exception:
        return []


@lru_cache(maxsize=8192)
def _parse_gold(gold: str, timeout: int | None) -> tuple:
    _, _, Latex, Expr, _ = _mv()
    res = _parse("\\boxed{" + gold + "}", [Latex()], timeout)
    if not any(not isinstance(r, str) for r in res):
        res2 = _parse(gold, [Expr()], timeout)
        if res2:
            res = res2 + [r for r in res if isinstance(r, str)]
    return tuple(res)


def _parse_pred(pred: str, how: str, timeout: int | None) -> list:
    _, _, Latex, Expr, _ = _mv()
    if how == "anchor":
        return _parse(
            pred,
            [Latex(try_extract_without_anchor=False), Expr(try_extract_without_anchor=False)],
            timeout,
        )
    res = _parse("\\boxed{" + pred + "}", [Latex()], timeout)
    if not any(not isinstance(r, str) for r in res):
        res2 = _parse(pred, [Expr()], timeout)
        if res2:
            res = res2 + [r for r in res if isinstance(r, str)]
    return res


def _verify_any(golds, preds, timeout: int | None) -> bool:
    _, verify, _, _, TimeoutException = _mv()
    timed_out = False
    for g in golds:
        for p in preds:
            try:
                if verify(g, p, timeout_seconds=timeout, raise_on_error=True):
                    return True
            except TimeoutException:
                timed_out = True
            except Exception:
                pass
    if timed_out:
        raise _Timeout()
    return False


_BASE = re.compile(r"^([0-9A-Za-z]+)_\{?(\d+)\}?$")


def _bases_differ(golds: tuple[str, ...], pred: str) -> bool:
    mp = _BASE.match(pred.replace(" ", ""))
    if not mp:
        return False
    for g in golds:
        mg = _BASE.match(_normalize(g).replace(" ", ""))
        if not mg or mg.group(2) == mp.group(2):
            return False
    return True


def _grade(golds: tuple[str, ...], pred: str, how: str, timeout: int | None) -> tuple[float, str]:
    """Core grading of already-extracted strings -> (score, status). Runs where signals may work."""
    try:
        gold_is_number = all(_NUMERIC.match(_strip_wrappers(g)) for g in golds)
        pred_n = pred if how == "anchor" else _normalize(pred, gold_is_number)
        if not pred_n.strip():
            return 0.0, "no_answer"
        parsed_golds = []
        for g in golds:
            parsed_golds.extend(_parse_gold(_normalize(g), timeout))
        if not parsed_golds:
            return 0.0, "bad_gold"
        # exact normalised string match first (cheap; covers text answers)
        if STRING_SHORTCUT and how != "anchor" and any(pred_n == _normalize(g) for g in golds):
            return 1.0, "correct"
        if how != "anchor" and _bases_differ(golds, pred_n):
            return 0.0, "wrong"  # 52_8 vs 52_9: math_verify drops the base subscript
        preds = _parse_pred(pred_n, how, timeout)
        if not preds:
            return 0.0, "no_answer" if how == "anchor" else "wrong"
        return (1.0, "correct") if _verify_any(parsed_golds, preds, timeout) else (0.0, "wrong")
    except _Timeout:
        return 0.0, "timeout"
    except RecursionError:
        return 0.0, "error"
    except Exception:
        return 0.0, "error"


def _grade_main_thread(golds, pred, how) -> tuple[float, str]:
    """Grade with math_verify's SIGALRM timeouts, restoring an outer ITIMER_REAL alarm afterwards."""
    outer_handler = signal.getsignal(signal.SIGALRM)
    outer = signal.getitimer(signal.ITIMER_REAL)
    t0 = time.monotonic()
    try:
        return _grade(golds, pred, how, TIMEOUT_S)
    finally:
        if outer[0] > 0:
            try:
                signal.signal(signal.SIGALRM, outer_handler)
                left = max(outer[0] - (time.monotonic() - t0), 1e-3)
                signal.setitimer(signal.ITIMER_REAL, left, outer[1])
            except Exception:
                pass


_POOL = None
_POOL_LOCK = threading.Lock()


def _worker_grade(golds, pred, how) -> tuple[float, str]:  # runs in a pool process's main thread
    return _grade(tuple(golds), pred, how, TIMEOUT_S)


def _get_pool():
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            _POOL = ProcessPoolExecutor(max_workers=N_WORKERS, mp_context=multiprocessing.get_context("spawn"))
            atexit.register(_shutdown_pool, _POOL)
        return _POOL


def _shutdown_pool(pool) -> None:
    try:
        pool.shutdown(wait=True, cancel_futures=True)
    except Exception:
        pass


def _kill_pool(pool) -> None:
    global _POOL
    with _POOL_LOCK:
        if _POOL is pool:
            _POOL = None
    for p in list(getattr(pool, "_processes", {}).values()):
        try:
            p.kill()
        except Exception:
            pass
    try:
        pool.shutdown(wait=False, cancel_futures=True)
    except Exception:
        pass


def _grade_other_thread(golds, pred, how) -> tuple[float, str]:
    if THREAD_MODE == "inline":
        return _grade(golds, pred, how, None)
    from concurrent.futures import TimeoutError as FutTimeout
    from concurrent.futures.process import BrokenProcessPool

    # 2 parses per gold+pred, one verify per pair, each bounded by TIMEOUT_S in the worker
    # verl loads this file under a synthetic module name that a spawned process cannot import, so the
    # pool runs the function of the installed package module (same code).
    try:
        from reward_fns.math_verify_reward import _worker_grade as worker
    except Exception:
        return _grade(golds, pred, how, None)
    deadline = TIMEOUT_S * (2 + 2 * len(golds) + 4 * len(golds)) + 30
    for attempt in range(2):
        pool = _get_pool()
        try:
            fut = pool.submit(worker, golds, pred, how)
            return fut.result(timeout=deadline)
        except FutTimeout:
            _kill_pool(pool)
            return 0.0, "timeout"
        except BrokenProcessPool:
            _kill_pool(pool)  # killed by a timeout elsewhere / OOM: retry once on a fresh pool
            if attempt:
                return 0.0, "error"
        except Exception:
            return 0.0, "error"
    return 0.0, "error"


# --------------------------------------------------------------------------------------- public API


def _as_text(x: Any) -> str | None:
    if isinstance(x, str):
        try:
            x.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates
            x = x.encode("utf-8", "replace").decode("utf-8")
        return x
    if isinstance(x, (bytes, bytearray, memoryview)):
        try:
            return bytes(x).decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None


def _golds(ground_truth: Any) -> tuple[str, ...] | None:
    items = ground_truth
    if hasattr(items, "tolist") and not isinstance(items, (str, bytes)):
        items = items.tolist()  # numpy scalars/arrays from parquet
    if not isinstance(items, (list, tuple)):
        items = [items]
    out = []
    for g in items:
        if isinstance(g, bool) or g is None:
            return None
        if isinstance(g, (int, float)):
            g = repr(g) if isinstance(g, float) else str(g)
        t = _as_text(g)
        if t is None:
            return None
        t = _gold_text(t)
        if t:
            out.append(t)
    return tuple(out) or None


def score_detail(solution_str: Any, ground_truth: Any, data_source: str | None = None, extra_info: Any = None) -> dict:
    """Grade one solution: {"score": 1.0|0.0, "pred": extracted answer or None, "gold": str|None, "status"}."""
    try:
        gold_list = _golds(ground_truth)
        gold_str = " | ".join(gold_list) if gold_list else None
        text = _as_text(solution_str)
        if text is None:
            status, pred = "malformed", None
        elif gold_list is None:
            status, pred = "bad_gold", None
        elif any(len(g) > MAX_ANSWER_CHARS for g in gold_list):
            status, pred = "bad_gold", None
        elif len(text) > MAX_SOLUTION_CHARS:
            status, pred = "too_long", None
        else:
            pred, how = extract_answer(text)
            if pred is None or not pred.strip():
                status = "no_answer"
            elif how != "anchor" and len(pred) > MAX_ANSWER_CHARS:
                status = "too_long"
            elif threading.current_thread() is threading.main_thread():
                _, status = _grade_main_thread(gold_list, pred, how)
            else:
                _, status = _grade_other_thread(gold_list, pred, how)
            if how == "anchor":
                pred = pred[-200:]
    except Exception:
        status, pred, gold_str = "error", None, None
    _bump(status)
    return {"score": 1.0 if status == "correct" else 0.0, "pred": pred, "gold": gold_str, "status": status}


def compute_score(data_source=None, solution_str=None, ground_truth=None, extra_info=None, **kwargs) -> float:
    """verl custom reward: 1.0 if the final answer matches the gold (math_verify), else 0.0."""
    return score_detail(solution_str, ground_truth, data_source=data_source, extra_info=extra_info)["score"]
