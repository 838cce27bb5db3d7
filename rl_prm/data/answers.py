"""Answer text: gold answers for the loaders and the parquet prep, and a model's answer for the
verifiable reward (reward_fns/math_verify_reward.py). Pure Python, no heavy imports."""

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


# ---------------------------------------------------------------- extraction of a model's answer

def last_boxed_or_earlier(text: str) -> str | None:
    """Content of the last complete \\boxed{...}/\\fbox{...} (brace-balanced; also ``\\boxed 5``);
    an unbalanced last box (truncated response) falls back to the one before it; None if none."""
    return last_boxed(text, earlier_if_unbalanced=True)


_HASHES = re.compile(r"####\s*([^\n]*)")


def extract_answer(solution: str) -> tuple[str | None, str]:
    """(answer string, how) from a model solution: how in {"boxed", "hashes", "anchor", "none"}.

    "anchor" returns the tail of the text (math_verify finds the anchored answer in it)."""
    boxed = last_boxed_or_earlier(solution)
    if boxed is not None:
        return boxed, "boxed"
    hashes = _HASHES.findall(solution)
    if hashes:
        return hashes[-1].strip(), "hashes"
    tail = solution[-2000:]
    if re.search(r"answer", tail, re.IGNORECASE):
        return tail, "anchor"
    return None, "none"


# ------------------------------------------------------------------------------------ normalisation

_NUM = r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
NUMERIC = re.compile(rf"^{_NUM}$")
_NUM_WORDS = re.compile(rf"^({_NUM})\s*((?:[A-Za-z]{{2,}}\.?\s*)+)$")
_NOT_UNITS = {"pi", "sqrt", "frac", "infty", "inf", "infinity", "cdot", "times", "and", "or"}


def strip_wrappers(s: str) -> str:
    s = s.strip()
    # math delimiters around the whole answer
    for a, b in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if len(s) > len(a) + len(b) and s.startswith(a) and s.endswith(b):
            s = s[len(a) : -len(b)].strip()
    s = s.replace("\\!", "").replace("{,}", ",")
    s = re.sub(r"\\(?:d|t)frac", r"\\frac", s)
    # brace-less \frac ab / \frac \pi4 (math_verify misreads the command-name form)
    s = re.sub(r"\\frac\s*(\\[A-Za-z]+|[A-Za-z0-9])\s*(\\[A-Za-z]+|[A-Za-z0-9])", r"\\frac{\1}{\2}", s)
    s = s.rstrip(" .")  # "5." at the end of a sentence
    # currency in front of a number: $18, \$18, \$ 1,000
    s = re.sub(r"^(?:\\\$|\$)\s*(?=[+-]?\d)", "", s)
    return s.strip()


def normalize_answer(ans: str, gold_is_number: bool = False) -> str:
    """Answer text around math_verify: thousands commas, currency, a trailing period, plain-word units
    after a number when the gold is a number."""
    s = strip_wrappers(ans)
    m = NUMERIC.match(s)
    if m:
        return s.replace(",", "")
    if gold_is_number:
        m = _NUM_WORDS.match(s)  # "18 dollars", "3 hours"
        if m and not any(w.lower().rstrip(".") in _NOT_UNITS for w in m.group(2).split()):
            return m.group(1).replace(",", "")
    return s


def gold_text(gt: str) -> str:
    """A gold may come as a GSM8K answer text ("... #### 72") or a boxed solution."""
    if "####" in gt:
        return gt.rsplit("####", 1)[1].strip()
    if "\\boxed" in gt or "\\fbox" in gt:
        b = last_boxed_or_earlier(gt)
        if b is not None:
            return b
    return gt.strip()
