"""Gold-answer helpers shared by the loaders and the parquet prep (pure Python, no heavy imports)."""

from __future__ import annotations

import re

_BOXED_CMDS = ("\\boxed", "\\fbox")
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")
_INT_FLOAT = re.compile(r"^([+-]?\d+)\.0+$")


def last_boxed(text: str | None, earlier_if_unbalanced: bool = False) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, brace-balanced.

    Also handles the brace-less form ``\\boxed 5``. Returns None when the last box is incomplete
    (e.g. a truncated response), or, with ``earlier_if_unbalanced``, the content of the last
    complete box before it (what the verifiable reward grades).
    """
    if not text:
        return None
    end = len(text)
    while True:
        best, cmd_len = -1, 0
        for cmd in _BOXED_CMDS:
            i = text.rfind(cmd, 0, end)
            if i > best:
                best, cmd_len = i, len(cmd)
        if best < 0:
            return None
        content = _box_content(text, best + cmd_len)
        if content is not None or not earlier_if_unbalanced:
            return content
        end = best


def _box_content(text: str, i: int) -> str | None:
    """The box argument starting at ``text[i]`` (right after the command), or None if incomplete."""
    n = len(text)
    j = i  # allow "\boxed {x}" and "\boxed x"
    while j < n and text[j] == " ":
        j += 1
    if j < n and text[j] == "{":
        depth = 0
        for k in range(j, n):
            c = text[k]
            if c == "{" and text[k - 1] != "\\":
                depth += 1
            elif c == "}" and text[k - 1] != "\\":
                depth -= 1
                if depth == 0:
                    return text[j + 1 : k].strip()
        return None  # unbalanced
    if j > i:  # "\boxed 5" form: up to whitespace or "$"
        m = re.match(r"[^\s$]+", text[j:])
        return m.group(0).strip() if m else None
    return None


def gsm8k_gold(answer_text: str) -> str:
    """GSM8K gold: the text after the last ``####``, commas removed (``1,000`` -> ``1000``)."""
    if "####" not in answer_text:
        raise ValueError("GSM8K answer has no '####' marker")
    gold = answer_text.rsplit("####", 1)[1].strip()
    return gold.replace(",", "").strip()


def clean_numeric(ans: str) -> str:
    """Light normalisation for plain numeric golds: ``1,234`` -> ``1234``, ``27.0`` -> ``27``."""
    s = ans.strip()
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    m = _INT_FLOAT.match(s)
    if m:
        s = m.group(1)
    return s


def strip_dollars(ans: str) -> str:
    """``$2n$`` -> ``2n`` (OlympiadBench wraps answers in math mode); inner ``$...$,$...$`` kept as text."""
    s = ans.strip()
    if len(s) >= 2 and s.startswith("$") and s.endswith("$") and "$" not in s[1:-1]:
        s = s[1:-1].strip()
    elif s.count("$") >= 2:
        s = s.replace("$", "").strip()
    return s
