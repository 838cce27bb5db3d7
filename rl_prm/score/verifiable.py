"""The verifiable (outcome) reward of responses: math-verify on the last \\boxed{} against the gold
answer (reward_fns/math_verify_reward.py, also verl's custom_reward_function)."""

from __future__ import annotations

from typing import Sequence

from reward_fns.math_verify_reward import compute_score


def verifiable_rewards(rows: Sequence[dict], texts: Sequence[str]) -> list[float]:
    """1.0 / 0.0 per response: rows[i]["answer"] is the gold answer of texts[i]."""
    return [float(compute_score(r.get("source", "tiny_arith"), t, r["answer"])) for r, t in zip(rows, texts)]
