"""The judge's work per training step, and the judge against a task's step checker (rl_prm.tasks).

    judge_cost_metrics(rows)      prm/judge_prompts, prm/critique_tokens, ... from one row per response
    truth_row(first_wrong, answer_correct, scores, judged)   one response's process flags and judge-vs-checker counts
    judge_truth_metrics(rows)     process/* rates and judge/* on-policy error rates of a step
    pooled_rate(steps, "judge/false_accept_rate")   a judge/* rate over several steps' metrics, by its counts
"""

from __future__ import annotations

import math
from typing import Iterable, Optional, Sequence

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
    for key, num, den in (("false_accept_rate", "truth_first_errors_passed", "truth_first_errors"),  # RATE_COUNT
                          ("false_reject_rate", "truth_right_steps_flagged", "truth_right_steps"),
                          ("flawed_passed_rate", "truth_flawed_passed", "truth_flawed"),
                          ("miracles_passed_rate", "truth_miracles_passed", "truth_miracles")):
        if tot[den]:
            out[f"judge/{key}"] = tot[num] / tot[den]
    return out


# each judge/* rate of judge_truth_metrics -> the count it is a share of
RATE_COUNT = {"judge/false_accept_rate": "judge/first_errors", "judge/false_reject_rate": "judge/right_steps",
              "judge/flawed_passed_rate": "judge/flawed_responses", "judge/miracles_passed_rate": "judge/miracles"}


def pooled_rate(steps: Iterable[dict], rate: str) -> Optional[float]:
    """A judge/* rate over several training steps' metrics, each step weighted by its count (RATE_COUNT):
    sum(rate x count) / sum(count), what the rate is over the steps' responses together. None: nothing counted."""
    count = RATE_COUNT[rate]
    rows = [m for m in steps if m.get(count)]
    den = sum(m[count] for m in rows)
    return sum(m.get(rate, 0.0) * m[count] for m in rows) / den if den else None
