"""The exact R-PRM judge prompt (docs/protocols.md, "R-PRM step scoring").

The user turn is `rprm_prompt_template.txt` (shipped verbatim, the interface the released
R-PRM-7B-DPO was trained on) with its three `{}` slots filled, in order, by
  1. the question,
  2. the previous steps: "Step 1: <text>\\nStep 2: <text>" joined with real newlines, or for the
     first step exactly FIRST_STEP_PREVIOUS,
  3. the now step: "Step k: <text>" (1-based k).
It is wrapped in the judge tokenizer's chat template with system prompt SYSTEM_PROMPT and the
assistant generation prompt. The critique ends with VERDICT_PHRASE followed by " Yes" / " No".
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files
from typing import Any, Sequence

SYSTEM_PROMPT = "You are a helpful assistant."
FIRST_STEP_PREVIOUS = "Since the Now Step is the first step, there are no Previous Steps."
VERDICT_QUESTION = "Is the step correct (Yes/No)?"
VERDICT_PHRASE = "Verification: " + VERDICT_QUESTION
YES, NO = " Yes", " No"


@lru_cache(maxsize=1)
def template() -> str:
    """The R-PRM user-turn template, byte for byte (three `{}` slots)."""
    text = files("rl_prm.score").joinpath("rprm_prompt_template.txt").read_text(encoding="utf-8")
    if text.count("{}") != 3:
        raise RuntimeError("rprm_prompt_template.txt must hold exactly three {} slots")
    return text


def _fill(tmpl: str, *values: str) -> str:
    # Not str.format: the question may hold braces (LaTeX), and only the template's own
    # three "{}" are slots.
    parts = tmpl.split("{}")
    out = [parts[0]]
    for value, tail in zip(values, parts[1:]):
        out += [value, tail]
    return "".join(out)


def _check(question: Any, steps: Any, k: int) -> None:
    if not isinstance(question, str) or not question.strip():
        raise ValueError("R-PRM prompt: question must be a non-empty string")
    if isinstance(steps, str) or not isinstance(steps, Sequence) or len(steps) == 0:
        raise ValueError("R-PRM prompt: steps must be a non-empty list of strings")
    for i, s in enumerate(steps):
        if not isinstance(s, str) or not s.strip():
            raise ValueError(f"R-PRM prompt: step {i + 1} is empty or not a string")
    if not 0 <= k < len(steps):
        raise ValueError(f"R-PRM prompt: step index {k} out of range for {len(steps)} steps")


def user_prompt(question: str, steps: Sequence[str], k: int) -> str:
    """User turn judging step `k` (0-based) of `steps`, given steps[:k] as the previous steps."""
    _check(question, steps, k)
    previous = (
        "\n".join(f"Step {i + 1}: {s}" for i, s in enumerate(steps[:k])) if k > 0 else FIRST_STEP_PREVIOUS
    )
    return _fill(template(), question, previous, f"Step {k + 1}: {steps[k]}")


def messages(question: str, steps: Sequence[str], k: int) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": user_prompt(question, steps, k)},
    ]


def judge_prompt(tokenizer: Any, question: str, steps: Sequence[str], k: int) -> str:
    """Full judge input text: the chat template applied, ending with the assistant header."""
    return tokenizer.apply_chat_template(messages(question, steps, k), tokenize=False, add_generation_prompt=True)
