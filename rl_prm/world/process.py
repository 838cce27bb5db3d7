"""Process metrics of world solutions: is the answer right, and is every step right?

    flags = process_flags(question, response_text, answer_correct)   # {"trace", "answer", "miracle"}
    m = process_metrics(questions, texts, answer_correct)            # eval/trace_accuracy, ...
    info = reward_extra_flags(non_tensor_batch_row, text, outcome)   # verl reward_extra_info (world rows)

Every step of a response (split on blank lines, rl_prm.steps.split_steps) is recomputed by the
world's checker (rl_prm.world.tasks.first_wrong_step). Per solution:
    answer    the verifiable reward graded the final answer right
    trace     the answer is right AND every step is right
    miracle   the answer is right but some step is wrong (what an outcome reward pays for and a
              process reward does not); answer = trace + miracle
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

WORLD_SOURCE = "world"  # data_source / source of the world's rows (local rows and verl parquet)
PROCESS_KEYS = ("trace_accuracy", "answer_accuracy", "miracle_rate")


def process_flags(question: str, text: str, answer_correct: bool) -> dict[str, float]:
    """1.0/0.0 flags of one solution: answer (as graded), trace (answer right and every step right
    by recomputation), miracle (answer right, some step wrong)."""
    from rl_prm.steps import split_steps
    from rl_prm.world.tasks import first_wrong_step

    steps_ok = first_wrong_step(question, split_steps(text)) == -1
    answer = bool(answer_correct)
    return {"answer": float(answer), "trace": float(answer and steps_ok), "miracle": float(answer and not steps_ok)}


def process_metrics(questions: Sequence[str], texts: Sequence[str], answer_correct: Sequence[float],
                    prefix: str = "eval/") -> dict[str, float]:
    """Means over solutions: <prefix>trace_accuracy, answer_accuracy, miracle_rate (fractions of all
    solutions, so answer_accuracy = trace_accuracy + miracle_rate). Empty input -> {}."""
    if not texts:
        return {}
    flags = [process_flags(q, t, a > 0.5) for q, t, a in zip(questions, texts, answer_correct)]
    n = len(flags)
    return {f"{prefix}trace_accuracy": sum(f["trace"] for f in flags) / n,
            f"{prefix}answer_accuracy": sum(f["answer"] for f in flags) / n,
            f"{prefix}miracle_rate": sum(f["miracle"] for f in flags) / n}


def reward_extra_flags(non_tensor: Mapping[str, Any], text: str, outcome: Optional[float]) -> dict[str, float]:
    """The process flags of one verl response for its reward_extra_info (verl's validation averages
    them per data source): {"trace_correct", "answer_correct", "miracle"} for a world row
    (data_source "world", extra_info.question as rl_prm.backends.verl_backend.world_rows writes it)
    with a graded outcome; {} for any other row (no checker), so every row of a batch has the same keys."""
    extra = non_tensor.get("extra_info") or {}
    question = extra.get("question") if isinstance(extra, Mapping) else None
    if non_tensor.get("data_source") != WORLD_SOURCE or outcome is None or not question:
        return {}
    f = process_flags(str(question), text, float(outcome) > 0.5)
    return {"trace_correct": f["trace"], "answer_correct": f["answer"], "miracle": f["miracle"]}
