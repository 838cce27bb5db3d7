"""Steps <-> tokens with real HF fast tokenizers built offline (tokenizers + transformers)."""

from __future__ import annotations

import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rl_prm.steps import (
    batch_separator_mask,
    batch_step_token_ends,
    separator_token_mask,
    split_steps,
    step_token_ends,
    token_char_ends,
)

tokenizers = pytest.importorskip("tokenizers")
transformers = pytest.importorskip("transformers")

# Qwen2's pre-tokenizer regex: punctuation followed by newlines stays one pre-token, so BPE can
# learn merged ".\n\n" tokens, as Qwen2.5's real tokenizer has.
QWEN_PAT = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


def _corpus() -> list[str]:
    rng = random.Random(0)
    lines = []
    for i in range(400):
        a, b = rng.randint(1, 99), rng.randint(1, 99)
        lines.append(
            f"Step {i % 7 + 1}: We compute {a} + {b} = {a + b}.\n\nThen we check that {a + b} - {b} = {a}.\n\n"
            f"So the answer is $\\boxed{{{a}}}$.\n\n"
        )
    return lines


def _byte_level(vocab_size: int):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PAT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_corpus(), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


@pytest.fixture(scope="module")
def bpe():
    """Byte-level BPE with merges (learns ".\\n\\n" as one token)."""
    return _byte_level(500)


@pytest.fixture(scope="module")
def bytes_tok():
    """Byte-level tokenizer without merges: one token per byte (multi-byte chars split)."""
    tok = _byte_level(257)
    assert len(tok) <= 257 + 1
    return tok


def _ids(tok, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False)


def test_bpe_merges_period_and_separator(bpe):
    ids = _ids(bpe, "x = 3.\n\nSo y = 4.")
    pieces = [bpe.decode([i]) for i in ids]
    assert ".\n\n" in pieces, pieces  # the corpus really yields the merged token


def test_merged_separator_step_ends(bpe):
    text = "x = 3.\n\nSo y = 4."
    ids = _ids(bpe, text)
    sp = step_token_ends(ids, bpe)
    assert sp.texts == ["x = 3.", "So y = 4."]
    pieces = [bpe.decode([i]) for i in ids]
    # the first step ends on the merged ".\n\n" token, the second on the last token
    assert pieces[sp.ends[0]] == ".\n\n"
    assert sp.ends[1] == len(ids) - 1
    assert sp.char_spans[0] == (0, 6)
    sep = separator_token_mask(ids, bpe)
    assert sep[sp.ends[0]] and sum(sep) == 1


def test_unmerged_separator_token(bytes_tok):
    text = "ab.\n\ncd"
    ids = _ids(bytes_tok, text)
    assert len(ids) == len(text)  # one token per byte
    sp = step_token_ends(ids, bytes_tok)
    assert sp.texts == ["ab.", "cd"]
    assert sp.ends == [2, 6]
    assert separator_token_mask(ids, bytes_tok) == [False, False, False, True, True, False, False]


@pytest.mark.parametrize(
    "text,steps",
    [
        ("", []),
        ("\n\n\n\n", []),
        ("one step only.", ["one step only."]),
        ("\n\nlead.\n\n\n\nrepeat.\n\n \n\ntrail.\n\n", ["lead.", "repeat.", "trail."]),
        ("a\n \nb", ["a", "b"]),
        ("single newline\nstays one step", ["single newline\nstays one step"]),
    ],
)
@pytest.mark.parametrize("which", ["bpe", "bytes_tok"])
def test_separator_edge_cases(text, steps, which, request):
    tok = request.getfixturevalue(which)
    ids = _ids(tok, text)
    sp = step_token_ends(ids, tok)
    assert sp.texts == steps == split_steps(text)
    assert sp.ends == sorted(set(sp.ends))
    _, ends = token_char_ends(ids, tok)
    for (s, e), k in zip(sp.char_spans, sp.ends):
        # the end token contains the step's last character
        start = ends[k - 1] if k else 0
        assert start < e <= ends[k]


def test_eos_and_truncation(bpe):
    ids = _ids(bpe, "x = 3.\n\nSo y") + [bpe.eos_token_id]
    sp = step_token_ends(ids, bpe)
    assert sp.texts == ["x = 3.", "So y"]
    assert sp.ends[-1] == len(ids) - 2  # EOS ends no step
    assert not sp.truncated
    cut = step_token_ends(ids[:-1], bpe, truncated=True)
    assert cut.truncated and cut.last_step_truncated and cut.texts[-1] == "So y"
    assert step_token_ends([], bpe, truncated=True).last_step_truncated is False


def test_multibyte_chars_use_incremental_decoding(bytes_tok):
    text = "x ≤ 3 ✓.\n\nπ ≈ 3.14"
    ids = _ids(bytes_tok, text)
    assert len(ids) > len(text)  # multi-byte characters span several tokens
    decoded, ends = token_char_ends(ids, bytes_tok)
    assert decoded == text and ends[-1] == len(text)
    assert all(a <= b for a, b in zip(ends, ends[1:]))
    sp = step_token_ends(ids, bytes_tok)
    assert sp.texts == ["x ≤ 3 ✓.", "π ≈ 3.14"]
    assert sp.ends[1] == len(ids) - 1
    # the first step ends on the byte token carrying "."
    assert bytes_tok.decode(ids[sp.ends[0] : sp.ends[0] + 1]) == "."


_alphabet = st.sampled_from(["a", "b", "1", " ", ".", "\n", "\n\n", ".\n\n", "=", "é", "≤", "\n \n"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(_alphabet, max_size=25))
def test_property_matches_split_steps(parts, bpe, bytes_tok):
    text = "".join(parts)
    for tok in (bpe, bytes_tok):
        ids = _ids(tok, text)
        sp = step_token_ends(ids, tok)
        assert sp.texts == split_steps(text)
        assert all(0 <= e < len(ids) for e in sp.ends)
        assert sp.ends == sorted(set(sp.ends))
        # the end token is the first token whose text reaches the step's last character
        for txt, (s, e), k in zip(sp.texts, sp.char_spans, sp.ends):
            assert sp.text[s:e] == txt
            assert sp.token_char_ends[k] >= e
            assert k == 0 or sp.token_char_ends[k - 1] < e
        flags = sp.separator_mask()
        # a token holding a step's last character is a separator token only if it also holds a
        # whole blank line (merged ".\n\n"); whitespace-only separator tokens end no step
        for k in sp.ends:
            piece = sp.text[(sp.token_char_ends[k - 1] if k else 0) : sp.token_char_ends[k]]
            assert flags[k] == ("\n" in piece and bool(__import__("re").search(r"\n\s*\n", piece)))
        assert len(flags) == len(ids)


def test_batched_helpers(bpe):
    texts = ["a.\n\nb.\n\nc.", "", "only one", "x.\n\ny."]
    responses = [_ids(bpe, t) for t in texts]
    step_ends, step_mask, spans = batch_step_token_ends(responses, bpe, truncated=[False, False, True, False])
    assert step_ends.shape == step_mask.shape == (4, 3)
    assert step_ends.dtype == torch.long and step_mask.dtype == torch.bool
    assert step_mask.sum(1).tolist() == [3, 0, 1, 2]
    assert spans[2].truncated
    for b, sp in enumerate(spans):
        assert step_ends[b, : sp.num_steps].tolist() == sp.ends
    T = max(len(r) for r in responses) + 2
    sep = batch_separator_mask(spans, T)
    assert sep.shape == (4, T)
    assert sep[0].sum() == 2 and sep[1].sum() == 0
    _, _, spans5 = batch_step_token_ends(responses, bpe, max_steps=5)
    assert batch_step_token_ends(responses, bpe, max_steps=5)[0].shape == (4, 5)
    with pytest.raises(ValueError, match="truncated"):
        batch_step_token_ends(responses, bpe, truncated=[True])
