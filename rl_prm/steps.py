"""Splitting a solution into steps (pure Python; shared by score and credit).

R-PRM and PURE split a policy solution into steps on blank lines ("\\n\\n"). Empty steps
(from leading, trailing or repeated separators, or whitespace-only chunks) are dropped.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any, Sequence

STEP_SEPARATOR = "\n\n"
_SEP_RE = re.compile(r"\n\s*\n")


def split_steps(text: str) -> list[str]:
    """Split `text` on blank lines; strip each step; drop empty ones.

    A text with no separator is one step; an empty/whitespace text has no steps.
    >>> split_steps("a = 1.\\n\\nb = 2.\\n\\n\\n\\n")
    ['a = 1.', 'b = 2.']
    """
    if not isinstance(text, str):
        raise TypeError(f"split_steps expects str, got {type(text).__name__}")
    return [s.strip() for s in _SEP_RE.split(text) if s.strip()]


# ---------------------------------------------------------------------------------------------
# Steps <-> tokens
# ---------------------------------------------------------------------------------------------
#
# The policy emits token ids; the R-PRM scores step *texts*; credit is placed on the *last token*
# of each step. The character offset of every token is taken from the tokenizer itself (its
# decode), never guessed from token strings:
#   1. fast path: decode every token alone (one batched call); valid iff the pieces concatenate
#      to the full decode and none is a partial UTF-8 sequence ("\ufffd").
#   2. incremental decoding (vLLM's detokenizer scheme: decode a small window of context tokens
#      and keep only the new suffix; bytes of an unfinished UTF-8 char are attributed to the token
#      that completes it); valid iff the result equals the full decode.
#   3. exact prefix decoding (len(decode(ids[:i+1])) for every i): O(n^2), last resort.
# Text is always decoded with skip_special_tokens=True (EOS/pad contribute no characters and never
# end a step) and clean_up_tokenization_spaces=False (so offsets are stable); score the step texts
# returned here (`StepSpans.texts`) so the scorer and the credit stage agree on the steps.


@dataclass(frozen=True)
class StepSpans:
    """Steps of one response and where they end in its tokens.

    texts:        step texts, == split_steps(text)
    ends:         index (into response_ids) of each step's last token; strictly increasing
    char_spans:   (start, end) character span of each (stripped) step in `text`
    truncated:    True when the response was cut at the length limit (its last step is kept
                  but may be incomplete)
    text:         the decoded response
    token_char_ends: character offset in `text` where each token's text ends (non-decreasing;
                  special tokens have zero length)
    """

    texts: list[str]
    ends: list[int]
    char_spans: list[tuple[int, int]]
    truncated: bool
    text: str = ""
    token_char_ends: tuple[int, ...] = field(default=(), repr=False)

    @property
    def num_steps(self) -> int:
        return len(self.ends)

    @property
    def last_step_truncated(self) -> bool:
        """The last step may be incomplete (response truncated and it has at least one step)."""
        return self.truncated and bool(self.ends)

    def separator_mask(self) -> list[bool]:
        """Per token: True for step-separator tokens (see `separator_token_mask`)."""
        return _separator_flags(self.text, self.token_char_ends)


def _decode(tokenizer: Any, ids: Sequence[int]) -> str:
    try:
        return tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)
    except TypeError:  # tokenizers without the HF keyword arguments
        return tokenizer.decode(list(ids))


def _ends_fast(tokenizer: Any, ids: list[int], full: str) -> list[int] | None:
    batch = getattr(tokenizer, "batch_decode", None)
    if batch is not None:
        try:
            pieces = batch([[i] for i in ids], skip_special_tokens=True, clean_up_tokenization_spaces=False)
        except TypeError:
            pieces = [_decode(tokenizer, [i]) for i in ids]
    else:
        pieces = [_decode(tokenizer, [i]) for i in ids]
    if any("\ufffd" in p for p in pieces) or "".join(pieces) != full:
        return None
    ends, n = [], 0
    for p in pieces:
        n += len(p)
        ends.append(n)
    return ends


def _ends_incremental(tokenizer: Any, ids: list[int], full: str) -> list[int] | None:
    out: list[str] = []
    n_out = 0
    prefix, read = 0, 0
    ends = []
    for i in range(len(ids)):
        prefix_text = _decode(tokenizer, ids[prefix:read])
        new_text = _decode(tokenizer, ids[prefix : i + 1])
        if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd") and new_text.startswith(prefix_text):
            piece = new_text[len(prefix_text) :]
            out.append(piece)
            n_out += len(piece)
            prefix, read = read, i + 1
        ends.append(n_out)
    if "".join(out) != full:
        return None
    return ends


def _ends_prefix(tokenizer: Any, ids: list[int], full: str) -> list[int]:
    ends = []
    for i in range(len(ids)):
        ends.append(len(_decode(tokenizer, ids[: i + 1])))
    # keep monotone and consistent with the full text even for pathological decoders
    m = 0
    for i, e in enumerate(ends):
        m = max(m, min(e, len(full)))
        ends[i] = m
    if ends:
        ends[-1] = len(full)
    return ends


def token_char_ends(response_ids: Sequence[int], tokenizer: Any) -> tuple[str, list[int]]:
    """Decode `response_ids` and give, per token, the character offset where its text ends.

    Returns (text, ends) with len(ends) == len(response_ids), ends non-decreasing, ends[-1] ==
    len(text). Offsets come from the tokenizer's own decode (see the module notes).
    """
    ids = [int(i) for i in response_ids]
    full = _decode(tokenizer, ids)
    if not ids:
        return full, []
    for method in (_ends_fast, _ends_incremental):
        ends = method(tokenizer, ids, full)
        if ends is not None:
            return full, ends
    return full, _ends_prefix(tokenizer, ids, full)


def _step_char_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the steps of `text`, exactly the chunks split_steps keeps (stripped)."""
    spans = []
    start = 0
    for m in list(_SEP_RE.finditer(text)) + [None]:
        stop = m.start() if m is not None else len(text)
        chunk = text[start:stop]
        stripped = chunk.strip()
        if stripped:
            lead = len(chunk) - len(chunk.lstrip())
            spans.append((start + lead, start + lead + len(stripped)))
        if m is not None:
            start = m.end()
    return spans


def steps_from_offsets(text: str, char_ends: Sequence[int], truncated: bool = False) -> StepSpans:
    """Steps of `text` mapped onto tokens whose text ends at `char_ends` (see token_char_ends)."""
    spans = _step_char_spans(text)
    ends = [bisect_left(char_ends, e) for _, e in spans]  # first token whose text reaches char e-1
    if ends and ends[-1] >= len(char_ends):
        raise ValueError("token offsets do not cover the text (char_ends inconsistent with text)")
    return StepSpans(
        texts=[text[s:e] for s, e in spans],
        ends=ends,
        char_spans=spans,
        truncated=bool(truncated),
        text=text,
        token_char_ends=tuple(char_ends),
    )


def step_token_ends(response_ids: Sequence[int], tokenizer: Any, truncated: bool = False) -> StepSpans:
    """Split a response into steps (blank lines) and map each step to its last token.

    response_ids: the response token ids (no padding; EOS may be included, it ends no step).
    tokenizer:    anything with HF-style `decode(ids, skip_special_tokens=...)`.
    truncated:    the response hit the length limit; the (possibly partial) last step is kept and
                  the result is flagged.

    A step's last token is the token containing the step's last non-whitespace character, so with
    a tokenizer that merges ".\\n\\n" into one token the step ends on that merged token. Leading,
    trailing and repeated separators and whitespace-only chunks produce no step; a response
    without separator is one step; an empty response has none.
    """
    text, ends = token_char_ends(response_ids, tokenizer)
    return steps_from_offsets(text, ends, truncated=truncated)


def _separator_flags(text: str, char_ends: Sequence[int]) -> list[bool]:
    regions = [(m.start(), m.end()) for m in _SEP_RE.finditer(text)]
    flags = []
    prev = 0
    j = 0
    for e in char_ends:
        s = prev
        prev = e
        if e <= s:
            flags.append(False)
            continue
        while j < len(regions) and regions[j][1] <= s:
            j += 1
        overlaps = j < len(regions) and regions[j][0] < e
        piece = text[s:e]
        flags.append(bool(overlaps and (not piece.strip() or _SEP_RE.search(piece))))
    return flags


def separator_token_mask(response_ids: Sequence[int], tokenizer: Any) -> list[bool]:
    """Per token: True if it is a step-separator token.

    A token is a separator token when its text overlaps a separator (a blank line, regex
    `\\n\\s*\\n`) and it is either whitespace only (e.g. "\\n\\n", or "\\n" + "\\n" split in two
    tokens) or contains a whole separator (e.g. a merged ".\\n\\n" token). Used to zero the
    advantages of separator tokens (PURE).
    """
    text, ends = token_char_ends(response_ids, tokenizer)
    return _separator_flags(text, ends)


def batch_step_token_ends(
    responses: Sequence[Sequence[int]],
    tokenizer: Any,
    truncated: Sequence[bool] | None = None,
    max_steps: int | None = None,
):
    """Batched `step_token_ends` producing padded tensors.

    responses: B lists of response token ids (unpadded).
    truncated: optional B flags.
    max_steps: pad to at least this many steps (S = max(max_steps, most steps in the batch)).
    Returns (step_ends [B, S] long (0 where padded), step_mask [B, S] bool, spans list[StepSpans]).
    """
    import torch  # torch: seconds to import; the rest of this module is pure Python (the scorer imports it)

    if truncated is None:
        truncated = [False] * len(responses)
    if len(truncated) != len(responses):
        raise ValueError(f"truncated has {len(truncated)} flags for {len(responses)} responses")
    spans = [step_token_ends(r, tokenizer, truncated=t) for r, t in zip(responses, truncated)]
    s = max([sp.num_steps for sp in spans] + [max_steps or 0])
    step_ends = torch.zeros(len(spans), s, dtype=torch.long)
    step_mask = torch.zeros(len(spans), s, dtype=torch.bool)
    for b, sp in enumerate(spans):
        k = sp.num_steps
        if k:
            step_ends[b, :k] = torch.tensor(sp.ends, dtype=torch.long)
            step_mask[b, :k] = True
    return step_ends, step_mask, spans


def batch_separator_mask(spans: Sequence[StepSpans], length: int):
    """Padded [B, length] bool separator-token mask from `StepSpans` (see separator_token_mask)."""
    import torch  # seconds to import (see batch_step_ends)

    out = torch.zeros(len(spans), length, dtype=torch.bool)
    for b, sp in enumerate(spans):
        flags = sp.separator_mask()[:length]
        if flags:
            out[b, : len(flags)] = torch.tensor(flags, dtype=torch.bool)
    return out
