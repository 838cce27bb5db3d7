"""Round trip of the rm_scores encoding (rl_prm.credit.encoding)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rl_prm.credit import SCORE_GRID, decode_rm_scores, encode_rm_scores, quantize_scores
from rl_prm.credit.encoding import OUTCOME_LEVELS, OUTCOME_MIN, OUTCOME_STEP


@st.composite
def encoded_batches(draw):
    B = draw(st.integers(1, 4))
    T = draw(st.integers(1, 16))
    rows = []
    for _ in range(B):
        L = draw(st.integers(0, T))
        k = draw(st.integers(0, L))
        ends = sorted(draw(st.lists(st.integers(0, L - 1), min_size=k, max_size=k, unique=True))) if k else []
        scores = draw(st.lists(st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0, 1)), min_size=k, max_size=k))
        sep = draw(st.lists(st.booleans(), min_size=L, max_size=L))
        out = draw(st.one_of(st.none(), st.integers(0, OUTCOME_LEVELS - 1))) if L else None
        rows.append((L, ends, scores, sep, out))
    return T, rows


def _tensors(T, rows, pad_steps=0):
    B = len(rows)
    S = max([len(r[1]) for r in rows] + [0]) + pad_steps
    sc = torch.zeros(B, S)
    m = torch.zeros(B, S, dtype=torch.bool)
    e = torch.zeros(B, S, dtype=torch.long)
    rm = torch.zeros(B, T, dtype=torch.long)
    sep = torch.zeros(B, T, dtype=torch.bool)
    out = torch.full((B,), float("nan"), dtype=torch.float64)
    for b, (L, ends, scores, s, o) in enumerate(rows):
        rm[b, :L] = 1
        sc[b, : len(ends)] = torch.tensor(scores)
        m[b, : len(ends)] = True
        e[b, : len(ends)] = torch.tensor(ends, dtype=torch.long)
        sep[b, :L] = torch.tensor(s, dtype=torch.bool)
        if o is not None:
            out[b] = OUTCOME_MIN + o * OUTCOME_STEP
    return sc, m, e, rm, sep, out


@settings(max_examples=100, deadline=None)
@given(data=encoded_batches(), with_sep=st.booleans(), with_out=st.booleans())
def test_round_trip(data, with_sep, with_out):
    T, rows = data
    sc, m, e, rm, sep, out = _tensors(T, rows, pad_steps=1)
    code = encode_rm_scores(
        sc, m, e, rm, outcome=out if with_out else None, separator_mask=sep if with_sep else None
    )
    assert code.dtype == torch.float32 and code.shape == rm.shape
    assert torch.all(code[rm == 0] == 0)
    d = decode_rm_scores(code, rm)
    for b, (L, ends, scores, s, o) in enumerate(rows):
        k = len(ends)
        assert d.step_mask[b].sum().item() == k
        assert d.step_ends[b, :k].tolist() == ends
        assert torch.allclose(d.step_scores[b, :k].double(), torch.tensor(scores, dtype=torch.float64), atol=2e-5)
        if with_sep:
            assert d.separator_mask[b, :L].tolist() == s
        else:
            assert not d.separator_mask[b].any()
        if with_out and o is not None:
            assert d.outcome_mask[b] and d.outcome[b].item() == OUTCOME_MIN + o * OUTCOME_STEP
        else:
            assert not d.outcome_mask[b] and d.outcome[b].item() == 0.0


def test_exact_zero_and_one_scores_survive():
    sc = torch.tensor([[0.0, 1.0, 0.0]])
    m = torch.ones(1, 3, dtype=torch.bool)
    e = torch.tensor([[0, 1, 3]])
    rm = torch.ones(1, 4)
    code = encode_rm_scores(sc, m, e, rm)
    assert code.tolist() == [[2.0, 3.0, 0.0, 2.0]]  # a zero score is not "no step"
    d0 = decode_rm_scores(code, rm)
    s, mm, ee = d0.step_scores, d0.step_mask, d0.step_ends
    assert s.tolist() == [[0.0, 1.0, 0.0]] and mm.all() and ee.tolist() == [[0, 1, 3]]
    # also with outcome and separator on the same (last) token
    code = encode_rm_scores(sc, m, e, rm, outcome=torch.tensor([1.0]), separator_mask=torch.tensor([[0, 0, 1, 1]]).bool())
    d = decode_rm_scores(code, rm)
    assert d.step_scores.tolist() == [[0.0, 1.0, 0.0]]
    assert d.outcome.tolist() == [1.0] and d.outcome_mask.tolist() == [True]
    assert d.separator_mask.tolist() == [[False, False, True, True]]


def test_decode_rejects_foreign_rm_scores():
    rm = torch.ones(1, 4)
    with pytest.raises(ValueError, match="use_kl_in_reward"):
        decode_rm_scores(torch.tensor([[0.0, -0.01, 0.0, 2.5]]), rm)  # KL-penalised tokens
    with pytest.raises(ValueError, match="not in rl_prm's step encoding"):
        decode_rm_scores(torch.tensor([[0.0, 0.0, 0.0, 1.0]]), rm)  # a plain outcome reward
    with pytest.raises(ValueError, match="off the response mask"):
        decode_rm_scores(torch.tensor([[0.0, 0.0, 0.0, 2.5]]), torch.tensor([[1, 1, 0, 0]]))
    with pytest.raises(ValueError, match="invalid code"):
        decode_rm_scores(torch.tensor([[3.2, 0.0, 0.0, 0.0]]), rm)
    with pytest.raises(ValueError, match="same \\[B, T\\] shape"):
        decode_rm_scores(torch.zeros(1, 3), rm)


def test_encode_rejects_off_grid_outcome():
    sc, m, e, rm = torch.tensor([[0.5]]), torch.tensor([[True]]), torch.tensor([[0]]), torch.ones(1, 2)
    with pytest.raises(ValueError, match="not on the encoding grid"):
        encode_rm_scores(sc, m, e, rm, outcome=torch.tensor([0.3]))
    with pytest.raises(ValueError, match="not on the encoding grid"):
        encode_rm_scores(sc, m, e, rm, outcome=torch.tensor([5.0]))
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        encode_rm_scores(torch.tensor([[1.5]]), m, e, rm)


@settings(max_examples=60, deadline=None)
@given(batch=encoded_batches())
def test_scores_on_the_grid_decode_exactly_in_float32(batch):
    """StepBatch rounds scores to SCORE_GRID: then every code is exact in float32, with separators and
    the largest outcome on the same tokens, so both backends see bit-identical scores."""
    T, rows = batch
    sc, m, e, rm, sep, _ = _tensors(T, rows)
    q = quantize_scores(sc).float()
    out = torch.where(rm.bool().any(1), torch.full((len(rows),), -OUTCOME_MIN), torch.full((len(rows),), float("nan")))
    code = encode_rm_scores(q, m, e, rm, outcome=out.double(), separator_mask=sep)
    assert code.dtype == torch.float32
    d = decode_rm_scores(code, rm)
    for b, (L, ends, scores, s, o) in enumerate(rows):
        k = len(ends)
        assert torch.equal(d.step_scores[b, :k], q[b, m[b]])
    assert ((q * (1 / SCORE_GRID)).round() == q * (1 / SCORE_GRID)).all()
