"""The R-PRM judge prompt is byte-exact (docs/protocols.md, "R-PRM step scoring").

Expected strings are built here independently of rl_prm.score.prompt: literal pieces, the
template file read from disk, and the tiny judge's chat-template markup written out by hand.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import rl_prm
from rl_prm.score.prompt import judge_prompt, user_prompt

TEMPLATE_FILE = Path(rl_prm.__file__).parent / "score" / "rprm_prompt_template.txt"
REFERENCE_TEMPLATE = Path("/work/shared/reference/rprm_prompt_template.txt")

QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have? Use $\\{x\\}$."
STEPS = ["Tom starts with 3 apples.", "He buys 4 more, so 3 + 4 = 7 apples."]


def _filled(question: str, previous: str, now: str) -> str:
    text = TEMPLATE_FILE.read_text(encoding="utf-8")
    head, rest = text.split("Question: {}\n", 1)
    assert rest.startswith("Previous Steps: {}\nNow Step: {}\n")
    tail = rest[len("Previous Steps: {}\nNow Step: {}\n"):]
    return head + f"Question: {question}\n" + f"Previous Steps: {previous}\n" + f"Now Step: {now}\n" + tail


def _chat(user: str) -> str:
    return ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
            f"<|im_start|>user\n{user}<|im_end|>\n"
            "<|im_start|>assistant\n")


def test_template_file_matches_reference_and_has_real_newlines():
    text = TEMPLATE_FILE.read_text(encoding="utf-8")
    assert text.count("{}") == 3
    assert "\\n" not in text  # real newlines, not the reference file's literal backslash-n
    assert text.endswith("Please carefully analyze the correctness of the Now Step.\nReply: ")
    if REFERENCE_TEMPLATE.exists():
        assert text == REFERENCE_TEMPLATE.read_text(encoding="utf-8")


def test_second_step_exact_string(judge_tokenizer):
    expected_user = _filled(
        QUESTION,
        "Step 1: Tom starts with 3 apples.",
        "Step 2: He buys 4 more, so 3 + 4 = 7 apples.",
    )
    assert user_prompt(QUESTION, STEPS, 1) == expected_user
    assert judge_prompt(judge_tokenizer, QUESTION, STEPS, 1) == _chat(expected_user)


def test_first_step_exact_string(judge_tokenizer):
    expected_user = _filled(
        QUESTION,
        "Since the Now Step is the first step, there are no Previous Steps.",
        "Step 1: Tom starts with 3 apples.",
    )
    assert user_prompt(QUESTION, STEPS, 0) == expected_user
    assert judge_prompt(judge_tokenizer, QUESTION, STEPS, 0) == _chat(expected_user)


def test_previous_steps_joined_with_real_newlines():
    steps = ["a = 1.", "b = 2.", "c = a + b = 3.", "d = 4."]
    text = user_prompt("Q?", steps, 3)
    assert "Previous Steps: Step 1: a = 1.\nStep 2: b = 2.\nStep 3: c = a + b = 3.\nNow Step: Step 4: d = 4.\n" in text


def test_braces_in_question_and_steps_are_not_format_slots():
    q = "Compute $\\frac{1}{2} + {}$ for {x}."
    steps = ["{} is {0}.", "So {a}."]
    text = user_prompt(q, steps, 1)
    assert f"Question: {q}\n" in text and "Step 1: {} is {0}.\nNow Step: Step 2: So {a}.\n" in text


@pytest.mark.parametrize("question,steps,k,match", [
    ("", ["a"], 0, "question"),
    ("q", [], 0, "steps"),
    ("q", "a\n\nb", 0, "steps"),
    ("q", ["a", "  "], 1, "step 2"),
    ("q", ["a"], 1, "out of range"),
])
def test_bad_inputs_name_the_problem(question, steps, k, match):
    with pytest.raises(ValueError, match=match):
        user_prompt(question, steps, k)
