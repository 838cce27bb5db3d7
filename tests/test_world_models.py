"""World models are trained with the tokenizer that HF/vLLM will load from the saved directory."""

from __future__ import annotations


def test_training_tokenizer_equals_what_loaders_see(tmp_path):
    from transformers import AutoTokenizer

    from rl_prm.world.cache import loaded_tokenizer

    tok = loaded_tokenizer(tmp_path)
    # what _save_model later writes: the tokenizer and a qwen2 config next to it
    tok.save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "qwen2"}')
    again = AutoTokenizer.from_pretrained(tmp_path)
    text = "Ivan has 13 - 1 = 12 books.\n\nThe answer is \\boxed{12}.\n\nIs the step correct (Yes/No)? Yes"
    assert tok.encode(text, add_special_tokens=False) == again.encode(text, add_special_tokens=False)
    assert tok.encode(" Yes", add_special_tokens=False)[0] != tok.encode(" No", add_special_tokens=False)[0]
    msgs = [{"role": "user", "content": "q"}]
    assert tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) == \
        again.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)


def test_world_builds_are_cached_and_the_judge_starts_from_the_policy(tmp_path, monkeypatch):
    """Small builds (a few SFT steps): the policy records its held-out accuracy, the judge is
    fine-tuned from that policy's weights, and a second call reuses the cache."""
    import json

    import torch
    from transformers import AutoModelForCausalLM

    from rl_prm.world.judge import JudgeSFTConfig, judge_examples, judge_path
    from rl_prm.world.policy import PolicySFTConfig, policy_path

    monkeypatch.setenv("RL_PRM_CACHE", str(tmp_path))
    pcfg = PolicySFTConfig(examples=64, steps=3, batch_size=4, eval_n=4)
    pol = policy_path(pcfg)
    facts = json.loads((pol / "build.json").read_text())
    assert facts["n"] == 4 and 0.0 <= facts["greedy_acc"] <= 1.0 and facts["config"]["steps"] == 3
    jcfg = JudgeSFTConfig(samples=16, steps=2, batch_size=2)
    jud = judge_path(jcfg, policy=pol)
    assert json.loads((jud / "build.json").read_text())["init"] == str(pol)
    p_w = AutoModelForCausalLM.from_pretrained(pol).state_dict()
    j_w = AutoModelForCausalLM.from_pretrained(jud).state_dict()
    assert p_w.keys() == j_w.keys()
    moved = [k for k in p_w if not torch.equal(p_w[k], j_w[k])]
    assert moved and max(float((p_w[k] - j_w[k]).abs().max()) for k in moved) < 0.1  # fine-tuned, not re-initialised
    mtime = (jud / "build.json").stat().st_mtime
    assert policy_path(pcfg) == pol and judge_path(jcfg, policy=pol) == jud
    assert (jud / "build.json").stat().st_mtime == mtime  # reused, not rebuilt

    # every judge example's key positions are its decisions: consistency, conclusion, then the
    # verdict token right before <|im_end|>
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(jud)
    for ids, start, keys in judge_examples(tok, 8, seed=3):
        assert start < keys[0] < keys[1] < keys[2] == len(ids) - 2
        assert tok.decode([ids[keys[2]]]) in (" Yes", " No")
        assert tok.decode([ids[keys[1]]]) in (" correct", " wrong")
        assert tok.decode(ids[keys[0]: keys[0] + 6]).strip().startswith(("matches", "does not match", "All", "Not all"))
