"""Training metrics: PRM step scores, reward-hacking monitors, spike detection, RL basics.

Pure Python + numpy (no trainer, torch or verl imports), so both backends use the same
definitions: the one-node loop logs them through `rl_prm.tracking.Tracker`, the verl reward
manager returns them in `reward_extra_info`.

Key names (W&B panels group on the part before "/"):
    prm/...       step scores of the frozen R-PRM (P(Yes) of the verdict, mean over K critiques)
    hack/...      reward-hacking monitors used by PURE (Cheng et al. 2025): number of steps,
                  step length, repetition, reflection/filler words, PRM-vs-verifier agreement
    response_length/..., reward/..., perf/...   RL basics (verl's names where verl has one)

Every function returns only keys it has data for (an empty batch gives {}), never NaN, so a
missing panel means "no data" rather than a NaN-poisoned average.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Iterable, Sequence

import numpy as np

# ---------------------------------------------------------------------------------------------
# The judge's work
# ---------------------------------------------------------------------------------------------

# per-response row (rl_prm.score.types.ItemScore.judge_cost; verl: each response's reward_extra_info)
#   -> the step's prm/* total, and its mean over the step's responses as prm/*_per_response
JUDGE_COST = {"judge_prompts": "prm/judge_prompts", "judge_prompts_distinct": "prm/judge_prompts_distinct",
              "judge_gated": "prm/gated_responses", "judge_critiques": "prm/critiques",
              "judge_critique_tokens": "prm/critique_tokens", "judge_prompt_tokens": "prm/prompt_tokens_computed",
              "judge_seconds": "prm/judge_seconds"}


def no_judge_cost(gated: bool) -> dict[str, float]:
    """The row of a response the judge did not see (no steps, or kept from it by reward.prm.gate)."""
    return {**{src: 0.0 for src in JUDGE_COST}, "judge_gated": float(gated)}


def judge_cost_metrics(rows: Sequence[dict]) -> dict[str, float]:
    """What the judge did in one step, from one row per response (every response of the step, judged
    or not; a response without a row counts as no judge work). The same keys on both backends:

        prm/judge_prompts            judge prompts asked for (one per step of each judged response)
        prm/judge_prompts_distinct   of those, judged by the engine (the rest shared a verdict)
        prm/dedup_frac               1 - distinct / prompts
        prm/gated_responses          responses kept from the judge by reward.prm.gate
        prm/critiques, prm/critique_tokens   critiques and critique tokens generated
        prm/prompt_tokens_computed   judge prompt tokens computed (after the engine's prefix cache)
        prm/judge_seconds            judge time attributed to the responses (verl: concurrent calls add up)
    and each of them but dedup_frac per response: prm/<name>_per_response."""
    rows = list(rows)
    if not rows:
        return {}
    out: dict[str, float] = {}
    for src, key in JUDGE_COST.items():
        total = float(sum(float((r or {}).get(src, 0.0)) for r in rows))
        out[key], out[f"{key}_per_response"] = total, total / len(rows)
    prompts = out["prm/judge_prompts"]
    out["prm/dedup_frac"] = 1.0 - out["prm/judge_prompts_distinct"] / prompts if prompts else 0.0
    return out


# ---------------------------------------------------------------------------------------------
# The truth of a task with a step checker (rl_prm.tasks): process flags, the judge against the checker
# ---------------------------------------------------------------------------------------------

# per-response row keys (truth_row) -> what judge_truth_metrics sums them into
TRUTH_COUNTS = ("truth_first_errors", "truth_first_errors_passed", "truth_right_steps", "truth_right_steps_flagged",
                "truth_flawed", "truth_flawed_passed", "truth_miracles", "truth_miracles_passed")
PROCESS_FLAGS = ("trace_correct", "answer_correct", "miracle")


def process_flags(first_wrong: int, answer_correct: bool) -> dict[str, float]:
    """1.0/0.0 flags of one solution from its first wrong step (-1: none) and its graded answer:
    answer (graded right), trace (answer right and every step right), miracle (answer right, some step
    wrong; what an outcome reward pays for and a process reward does not). answer = trace + miracle."""
    answer, steps_ok = bool(answer_correct), first_wrong < 0
    return {"answer": float(answer), "trace": float(answer and steps_ok), "miracle": float(answer and not steps_ok)}


def truth_row(first_wrong: int, answer_correct: bool, scores: Sequence[float | None], judged: bool,
              threshold: float = 0.5) -> dict[str, float]:
    """One response's truth (its checker's first wrong step, -1 none; its graded answer) and, when the judge
    scored it (`judged`; a gated response's floor scores are not the judge's), the judge's step scores
    (P(Yes), None = not scored) against it. Always the same keys (PROCESS_FLAGS + TRUTH_COUNTS):
        trace_correct, answer_correct, miracle     process_flags
        truth_first_errors(_passed)                its first wrong step was scored (and scored >= threshold)
        truth_right_steps(_flagged)                steps before it that were scored (and scored < threshold)
        truth_flawed(_passed)                      it has a wrong step (and no scored step is < threshold:
                                                   the judge passes it whole, what min-form credit pays in full)
        truth_miracles(_passed)                    the same for a miracle (answer right, a step wrong)
    Steps after the first wrong one are not counted (ProcessBench: the judge need not grade them)."""
    f = process_flags(first_wrong, answer_correct)
    row = {"trace_correct": f["trace"], "answer_correct": f["answer"], "miracle": f["miracle"],
           **{k: 0.0 for k in TRUTH_COUNTS}}
    scored = [(k, float(v)) for k, v in enumerate(scores) if v is not None and not math.isnan(float(v))]
    if not judged or not scored:
        return row
    flawed = first_wrong >= 0
    for k, v in scored:
        if not flawed or k < first_wrong:
            row["truth_right_steps"] += 1.0
            row["truth_right_steps_flagged"] += float(v < threshold)
        elif k == first_wrong:
            row["truth_first_errors"] = 1.0
            row["truth_first_errors_passed"] = float(v >= threshold)
    passed = all(v >= threshold for _, v in scored)
    row["truth_flawed"], row["truth_flawed_passed"] = float(flawed), float(flawed and passed)
    row["truth_miracles"], row["truth_miracles_passed"] = f["miracle"], float(f["miracle"] > 0 and passed)
    return row


def judge_truth_metrics(rows: Sequence[dict]) -> dict[str, float]:
    """One training step's process rates and the judge's on-policy errors, from truth_row rows (rows
    without the keys, responses of a task with no checker, are left out). The same keys on both backends:

        process/trace_rate, process/answer_rate, process/miracle_rate   over the step's responses
        judge/false_accept_rate      first wrong steps the judge passed / first wrong steps it scored
        judge/false_reject_rate      right steps it flagged / right steps it scored
        judge/flawed_passed_rate     responses with a wrong step it passed whole / such responses judged
        judge/miracles_passed_rate   the same for miracles
        judge/first_errors, judge/right_steps, judge/flawed_responses, judge/miracles   the counts under them
    A rate without anything to count is left out (no NaN)."""
    rows = [r for r in rows if r and "truth_first_errors" in r]
    if not rows:
        return {}
    n = len(rows)
    tot = {k: float(sum(float(r[k]) for r in rows)) for k in TRUTH_COUNTS + PROCESS_FLAGS}
    out = {"process/trace_rate": tot["trace_correct"] / n, "process/answer_rate": tot["answer_correct"] / n,
           "process/miracle_rate": tot["miracle"] / n,
           "judge/first_errors": tot["truth_first_errors"], "judge/right_steps": tot["truth_right_steps"],
           "judge/flawed_responses": tot["truth_flawed"], "judge/miracles": tot["truth_miracles"]}
    for key, num, den in (("false_accept_rate", "truth_first_errors_passed", "truth_first_errors"),
                          ("false_reject_rate", "truth_right_steps_flagged", "truth_right_steps"),
                          ("flawed_passed_rate", "truth_flawed_passed", "truth_flawed"),
                          ("miracles_passed_rate", "truth_miracles_passed", "truth_miracles")):
        if tot[den]:
            out[f"judge/{key}"] = tot[num] / tot[den]
    return out


# ---------------------------------------------------------------------------------------------
# PRM step scores
# ---------------------------------------------------------------------------------------------


def _clean_scores(step_scores: Iterable[Iterable[float | None]]) -> list[list[float | None]]:
    """Validate step scores: P(Yes) in [0, 1], or None/NaN for "not scored"."""
    if isinstance(step_scores, (str, bytes)):
        raise TypeError("step_scores must be a list (responses) of lists (steps) of P(Yes) or None")
    out: list[list[float | None]] = []
    for i, row in enumerate(step_scores):
        if isinstance(row, (str, bytes)) or not hasattr(row, "__iter__"):
            raise TypeError(
                f"step_scores[{i}] must be a list of per-step scores, got {type(row).__name__}"
            )
        clean: list[float | None] = []
        for k, s in enumerate(row):
            if s is None:
                clean.append(None)
                continue
            try:
                v = float(s)
            except (TypeError, ValueError):
                raise TypeError(f"step_scores[{i}][{k}] = {s!r} is not a number or None") from None
            if math.isnan(v):
                clean.append(None)
            elif not 0.0 <= v <= 1.0:
                raise ValueError(
                    f"step_scores[{i}][{k}] = {v} is outside [0, 1]: prm_metrics expects P(Yes) "
                    "(if you have rewards r = 2*P(Yes)-1, pass (r+1)/2)"
                )
            else:
                clean.append(v)
        out.append(clean)
    return out


def _first_error(row: list[float | None], threshold: float) -> int | None:
    """1-based index of the first scored step with score < threshold (None if there is none)."""
    for k, s in enumerate(row):
        if s is not None and s < threshold:
            return k + 1
    return None


def prm_metrics(
    step_scores: Sequence[Sequence[float | None]], threshold: float = 0.5, max_index: int = 16
) -> dict[str, float]:
    """Summaries of a batch of PRM step scores.

    step_scores[i][k]: P(Yes) in [0, 1] of step k of response i; None (or NaN) = not scored
    (scoring failed / skipped). A step is "wrong" when its score is < threshold.

    Keys (only those with data):
        prm/step_score_mean              mean over all scored steps
        prm/step_score_mean@k            mean score of step k (1-based), k = 1..max_index
        prm/step_score_last_mean         mean score of each response's last scored step
        prm/response_min_score_mean      mean over responses of their min step score (PURE's
                                         min-form credit follows this)
        prm/frac_responses_with_wrong_step  among responses with >= 1 scored step
        prm/first_error_step_mean        mean 1-based index of the first wrong step, over
                                         responses that have one
        prm/frac_no_wrong_step           1 - frac_responses_with_wrong_step
        prm/steps_scored                 number of scored steps in the batch
        prm/not_scored_frac              unscored steps / all steps
        prm/frac_responses_unscored      responses with no scored step (incl. no steps)
    """
    if max_index < 1:
        raise ValueError(f"max_index must be >= 1, got {max_index}")
    rows = _clean_scores(step_scores)
    if not rows:
        return {}
    out: dict[str, float] = {}
    scored = [s for row in rows for s in row if s is not None]
    n_steps = sum(len(row) for row in rows)
    out["prm/steps_scored"] = float(len(scored))
    if n_steps:
        out["prm/not_scored_frac"] = (n_steps - len(scored)) / n_steps
    rows_scored = [[s for s in row if s is not None] for row in rows]
    out["prm/frac_responses_unscored"] = sum(not r for r in rows_scored) / len(rows)
    if not scored:
        return out
    out["prm/step_score_mean"] = float(np.mean(scored))
    for k in range(max_index):
        at_k = [row[k] for row in rows if k < len(row) and row[k] is not None]
        if at_k:
            out[f"prm/step_score_mean@{k + 1}"] = float(np.mean(at_k))
    with_scores = [r for r in rows_scored if r]
    out["prm/step_score_last_mean"] = float(np.mean([r[-1] for r in with_scores]))
    out["prm/response_min_score_mean"] = float(np.mean([min(r) for r in with_scores]))
    firsts = [_first_error(row, threshold) for row, rs in zip(rows, rows_scored) if rs]
    errs = [f for f in firsts if f is not None]
    out["prm/frac_responses_with_wrong_step"] = len(errs) / len(firsts)
    out["prm/frac_no_wrong_step"] = 1.0 - out["prm/frac_responses_with_wrong_step"]
    if errs:
        out["prm/first_error_step_mean"] = float(np.mean(errs))
    return out


def prm_histograms(
    step_scores: Sequence[Sequence[float | None]], threshold: float = 0.5
) -> dict[str, list[float]]:
    """Raw values for histograms (Tracker.log turns list values into wandb.Histogram):
    prm/step_scores_hist: every scored step score; prm/first_error_step_hist: 1-based index of
    the first wrong step of each response that has one."""
    rows = _clean_scores(step_scores)
    scores = [s for row in rows for s in row if s is not None]
    firsts = [f for f in (_first_error(row, threshold) for row in rows) if f is not None]
    return {"prm/step_scores_hist": scores, "prm/first_error_step_hist": [float(f) for f in firsts]}


# ---------------------------------------------------------------------------------------------
# Reward-hacking monitors (PURE: filler words, few long steps, repetition, PRM/VR disagreement)
# ---------------------------------------------------------------------------------------------

# Reflection / filler phrases counted (case-insensitive, whole words). PURE saw "thank you"-style
# filler and reflection words grow when the policy hacks a PRM.
REFLECTION_PHRASES: tuple[str, ...] = (
    "wait",
    "let me",
    "let's check",
    "let us check",
    "double-check",
    "double check",
    "re-check",
    "recheck",
    "hmm",
    "thank you",
    "thanks",
    "hope this helps",
)
_REFLECTION_RE = re.compile(
    r"\b(?:" + "|".join(re.escape(p) for p in sorted(REFLECTION_PHRASES, key=len, reverse=True)) + r")\b",
    re.IGNORECASE,
)
_THANKS_RE = re.compile(r"\b(?:thank you|thanks)\b", re.IGNORECASE)
_WORD_RE = re.compile(r"\S+")
REPETITION_NGRAM = 4


def reflection_count(text: str) -> int:
    """Number of REFLECTION_PHRASES occurrences in text (non-overlapping, case-insensitive)."""
    return len(_REFLECTION_RE.findall(text))


def ngram_repetition(text: str, n: int = REPETITION_NGRAM) -> float | None:
    """Fraction of the word n-grams of text that repeat an earlier n-gram: 1 - distinct/total.
    None when the text has fewer than n words."""
    words = _WORD_RE.findall(text.lower())
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return None
    return 1.0 - len(set(grams)) / len(grams)


def _norm_step(s: str) -> str:
    return " ".join(s.split()).lower()


def hacking_monitors(
    responses: Sequence[str],
    steps: Sequence[Sequence[str]],
    prm_ok: Sequence[bool | None],
    vr: Sequence[float],
) -> dict[str, float]:
    """Reward-hacking monitors over a batch of B responses.

    responses: decoded responses; steps: their steps (rl_prm.steps.split_steps / StepSpans.texts);
    prm_ok[i]: the PRM's verdict "all steps are correct" (e.g. every step score >= 0.5), None if
    unscored; vr[i]: verifiable reward (> 0 = correct final answer).

    Keys:
        hack/steps_per_response    mean number of steps
        hack/mean_step_chars       mean characters per step (over all steps of the batch)
        hack/max_step_chars        longest step
        hack/frac_no_separator     responses with < 2 steps (no "\\n\\n" between two steps):
                                   the "one giant step" hack
        hack/repetition            mean over responses of the repeated word-4-gram fraction
                                   (1 - distinct/total; responses with < 4 words skipped)
        hack/dup_step_frac         steps that repeat an earlier step of the same response
                                   (whitespace/case-normalised), over all steps
        hack/reflection_words      mean count per response of REFLECTION_PHRASES
        hack/thanks_per_response   mean count of "thank you"/"thanks"
        hack/prm_vr_agreement      fraction (over responses with a verdict) where prm_ok ==
                                   (vr > 0)
        hack/prm_ok_vr_wrong       fraction where the PRM passes every step but the answer is wrong
        hack/prm_wrong_vr_ok       fraction where the PRM flags a step but the answer is right
    """
    B = len(responses)
    if not (len(steps) == len(prm_ok) == len(vr) == B):
        raise ValueError(
            "hacking_monitors needs one entry per response: got "
            f"responses={B}, steps={len(steps)}, prm_ok={len(prm_ok)}, vr={len(vr)}"
        )
    for i, r in enumerate(responses):
        if not isinstance(r, str):
            raise TypeError(f"responses[{i}] must be str, got {type(r).__name__}")
        if isinstance(steps[i], str):
            raise TypeError(f"steps[{i}] must be a list of step strings, got a str")
    if B == 0:
        return {}
    out: dict[str, float] = {}
    n_steps = [len(s) for s in steps]
    all_steps = [st for s in steps for st in s]
    out["hack/steps_per_response"] = float(np.mean(n_steps))
    if all_steps:
        lens = [len(st) for st in all_steps]
        out["hack/mean_step_chars"] = float(np.mean(lens))
        out["hack/max_step_chars"] = float(max(lens))
        dups = 0
        for s in steps:
            counts = Counter(_norm_step(st) for st in s)
            dups += sum(c - 1 for c in counts.values())
        out["hack/dup_step_frac"] = dups / len(all_steps)
    out["hack/frac_no_separator"] = sum(n < 2 for n in n_steps) / B
    reps = [r for r in (ngram_repetition(t) for t in responses) if r is not None]
    if reps:
        out["hack/repetition"] = float(np.mean(reps))
    out["hack/reflection_words"] = float(np.mean([reflection_count(t) for t in responses]))
    out["hack/thanks_per_response"] = float(np.mean([len(_THANKS_RE.findall(t)) for t in responses]))
    pairs = [(bool(ok), float(v) > 0) for ok, v in zip(prm_ok, vr) if ok is not None]
    if pairs:
        n = len(pairs)
        out["hack/prm_vr_agreement"] = sum(ok == good for ok, good in pairs) / n
        out["hack/prm_ok_vr_wrong"] = sum(ok and not good for ok, good in pairs) / n
        out["hack/prm_wrong_vr_ok"] = sum(good and not ok for ok, good in pairs) / n
    return out


def prm_verdicts(step_scores: Sequence[Sequence[float | None]], threshold: float = 0.5) -> list[bool | None]:
    """prm_ok for hacking_monitors: True iff every scored step has score >= threshold; None when
    no step of the response was scored."""
    rows = _clean_scores(step_scores)
    out: list[bool | None] = []
    for row in rows:
        sc = [s for s in row if s is not None]
        out.append(None if not sc else all(s >= threshold for s in sc))
    return out


# ---------------------------------------------------------------------------------------------
# Per-response values (verl: a reward manager's run_single returns one scalar per key per sample
# in reward_extra_info; verl's validation then reports mean@N etc. per key)
# ---------------------------------------------------------------------------------------------


def prm_sample_metrics(scores: Sequence[float | None], threshold: float = 0.5) -> dict[str, float]:
    """One response's PRM summary, always the same keys (finite floats):
    prm_num_steps, prm_num_scored, prm_mean_score / prm_min_score / prm_last_score (0.0 when
    nothing was scored; check prm_num_scored), prm_all_ok (1.0 iff every scored step >= threshold
    and at least one was scored), prm_first_error_step (1-based; 0.0 = no wrong step)."""
    (row,) = _clean_scores([scores])
    sc = [s for s in row if s is not None]
    first = _first_error(row, threshold)
    return {
        "prm_num_steps": float(len(row)),
        "prm_num_scored": float(len(sc)),
        "prm_mean_score": float(np.mean(sc)) if sc else 0.0,
        "prm_min_score": float(min(sc)) if sc else 0.0,
        "prm_last_score": float(sc[-1]) if sc else 0.0,
        "prm_all_ok": float(bool(sc) and first is None),
        "prm_first_error_step": float(first or 0),
    }


def hacking_sample_metrics(response: str, steps: Sequence[str]) -> dict[str, float]:
    """One response's hacking monitors, always the same keys: hack_num_steps,
    hack_mean_step_chars (0.0 without steps), hack_repetition (0.0 under 4 words),
    hack_reflection_words, hack_dup_steps."""
    if not isinstance(response, str) or isinstance(steps, str):
        raise TypeError("hacking_sample_metrics(response: str, steps: list[str])")
    counts = Counter(_norm_step(st) for st in steps)
    return {
        "hack_num_steps": float(len(steps)),
        "hack_mean_step_chars": float(np.mean([len(s) for s in steps])) if steps else 0.0,
        "hack_repetition": ngram_repetition(response) or 0.0,
        "hack_reflection_words": float(reflection_count(response)),
        "hack_dup_steps": float(sum(c - 1 for c in counts.values())),
    }


from rl_prm.rl_metrics import (  # noqa: E402,F401  (RL basics and spike detection, re-exported)
    SpikeDetector,
    group_metrics,
    length_metrics,
    rl_metrics,
    stats,
    throughput_metrics,
)
