"""Pure advantage estimators (rl_prm.credit.advantages) against loop references and hand values."""

from __future__ import annotations

import statistics

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rl_prm.credit import (
    ESTIMATORS,
    CreditConfig,
    EstimatorOptions,
    StepBatch,
    assign_credit,
    compute_gae,
    encode_rm_scores,
    grpo_process_advantage,
    grpo_step_normalize,
    masked_whiten,
    rloo_process_advantage,
)


@st.composite
def grouped(draw):
    """G prompts x n responses: rows (uid, L, ends, scores, outcome)."""
    G = draw(st.integers(1, 3))
    n = draw(st.integers(1, 4))
    rows = []
    for g in range(G):
        for _ in range(n):
            L = draw(st.integers(1, 12))
            k = draw(st.integers(0, min(L, 4)))
            ends = sorted(draw(st.lists(st.integers(0, L - 1), min_size=k, max_size=k, unique=True))) if k else []
            scores = draw(st.lists(st.floats(0, 1), min_size=k, max_size=k))
            out = draw(st.sampled_from([0.0, 1.0]))
            rows.append((f"uid-{g}", L, ends, scores, out))
    return rows


def _tensors(rows):
    B = len(rows)
    S = max([len(r[2]) for r in rows] + [1])
    T = max(r[1] for r in rows)
    sc = torch.zeros(B, S, dtype=torch.float64)
    m = torch.zeros(B, S, dtype=torch.bool)
    e = torch.zeros(B, S, dtype=torch.long)
    rm = torch.zeros(B, T, dtype=torch.long)
    for b, (_, L, ends, scores, _) in enumerate(rows):
        rm[b, :L] = 1
        k = len(ends)
        sc[b, :k] = torch.tensor(scores, dtype=torch.float64)
        m[b, :k] = True
        e[b, :k] = torch.tensor(ends, dtype=torch.long)
    index = [r[0] for r in rows]
    outcome = torch.tensor([r[4] for r in rows], dtype=torch.float64)
    return sc, m, e, rm, index, outcome


def _ref_rloo(rows, x, coef, baseline):
    """Loop reference of PURE's RLOO (token / step baseline + RLOO-centred outcome)."""
    B, T = x.shape
    out = torch.zeros(B, T, dtype=torch.float64)
    for i, (u, L, ends, _, o) in enumerate(rows):
        others = [j for j, r in enumerate(rows) if r[0] == u and j != i]
        R = lambda j: x[j].sum().item()  # noqa: E731
        rew = x[i].clone()
        if others:
            if baseline == "token":
                per_tok = sum(R(j) for j in others) / sum(rows[j][1] for j in others)
                prev = -1
                for end in ends:
                    rew[end] -= per_tok * (end - prev)
                    prev = end
            else:
                per_step = statistics.mean(R(j) / len(rows[j][2]) if rows[j][2] else 0.0 for j in others)
                for end in ends:
                    rew[end] -= per_step
            vr = o - statistics.mean(rows[j][4] for j in others)
        else:
            vr = o
        rew[L - 1] += coef * vr
        for t in range(L):
            out[i, t] = rew[t:L].sum()
    return out


@settings(max_examples=60, deadline=None)
@given(rows=grouped(), coef=st.sampled_from([0.0, 1.0, 0.5]), baseline=st.sampled_from(["token", "step"]),
       mode=st.sampled_from(["sum", "min_form", "future_min"]))
def test_rloo_matches_loop_reference(rows, coef, baseline, mode):
    sc, m, e, rm, index, outcome = _tensors(rows)
    x = assign_credit(sc, m, e, rm, mode=mode)
    adv, ret = rloo_process_advantage(x, rm, index, e, m, outcome=outcome, outcome_coef=coef, baseline=baseline)
    want = _ref_rloo(rows, x, coef, baseline)
    assert torch.allclose(ret, want, atol=1e-9)
    assert torch.allclose(adv, want, atol=1e-9)
    assert torch.all(adv[rm == 0] == 0)


def _ref_grpo(rows, r, eps=1e-6):
    B = len(rows)
    T = max(rr[1] for rr in rows)
    out = torch.zeros(B, T, dtype=torch.float64)
    for i, (u, L, ends, _, _) in enumerate(rows):
        group = [r[j, k].item() for j, rr in enumerate(rows) if rr[0] == u for k in range(len(rr[2]))]
        if len(group) > 1:
            mu, sd = statistics.mean(group), statistics.stdev(group)
        else:
            mu, sd = 0.0, 1.0
        for t in range(L):
            out[i, t] = sum((r[i, k].item() - mu) / (sd + eps) for k, end in enumerate(ends) if end >= t)
    return out


@settings(max_examples=60, deadline=None)
@given(rows=grouped())
def test_grpo_matches_loop_reference(rows):
    sc, m, e, rm, index, _ = _tensors(rows)
    r = 2 * sc - 1
    adv, ret = grpo_process_advantage(r, m, e, rm, index)
    want = _ref_grpo(rows, r)
    assert torch.allclose(adv, want, atol=1e-7)
    assert torch.equal(adv, ret)


def test_rloo_hand_computed():
    # one prompt, two responses; sum-form rewards r = 2p - 1
    # resp 0: 4 tokens, steps end at 1 (p=1 -> r=1) and 3 (p=0.5 -> r=0); R0 = 1, L0 = 4
    # resp 1: 2 tokens, one step ending at 1 (p=0 -> r=-1);               R1 = -1, L1 = 2
    sc = torch.tensor([[1.0, 0.5], [0.0, 0.0]])
    m = torch.tensor([[True, True], [True, False]])
    e = torch.tensor([[1, 3], [1, 0]])
    rm = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    x = assign_credit(sc, m, e, rm, mode="sum")
    adv, _ = rloo_process_advantage(x, rm, ["a", "a"], e, m, outcome=torch.tensor([1.0, 0.0]), outcome_coef=1.0)
    # resp 0: per-token baseline of others = -1/2; steps have 2 and 2 tokens -> baselines -1, -1
    #   rewards at ends: 1 - (-1) = 2 at t=1; 0 - (-1) = 1 at t=3; outcome 1 - 0 = 1 at t=3
    #   returns: t0..1 = 2 + 2 = 4, t2..3 = 2
    # resp 1: per-token baseline = 1/4; step of 2 tokens -> 0.5; reward -1 - 0.5 = -1.5;
    #   outcome 0 - 1 = -1 at t=1 -> returns -2.5, -2.5
    assert torch.allclose(adv, torch.tensor([[4.0, 4.0, 2.0, 2.0], [-2.5, -2.5, 0.0, 0.0]]))


def test_grpo_hand_computed():
    # group of 2 responses with step rewards {1, -1} and {0}: mean 0, std 1 (unbiased)
    r = torch.tensor([[1.0, -1.0], [0.0, 0.0]], dtype=torch.float64)
    m = torch.tensor([[True, True], [True, False]])
    e = torch.tensor([[0, 2], [1, 0]])
    rm = torch.tensor([[1, 1, 1], [1, 1, 0]])
    adv, _ = grpo_process_advantage(r, m, e, rm, ["a", "a"], epsilon=0.0)
    assert torch.allclose(adv, torch.tensor([[0.0, -1.0, -1.0], [0.0, 0.0, 0.0]], dtype=torch.float64))


def test_separator_zero_and_whiten():
    torch.manual_seed(0)
    x = torch.randn(4, 6)
    rm = torch.ones(4, 6)
    sep = torch.zeros(4, 6, dtype=torch.bool)
    sep[:, 2] = True
    e = torch.tensor([[5]] * 4)
    m = torch.ones(4, 1, dtype=torch.bool)
    adv, ret = rloo_process_advantage(x, rm, None, e, m, separator_mask=sep, whiten=True)
    assert torch.all(adv[:, 2] == 0) and torch.all(ret[:, 2] == 0)
    kept = adv[~sep]
    assert kept.mean().abs() < 1e-5 and (kept.std() - 1).abs() < 1e-3


def _opts(**kw):
    credit = {k: kw.pop(k) for k in ("mode", "temperature", "clip_eta", "delta", "score_map") if k in kw}
    base = dict(whiten=False, zero_separator_adv=True, verifiable=True, outcome_coef=1.0)
    return EstimatorOptions(CreditConfig(**credit), **{**base, **kw})


def _step_batch(sc, m, e, rm, index, outcome=None, sep=None):
    B, T = rm.shape
    return StepBatch(sc.float(), m, e, rm.float(), sep if sep is not None else torch.zeros(B, T, dtype=torch.bool),
                     outcome, None if outcome is None else torch.ones(B, dtype=torch.bool),
                     torch.as_tensor([["p", "q", "r", "s"].index(i) if isinstance(i, str) and len(i) == 1 else 0
                                      for i in index]))


def test_estimators_on_a_step_batch():
    sc = torch.tensor([[0.9, 0.1], [0.8, 0.7]])
    m = torch.ones(2, 2, dtype=torch.bool)
    e = torch.tensor([[1, 3], [0, 2]])
    rm = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    sep = torch.zeros(2, 5, dtype=torch.bool)
    sep[0, 2] = True
    batch = _step_batch(sc, m, e, rm, ["p", "p"], torch.tensor([0.0, 1.0]), sep)
    adv, _ = ESTIMATORS.get("rprm_rloo")(batch, _opts(mode="future_min", outcome_coef=0.5))
    x = assign_credit(sc, m, e, rm, mode="future_min")
    want, _ = rloo_process_advantage(x, rm, ["p", "p"], e, m, outcome=torch.tensor([0.0, 1.0]), outcome_coef=0.5,
                                     separator_mask=sep)
    assert torch.allclose(adv, want, atol=1e-6)
    assert not torch.allclose(ESTIMATORS.get("rprm_rloo")(batch, _opts(mode="sum", outcome_coef=0.5))[0], adv)
    # process GRPO with mode=sum is DeepSeekMath's; separators zeroed; + the outcome's GRPO
    g, _ = ESTIMATORS.get("rprm_grpo")(batch, _opts(mode="sum", outcome_coef=0.0))
    want_g, _ = grpo_process_advantage(2 * sc - 1, m, e, rm, ["p", "p"], separator_mask=sep)
    assert torch.allclose(g, want_g, atol=1e-6)
    # min-form on the normalised step rewards: every token before the worst step gets about its value
    gm, _ = ESTIMATORS.get("rprm_grpo")(batch, _opts(mode="min_form", temperature=0.01, outcome_coef=0.0))
    z = grpo_step_normalize(2 * sc - 1, m, ["p", "p"])
    assert torch.allclose(gm[0, 0], z[0].min(), atol=1e-4) and gm[0, 2] == 0  # a separator token
    # outcome GRPO: only the verifiable reward counts
    o, _ = ESTIMATORS.get("outcome_grpo")(batch, _opts(outcome_coef=2.0, zero_separator_adv=False))
    assert torch.allclose(o[0, :5], torch.full((5,), -2 * 0.5 / (0.5**0.5 + 1e-6)), atol=1e-5)
    assert torch.allclose(o[1, :4], torch.full((4,), 2 * 0.5 / (0.5**0.5 + 1e-6)), atol=1e-5) and o[1, 4] == 0
    with pytest.raises(ValueError, match="needs reward.verifiable.enabled"):
        ESTIMATORS.get("outcome_grpo")(_step_batch(sc, m, e, rm, ["p", "p"]), _opts())


def test_estimator_options_round_trip_and_name_bad_keys():
    o = _opts(mode="sum", clip_eta=0.2)
    assert EstimatorOptions.from_dict(o.to_dict()) == o
    d = o.to_dict()
    d.pop("whiten")
    with pytest.raises(ValueError, match="missing \\['whiten'\\]"):
        EstimatorOptions.from_dict(d)
    with pytest.raises(ValueError, match="unknown credit key"):
        EstimatorOptions.from_dict({**o.to_dict(), "credit": {"mdoe": "sum"}})


@settings(max_examples=40, deadline=None)
@given(rows=grouped(), data=st.data())
def test_estimators_are_batch_permutation_invariant(rows, data):
    sc, m, e, rm, index, outcome = _tensors(rows)
    code = encode_rm_scores(sc, m, e, rm, outcome=outcome)
    order = data.draw(st.permutations(list(range(len(rows)))))
    o = torch.tensor(order)
    for name in ESTIMATORS.names():
        fn = ESTIMATORS.get(name)
        a, _ = fn(StepBatch.from_rm_scores(code, rm, index, has_outcome=True), _opts())
        b, _ = fn(StepBatch.from_rm_scores(code[o], rm[o], [index[i] for i in order], has_outcome=True),
                  _opts())
        assert torch.allclose(b, a[o], atol=1e-5), name


def test_gae_matches_recursion():
    r = torch.tensor([[0.0, 1.0, 0.0, -1.0]])
    v = torch.tensor([[0.5, 0.2, 0.1, 0.3]])
    rm = torch.tensor([[1, 1, 1, 0]])
    adv, ret = compute_gae(r, v, rm, gamma=0.9, lam=0.8, whiten=False)
    # t=2: delta = 0 + 0 - 0.1 = -0.1; t=1: delta = 1 + 0.9*0.1 - 0.2 = 0.89, A = 0.89 + 0.72*(-0.1)
    a2 = -0.1
    a1 = 0.89 + 0.72 * a2
    a0 = (0 + 0.9 * 0.2 - 0.5) + 0.72 * a1
    assert torch.allclose(adv[0, :3], torch.tensor([a0, a1, a2]), atol=1e-6)
    assert torch.allclose(ret, adv + v)
    w = masked_whiten(adv, rm.bool())
    assert torch.allclose(compute_gae(r, v, rm, 0.9, 0.8)[0], w)
