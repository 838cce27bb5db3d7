"""The tiny offline models: deterministic, loadable by HF and vLLM, judge writes R-PRM verdicts."""

from __future__ import annotations

import pytest


def test_tokenizer_is_deterministic_and_separates_verdicts(tmp_path):
    from rl_prm.tiny import build_tokenizer

    a, b = build_tokenizer(), build_tokenizer()
    assert a.get_vocab() == b.get_vocab()
    yes, no = a.encode(" Yes", add_special_tokens=False), a.encode(" No", add_special_tokens=False)
    assert yes[0] != no[0]
    for special in ("<|im_start|>", "<|im_end|>", "<|endoftext|>"):
        assert len(a.encode(special, add_special_tokens=False)) == 1
    chat = a.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_models_were_trained_with_the_tokenizer_inference_loads(tiny_judge_dir):
    """vLLM and AutoTokenizer reload the saved tokenizer (as Qwen2Tokenizer in transformers 5);
    the judge must have been trained on exactly those token ids, numbers included."""
    from transformers import AutoTokenizer

    from rl_prm.tiny import build_tokenizer

    text = "Ava has 25 apples, so 25 * 3 = 75 apples.\n\nThe answer is \\boxed{75}."
    assert AutoTokenizer.from_pretrained(tiny_judge_dir).encode(text) == build_tokenizer().encode(text)


def test_paths_are_cached_and_hf_loadable(tiny_policy_dir, tiny_judge_dir):
    from transformers import AutoConfig, AutoModelForCausalLM

    from rl_prm.tiny import judge_path, policy_path

    assert policy_path() == tiny_policy_dir and judge_path() == tiny_judge_dir
    for d in (tiny_policy_dir, tiny_judge_dir):
        cfg = AutoConfig.from_pretrained(d)
        assert cfg.model_type == "qwen2"
        assert cfg.hidden_size // cfg.num_attention_heads == 64  # vLLM CPU attention needs 64
        model = AutoModelForCausalLM.from_pretrained(d)
        assert sum(p.numel() for p in model.parameters()) < 5_000_000
    assert not any(p.suffix in (".safetensors", ".bin") for p in __import__("pathlib").Path(".").glob("*"))


@pytest.mark.slow
def test_policy_generates_through_vllm(policy_llm):
    from vllm import SamplingParams

    outs = policy_llm.generate(["Tom has 3 apples."], SamplingParams(n=2, max_tokens=16, temperature=1.0, seed=0))
    assert len(outs[0].outputs) == 2 and all(len(c.token_ids) > 0 for c in outs[0].outputs)


@pytest.mark.slow
def test_judge_writes_the_rprm_verdict_through_vllm(judge_llm, judge_tokenizer):
    import random

    from vllm import SamplingParams

    from rl_prm.score.prompt import VERDICT_PHRASE, judge_prompt
    from rl_prm.tiny.arith import make_problem

    p = make_problem(random.Random(7))
    prompts = [judge_prompt(judge_tokenizer, p.question, p.step_texts, k) for k in range(len(p.steps))]
    outs = judge_llm.generate(prompts, SamplingParams(n=2, temperature=0.95, top_p=0.95, max_tokens=300, seed=1))
    texts = [c.text for o in outs for c in o.outputs]
    with_verdict = sum(VERDICT_PHRASE in t for t in texts)
    assert with_verdict >= 0.7 * len(texts), texts
