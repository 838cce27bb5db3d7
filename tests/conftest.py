"""Shared fixtures. vLLM engines take 25-45 s to start on CPU, so each model gets ONE engine per
test session (session-scoped fixtures below); tests must reuse them instead of making their own.

Tiny models are built offline on first use and cached under $RL_PRM_CACHE (default
~/.cache/rl_prm), so a second run starts fast.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@pytest.fixture(scope="session")
def tiny_policy_dir():
    from rl_prm.tiny import policy_path

    return policy_path()


@pytest.fixture(scope="session")
def tiny_judge_dir():
    from rl_prm.tiny import judge_path

    return judge_path()


@pytest.fixture(scope="session")
def judge_tokenizer(tiny_judge_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_judge_dir)


@pytest.fixture(scope="session")
def judge_llm(tiny_judge_dir):
    """The session's single in-process vLLM engine for the tiny judge."""
    from rl_prm.vllm_engine import make_llm, shutdown_llm

    llm = make_llm(tiny_judge_dir, max_model_len=2048, kv_cache_gib=1)
    yield llm
    shutdown_llm(llm)


@pytest.fixture(scope="session")
def local_run():
    """Recipe overrides of every local training test: the tiny models, 2 prompts x 2 samples, engine
    sizes that fit GSM8K-style parquet prompts; runs with these share `local_engines`."""
    return ["model.policy=tiny", "model.judge=tiny", "rollout.prompts_per_step=2", "rollout.n=2",
            "rollout.max_tokens=48", "data.max_prompt_tokens=512",
            "reward.prm.gate=none"]  # the random policy never answers right: every response goes to the judge


@pytest.fixture(scope="session")
def local_engines():
    """The session's local-backend engines (policy rollout actor, R-PRM pool), shared by the training
    tests; runs with the `local_run` overrides reuse them."""
    from rl_prm.backends.engines import Engines, ray_init

    ray_init()
    engines = Engines()
    yield engines
    engines.close()


@pytest.fixture(scope="session")
def policy_llm(tiny_policy_dir):
    """The session's single in-process vLLM engine for the tiny policy."""
    from rl_prm.vllm_engine import make_llm, shutdown_llm

    llm = make_llm(tiny_policy_dir, max_model_len=1024, kv_cache_gib=1)
    yield llm
    shutdown_llm(llm)

