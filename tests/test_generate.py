"""Stage 1: rollouts on the session's policy engine, and weight sync into the running engine.

Uses the shared `policy_llm` engine; the weight-sync test restores the original weights (and
checks it did) so later tests see the untouched policy."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.slow  # needs the session's vLLM policy engine


@pytest.fixture(scope="module")
def engine(policy_llm):
    from rl_prm.generate import RolloutEngine

    return RolloutEngine(llm=policy_llm)


@pytest.fixture(scope="module")
def prompt(engine):
    from rl_prm.generate import chat_prompt_ids

    return chat_prompt_ids(engine.tokenizer, "Ava has 3 apples. Then Ava buys 2 more. How many apples does Ava have now?",
                           "Let's think step by step.")


@pytest.fixture(scope="module")
def hf_policy(tiny_policy_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_policy_dir, dtype=torch.float32).eval()


def test_chat_prompt_ids_use_the_chat_template(engine, prompt):
    text = engine.tokenizer.decode(prompt)
    assert text.startswith("<|im_start|>user\nAva has 3 apples.") and text.endswith("<|im_start|>assistant\n")


def test_generate_groups_seeds_and_truncation(engine, prompt):
    other = engine.tokenizer.encode("Ben has 4 coins.", add_special_tokens=False)
    outs = engine.generate([prompt, other], n=3, temperature=1.0, max_tokens=12, seed=11)
    assert [(o.prompt_index, o.sample_index) for o in outs] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    for o in outs:
        assert 1 <= len(o.response_ids) <= 12 and len(o.logprobs) == len(o.response_ids)
        assert o.truncated == (o.finish_reason == "length")
        assert all(lp <= 0 for lp in o.logprobs)
    assert outs[0].prompt_ids == prompt and outs[3].prompt_ids == other
    assert any(o.truncated for o in outs)  # the random policy rarely stops within 12 tokens
    again = engine.generate([prompt, other], n=3, temperature=1.0, max_tokens=12, seed=11)
    assert [o.response_ids for o in again] == [o.response_ids for o in outs]  # reproducible
    assert len({tuple(o.response_ids) for o in outs[:3]}) == 3  # samples of a group differ
    shifted = engine.generate([prompt], n=3, temperature=1.0, max_tokens=12, seed=12)
    assert [o.response_ids for o in shifted[:2]] == [o.response_ids for o in outs[1:3]]  # sample j = seed + j


def test_generate_stream_yields_each_prompts_samples_as_they_finish(engine, prompt):
    """reward.prm.stream's source: the same rollouts as `generate` with the same seeds, one list per
    prompt holding all its n samples; a consumer that stops early leaves nothing in the engine."""
    tok = engine.tokenizer
    prompts = [prompt, tok.encode("Ben has 4 coins.", add_special_tokens=False), prompt]
    kw = dict(n=2, temperature=1.0, seed=5)
    want = engine.generate(prompts, max_tokens=16, **kw)
    groups = list(engine.generate_stream(prompts, max_tokens=16, **kw))
    assert sorted(g[0].prompt_index for g in groups) == [0, 1, 2]
    for g in groups:
        assert [o.sample_index for o in g] == [0, 1] and len({o.prompt_index for o in g}) == 1
    got = sorted((o for g in groups for o in g), key=lambda o: (o.prompt_index, o.sample_index))
    assert [(o.response_ids, o.logprobs, o.finish_reason) for o in got] == \
        [(o.response_ids, o.logprobs, o.finish_reason) for o in want]
    stopped = engine.generate_stream(prompts, max_tokens=16, **kw)
    next(stopped)
    stopped.close()
    assert not engine.llm.llm_engine.has_unfinished_requests()
    assert [o.response_ids for o in engine.generate(prompts, max_tokens=16, **kw)] == [o.response_ids for o in want]


def test_sampling_logprobs_equal_hf(engine, prompt, hf_policy):
    o = engine.generate([prompt], n=1, temperature=1.0, max_tokens=16, seed=3)[0]
    ids = torch.tensor([o.prompt_ids + o.response_ids])
    with torch.no_grad():
        lp = torch.log_softmax(hf_policy(ids).logits[0, len(prompt) - 1 : -1], -1)
    hf = lp.gather(-1, torch.tensor(o.response_ids)[:, None])[:, 0]
    assert torch.allclose(hf, torch.tensor(o.logprobs), atol=1e-4)


def test_bad_prompts_are_named(engine):
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        engine.generate([[1, 2], []], n=1, max_tokens=4)
    with pytest.raises(ValueError, match="prompt 0 has 5000 tokens"):
        engine.generate([[5] * 5000], n=1, max_tokens=4)
    with pytest.raises(ValueError, match="n must be"):
        engine.generate([[5]], n=0)


def test_load_weights_makes_the_engine_run_the_new_weights(engine, prompt, hf_policy):
    def hf_greedy(model):
        with torch.no_grad():
            out = model.generate(torch.tensor([prompt]), max_new_tokens=20, do_sample=False, eos_token_id=None,
                                 pad_token_id=0)
        return out[0, len(prompt):].tolist()

    original = {k: v.clone() for k, v in hf_policy.state_dict().items()}
    before = engine.generate([prompt], n=1, temperature=0.0, max_tokens=20)[0].response_ids
    assert before == hf_greedy(hf_policy)[: len(before)]
    try:
        with torch.no_grad():
            g = torch.Generator().manual_seed(0)
            for p in hf_policy.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
        assert engine.load_weights(hf_policy.state_dict().items()) == len(original)
        after = engine.generate([prompt], n=1, temperature=0.0, max_tokens=20)[0].response_ids
        assert after != before  # the perturbation changes greedy decoding ...
        assert after == hf_greedy(hf_policy)[: len(after)]  # ... exactly as in HF
        fetched = engine.fetch_weights(["model.norm.weight"])["model.norm.weight"]
        assert torch.equal(fetched, hf_policy.model.norm.weight.detach())
    finally:
        hf_policy.load_state_dict(original)
        engine.load_weights(original.items())
    assert engine.generate([prompt], n=1, temperature=0.0, max_tokens=20)[0].response_ids == before  # restored
    with pytest.raises(ValueError, match="no tensors"):
        engine.load_weights([])
