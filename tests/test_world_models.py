"""World models are trained with the tokenizer that HF/vLLM will load from the saved directory."""

from __future__ import annotations

import pytest


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

    from rl_prm.world.judge import JudgeConfig, JudgeSFTConfig, judge_path
    from rl_prm.world.policy import PolicySFTConfig, policy_path

    monkeypatch.setenv("RL_PRM_CACHE", str(tmp_path))
    pcfg = PolicySFTConfig(examples=64, steps=3, batch_size=4, eval_n=4)
    pol = policy_path(pcfg)
    facts = json.loads((pol / "build.json").read_text())
    assert facts["n"] == 4 and 0.0 <= facts["greedy_acc"] <= 1.0 and facts["config"]["steps"] == 3
    assert 0.0 <= facts["sampled_miracle_rate"] <= facts["sampled_acc"]  # the process metrics of the start policy
    jcfg = JudgeConfig(sft=JudgeSFTConfig(samples=16, steps=2, batch_size=2, extra_layers=1), dpo=None)  # SFT only
    jud = judge_path(jcfg, policy=pol)
    assert json.loads((jud / "build.json").read_text())["init"] == str(pol)
    p_w = AutoModelForCausalLM.from_pretrained(pol).state_dict()
    j_w = AutoModelForCausalLM.from_pretrained(jud).state_dict()
    n_pol = AutoModelForCausalLM.from_pretrained(pol).config.num_hidden_layers
    added = {k for k in j_w if k.startswith(f"model.layers.{n_pol}.")}  # the judge is deeper by extra_layers
    assert set(p_w) == set(j_w) - added and added and AutoModelForCausalLM.from_pretrained(jud).config.num_hidden_layers \
        == n_pol + jcfg.sft.extra_layers
    moved = [k for k in p_w if not torch.equal(p_w[k], j_w[k])]
    assert moved and max(float((p_w[k] - j_w[k]).abs().max()) for k in moved) < 0.1  # fine-tuned, not re-initialised
    mtime = (jud / "build.json").stat().st_mtime
    assert policy_path(pcfg) == pol and judge_path(jcfg, policy=pol) == jud
    assert (jud / "build.json").stat().st_mtime == mtime  # reused, not rebuilt


@pytest.mark.slow
def test_judge_build_runs_dpo_on_its_own_sampled_critiques(tmp_path, monkeypatch):
    """The full judge recipe on tiny sizes: SFT, then critiques sampled from the SFT judge on vLLM,
    paired by verdict, and DPO from the SFT judge (build.json records both stages)."""
    import json

    from rl_prm.world.dpo import DPOConfig
    from rl_prm.world.judge import JudgeConfig, JudgeSFTConfig, judge_path, sft_judge_path
    from rl_prm.world.policy import PolicySFTConfig, policy_path

    monkeypatch.setenv("RL_PRM_CACHE", str(tmp_path))
    pol = policy_path(PolicySFTConfig(examples=64, steps=3, batch_size=4, eval_n=4))
    sft = JudgeSFTConfig(samples=64, steps=20, batch_size=4)
    jud = judge_path(JudgeConfig(sft=sft, dpo=DPOConfig(units=6, samples=2, steps=2, batch_size=2)), policy=pol)
    facts = json.loads((jud / "build.json").read_text())
    assert facts["init"] == str(sft_judge_path(sft, policy=pol)) and facts["sft"]["config"] == facts["config"]["sft"]
    assert facts["dpo_pairs"]["critiques"] == 12 and 0 <= facts["dpo_pairs"]["pairs"] <= 12
    assert facts["dpo_train_s"] >= 0 and (jud / "model.safetensors").exists()
    from rl_prm.vllm_engine import judge_dtype

    assert facts["dpo_pairs"]["sampling_dtype"] == judge_dtype("auto")  # sampled as reward.prm.dtype's default


def test_build_threads_are_the_cores_other_processes_leave_free(monkeypatch):
    import os
    import threading
    import time

    import rl_prm.world.cache as cache

    monkeypatch.delenv("RL_PRM_BUILD_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    for busy, threads in ((0.05, 2), (1.2, 1), (2.0, 1)):  # cores busy in other processes -> threads
        monkeypatch.setattr(cache, "busy_cores_of_others", lambda busy=busy: busy)
        assert cache.build_threads() == threads
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    monkeypatch.setattr(cache, "busy_cores_of_others", lambda: 0.0)
    assert cache.build_threads() == 4  # small matrices: at most 4
    monkeypatch.setenv("RL_PRM_BUILD_THREADS", "3")
    assert cache.build_threads() == 3
    monkeypatch.undo()
    # another process's busy core counts, this process's own busy thread does not
    import subprocess
    import sys

    stop = time.time() + 1.0
    spin = threading.Thread(target=lambda: [None for _ in iter(lambda: time.time() > stop, True)])
    spin.start()
    own = cache.busy_cores_of_others(0.5)
    spin.join()
    child = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time() + 1.5\nwhile time.time() < t: pass"])
    try:
        time.sleep(0.2)
        other = cache.busy_cores_of_others(0.5)
    finally:
        child.wait()
    assert other > own + 0.4
