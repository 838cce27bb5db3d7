"""Properties of rl_prm.credit.assign_credit (hypothesis) + argument validation."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rl_prm.credit import MODES, SCORE_MAPS, assign_credit, reverse_cumsum

SETTINGS = settings(max_examples=80, deadline=None)
ALL_MODES = ["sum", "min_form", "future_min"]
GRID = [i / 100 for i in range(101)]


# ----------------------------------------------------------------------------- batches


@st.composite
def rows(draw, max_steps=6, max_len=20, grid=False):
    """One response: (length L, sorted distinct step ends in [0, L), scores)."""
    L = draw(st.integers(0, max_len))
    k = draw(st.integers(0, min(L, max_steps)))
    ends = sorted(draw(st.lists(st.integers(0, L - 1), min_size=k, max_size=k, unique=True))) if k else []
    score = st.sampled_from(GRID) if grid else st.one_of(st.sampled_from([0.0, 1.0, 0.5]), st.floats(0, 1))
    scores = draw(st.lists(score, min_size=len(ends), max_size=len(ends)))
    return L, ends, scores


def build(batch, pad_steps=0, pad_tokens=0, dtype=torch.float64):
    """Tensors from [(L, ends, scores)]: valid steps first, then `pad_steps` masked slots."""
    B = len(batch)
    S = max([len(e) for _, e, _ in batch] + [0]) + pad_steps
    T = max([L for L, _, _ in batch] + [1]) + pad_tokens
    scores = torch.zeros(B, S, dtype=dtype)
    mask = torch.zeros(B, S, dtype=torch.bool)
    ends = torch.zeros(B, S, dtype=torch.long)
    rmask = torch.zeros(B, T, dtype=torch.long)
    for b, (L, e, s) in enumerate(batch):
        rmask[b, :L] = 1
        scores[b, : len(e)] = torch.tensor(s, dtype=dtype)
        ends[b, : len(e)] = torch.tensor(e, dtype=torch.long)
        mask[b, : len(e)] = True
    return scores, mask, ends, rmask


batches = st.lists(rows(), min_size=1, max_size=4)
modes = st.sampled_from(ALL_MODES)
etas = st.one_of(st.none(), st.floats(-0.5, 1.5))


def returns_of(tr):
    return reverse_cumsum(tr)


def r_of(p, score_map="2p-1"):
    return 2 * p - 1 if score_map == "2p-1" else p


# ----------------------------------------------------------------------------- properties


@SETTINGS
@given(batch=batches, score_map=st.sampled_from(["2p-1", "p"]))
def test_sum_is_reverse_cumsum_of_step_rewards(batch, score_map):
    scores, mask, ends, rmask = build(batch)
    tr = assign_credit(scores, mask, ends, rmask, mode="sum", score_map=score_map)
    G = returns_of(tr)
    for b, (L, e, s) in enumerate(batch):
        for t in range(rmask.shape[1]):
            want = sum(r_of(p, score_map) for end, p in zip(e, s) if end >= t)
            assert G[b, t].item() == pytest.approx(want, abs=1e-9)


@SETTINGS
@given(batch=batches, eta=etas, delta=st.booleans())
def test_future_min_returns_never_decrease(batch, eta, delta):
    scores, mask, ends, rmask = build(batch)
    tr = assign_credit(scores, mask, ends, rmask, mode="future_min", clip_eta=eta, delta=delta)
    G = returns_of(tr)
    for b, (L, e, s) in enumerate(batch):
        if not e:
            assert torch.all(G[b] == 0)
            continue
        g = G[b, : e[-1] + 1]
        assert torch.all(g[1:] >= g[:-1] - 1e-12), g
    if eta is None and not delta:  # and it is the strict future minimum
        for b, (L, e, s) in enumerate(batch):
            for t in range(L):
                fut = [r_of(p) for end, p in zip(e, s) if end >= t]
                assert G[b, t].item() == pytest.approx(min(fut) if fut else 0.0, abs=1e-9)


@SETTINGS
@given(batch=st.lists(rows(grid=True), min_size=1, max_size=4))
def test_min_form_approaches_trajectory_min_as_T_to_0(batch):
    scores, mask, ends, rmask = build(batch)
    Ts = [10.0, 1.0, 0.1, 0.01, 1e-6]
    Gs = [returns_of(assign_credit(scores, mask, ends, rmask, mode="min_form", temperature=T)) for T in Ts]
    for b, (L, e, s) in enumerate(batch):
        if not e:
            continue
        r = [r_of(p) for p in s]
        rmin = min(r)
        worst = e[r.index(rmin)]  # first step reaching the minimum
        for t in range(worst + 1):  # tokens before (and on) the worst step
            assert Gs[-1][b, t].item() == pytest.approx(rmin, abs=1e-6)
        # before the first step every step counts: the softmin mean decreases towards the min
        seq = [G[b, 0].item() for G in Gs]
        assert all(x >= rmin - 1e-9 for x in seq)
        assert all(a >= b_ - 1e-9 for a, b_ in zip(seq, seq[1:])), seq


@SETTINGS
@given(batch=batches, mode=modes, eta=st.floats(-0.5, 1.5))
def test_clip_makes_every_return_nonpositive(batch, mode, eta):
    scores, mask, ends, rmask = build(batch)
    G = returns_of(assign_credit(scores, mask, ends, rmask, mode=mode, clip_eta=eta))
    assert torch.all(G <= 1e-12)
    # sum form with Clip + Delta telescopes to clipped rewards: still <= 0
    G2 = returns_of(assign_credit(scores, mask, ends, rmask, mode="sum", clip_eta=eta, delta=True))
    assert torch.all(G2 <= 1e-12)


@SETTINGS
@given(
    row=rows(),
    inserts=st.lists(st.tuples(st.integers(0, 10), st.integers(1, 3)), min_size=1, max_size=5),
    mode=st.sampled_from(["sum", "future_min"]),
    eta=st.floats(-0.5, 1.5),
)
def test_clip_added_correct_steps_never_raise_the_return(row, inserts, mode, eta):
    """Inserting correct steps (p = 1) anywhere never raises the return of the first token."""
    L, e, s = row
    # steps as (length in tokens, score); tokens before the first step end belong to step 0
    lengths = [end - prev for end, prev in zip(e, [-1] + e[:-1])]
    steps = list(zip(lengths, s))
    base = _first_return(steps, mode, eta)
    for pos, n_tok in inserts:
        steps.insert(min(pos, len(steps)), (n_tok, 1.0))
        now = _first_return(steps, mode, eta)
        assert now <= base + 1e-12
        base = now


def _first_return(steps, mode, eta):
    ends, t = [], -1
    for n, _ in steps:
        t += n
        ends.append(t)
    batch = [(max(t + 1, 1), ends, [p for _, p in steps])]
    scores, mask, e, rmask = build(batch)
    return assign_credit(scores, mask, e, rmask, mode=mode, clip_eta=eta).sum().item()


@SETTINGS
@given(batch=batches, eta=etas)
def test_delta_telescopes(batch, eta):
    """Sum form + Delta: the return at a step's first token equals that step's (clipped) reward."""
    scores, mask, ends, rmask = build(batch)
    G = returns_of(assign_credit(scores, mask, ends, rmask, mode="sum", clip_eta=eta, delta=True))
    for b, (L, e, s) in enumerate(batch):
        for k, (end, p) in enumerate(zip(e, s)):
            first = e[k - 1] + 1 if k else 0
            r = r_of(p)
            if eta is not None:
                r = min(r - eta, 0.0)
            for t in range(first, end + 1):  # every token of step k
                assert G[b, t].item() == pytest.approx(r, abs=1e-9)


@SETTINGS
@given(
    batch=batches,
    mode=modes,
    eta=etas,
    delta=st.booleans(),
    pad_steps=st.integers(0, 3),
    pad_tokens=st.integers(0, 5),
    data=st.data(),
)
def test_padding_and_batch_permutation_change_nothing(batch, mode, eta, delta, pad_steps, pad_tokens, data):
    kw = dict(mode=mode, clip_eta=eta, delta=delta, temperature=0.3)
    scores, mask, ends, rmask = build(batch)
    ref = assign_credit(scores, mask, ends, rmask, **kw)
    B, T = ref.shape

    # padding: extra masked step slots with garbage (NaN scores, out-of-range ends), interleaved
    # among the valid ones; extra padded tokens
    ps, pm, pe, pr = build(batch, pad_steps=pad_steps, pad_tokens=pad_tokens)
    S2 = ps.shape[1]
    perm = torch.stack([torch.randperm(S2, generator=torch.Generator().manual_seed(b)) for b in range(B)])
    # keep the valid steps in order: sort the chosen permutation positions of valid slots
    pm_sorted = torch.gather(pm, 1, perm)
    ps_p, pe_p = torch.gather(ps, 1, perm), torch.gather(pe, 1, perm)
    for b in range(B):
        pos = torch.nonzero(pm_sorted[b]).flatten()
        ps_p[b, pos] = ps[b, : len(pos)]
        pe_p[b, pos] = pe[b, : len(pos)]
    ps_p = torch.where(pm_sorted, ps_p, torch.full_like(ps_p, math.nan))
    pe_p = torch.where(pm_sorted, pe_p, torch.full_like(pe_p, 10_000))
    padded = assign_credit(ps_p, pm_sorted, pe_p, pr, **kw)
    assert torch.equal(padded[:, :T], ref)
    assert torch.all(padded[:, T:] == 0)

    # batch permutation
    order = torch.tensor(data.draw(st.permutations(list(range(B)))))
    permuted = assign_credit(scores[order], mask[order], ends[order], rmask[order], **kw)
    assert torch.equal(permuted, ref[order])


@SETTINGS
@given(batch=batches, mode=modes, eta=etas, delta=st.booleans())
def test_masked_tokens_get_zero_and_only_step_ends_are_nonzero(batch, mode, eta, delta):
    scores, mask, ends, rmask = build(batch, pad_tokens=2)
    tr = assign_credit(scores, mask, ends, rmask, mode=mode, clip_eta=eta, delta=delta)
    assert tr.shape == rmask.shape and tr.dtype == scores.dtype
    assert torch.all(tr[rmask == 0] == 0)
    at_end = torch.zeros_like(rmask, dtype=torch.bool)
    for b, (L, e, s) in enumerate(batch):
        at_end[b, e] = True
    assert torch.all(tr[~at_end] == 0)


def test_hand_example_all_modes():
    p = torch.tensor([[0.9, 0.2, 0.6]])  # r = 0.8, -0.6, 0.2
    m = torch.ones(1, 3, dtype=torch.bool)
    e = torch.tensor([[1, 3, 5]])
    rm = torch.ones(1, 7)
    tr = assign_credit(p, m, e, rm, mode="sum")
    assert torch.allclose(tr, torch.tensor([[0, 0.8, 0, -0.6, 0, 0.2, 0]]), atol=1e-6)
    tr = assign_credit(p, m, e, rm, mode="future_min")
    assert torch.allclose(returns_of(tr), torch.tensor([[-0.6, -0.6, -0.6, -0.6, 0.2, 0.2, 0]]), atol=1e-6)
    r = torch.tensor([0.8, -0.6, 0.2])
    w = torch.softmax(-r / 0.1, 0)
    tr = assign_credit(p, m, e, rm, mode="min_form")
    assert torch.allclose(tr[0, [1, 3, 5]], w * r, atol=1e-6)
    tr = assign_credit(p, m, e, rm, mode="sum", clip_eta=0.5)  # min(r - 0.5, 0) = 0, -1.1, -0.3
    assert torch.allclose(tr[0, [1, 3, 5]], torch.tensor([0.0, -1.1, -0.3]), atol=1e-6)
    tr = assign_credit(p, m, e, rm, mode="sum", clip_eta=0.5, delta=True)  # 1.1, -0.8, -0.3
    assert torch.allclose(tr[0, [1, 3, 5]], torch.tensor([1.1, -0.8, -0.3]), atol=1e-6)
    # a masked-out middle step is ignored entirely: delta links step 0 to step 2
    m2 = torch.tensor([[True, False, True]])
    tr = assign_credit(p, m2, e, rm, mode="sum", delta=True)
    assert torch.allclose(tr[0, [1, 3, 5]], torch.tensor([0.6, 0.0, 0.2]), atol=1e-6)


def test_no_steps_anywhere():
    z = torch.zeros(2, 0)
    tr = assign_credit(z, z.bool(), z.long(), torch.ones(2, 4), mode="min_form")
    assert torch.equal(tr, torch.zeros(2, 4))


def test_registries():
    assert set(ALL_MODES) <= set(MODES.names())
    assert {"2p-1", "p"} <= set(SCORE_MAPS.names())


# ----------------------------------------------------------------------------- validation


def _ok():
    return (
        torch.tensor([[0.5, 0.7]]),
        torch.tensor([[True, True]]),
        torch.tensor([[1, 3]]),
        torch.tensor([[1, 1, 1, 1, 0]]),
    )


@pytest.mark.parametrize(
    "change,kw,match",
    [
        (None, dict(mode="nope"), "unknown credit mode 'nope'"),
        (None, dict(mode="min_form", temperature=0.0), "temperature must be > 0"),
        (None, dict(mode="sum", temperature=-1), "temperature must be > 0"),
        (None, dict(mode="sum", score_map="logit"), "unknown score map 'logit'"),
        (None, dict(mode="sum", clip_eta=float("nan")), "clip_eta must be finite"),
        (lambda a: (a[0][:, :1], *a[1:]), dict(mode="sum"), "same \\[B, S\\] shape"),
        (lambda a: (*a[:3], torch.ones(2, 5)), dict(mode="sum"), "batch sizes disagree"),
        (lambda a: (a[0][0], *a[1:]), dict(mode="sum"), "must be 2-D"),
        (lambda a: (a[0], a[1], torch.tensor([[1, 5]]), a[3]), dict(mode="sum"), "out of range"),
        (lambda a: (a[0], a[1], torch.tensor([[-1, 2]]), a[3]), dict(mode="sum"), "out of range"),
        (lambda a: (a[0], a[1], torch.tensor([[1, 4]]), a[3]), dict(mode="sum"), "outside the response mask"),
        (lambda a: (a[0], a[1], torch.tensor([[3, 1]]), a[3]), dict(mode="sum"), "strictly increasing"),
        (lambda a: (a[0], a[1], torch.tensor([[2, 2]]), a[3]), dict(mode="sum"), "strictly increasing"),
        (lambda a: (a[0], a[1], a[2].float(), a[3]), dict(mode="sum"), "integer"),
        (lambda a: (torch.tensor([[0.5, math.nan]]), *a[1:]), dict(mode="sum"), "NaN"),
        (lambda a: (torch.tensor([[0.5, 1.2]]), *a[1:]), dict(mode="sum"), "in \\[0, 1\\]"),
        (lambda a: (torch.tensor([[-0.1, 0.5]]), *a[1:]), dict(mode="sum"), "in \\[0, 1\\]"),
    ],
)
def test_invalid_arguments_raise_naming_the_problem(change, kw, match):
    args = _ok()
    if change is not None:
        args = change(args)
    with pytest.raises(ValueError, match=match):
        assign_credit(*args, **kw)


def test_masked_slots_may_hold_anything():
    s, m, e, r = _ok()
    s = torch.tensor([[0.5, math.nan]])
    m = torch.tensor([[True, False]])
    e = torch.tensor([[1, 99]])
    tr = assign_credit(s, m, e, r, mode="future_min")
    assert tr[0, 1].item() == 0.0 and torch.isfinite(tr).all()
