"""verl: the `rprm` reward manager puts the world's per-response process flags (trace / answer /
miracle) in reward_extra_info for world rows (verl's validation averages them per data source),
and adds no keys to other rows."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest
import torch

pytest.importorskip("verl")


def _manager(tok):
    from omegaconf import OmegaConf

    import rl_prm.verl_plugin  # noqa: F401
    from reward_fns.math_verify_reward import compute_score
    from rl_prm.backends.verl_backend import verl_overrides
    from rl_prm.config import load_recipe
    from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls

    cfg = load_recipe("recipes/grpo_vr_only_qwen2.5_math_7b.yaml")  # outcome only: no judge needed
    ov = [o[1:] for o in verl_overrides(cfg) if o.startswith("+reward.rprm.")]
    config = OmegaConf.create({"reward": {"rprm": OmegaConf.from_dotlist(ov).reward.rprm}})
    return get_reward_manager_cls("rprm")(config, tok, compute_score)


def _batch(tok, texts, question, gold, source):
    from tensordict import TensorDict
    from verl import DataProto

    P, T = 8, 160
    n = len(texts)
    prompts = torch.full((n, P), tok.pad_token_id, dtype=torch.long)
    responses = torch.full((n, T), tok.pad_token_id, dtype=torch.long)
    attn = torch.zeros(n, P + T, dtype=torch.long)
    attn[:, :P] = 1
    for i, t in enumerate(texts):
        ids = tok.encode(t, add_special_tokens=False)[: T - 1] + [tok.eos_token_id]
        responses[i, : len(ids)] = torch.tensor(ids)
        attn[i, P: P + len(ids)] = 1
    return DataProto(
        batch=TensorDict({"prompts": prompts, "responses": responses, "attention_mask": attn}, batch_size=n),
        non_tensor_batch={
            "data_source": np.array([source] * n, dtype=object),
            "reward_model": np.array([{"style": "rule", "ground_truth": gold}] * n, dtype=object),
            "extra_info": np.array([{"question": question}] * n, dtype=object),
            "uid": np.array(["u"] * n, dtype=object),
        },
    )


def test_world_rows_carry_trace_answer_and_miracle_flags(judge_tokenizer):
    from rl_prm.world.tasks import corrupt, miracle, problems

    rng = random.Random(0)
    p = problems("test", 1, seed=3)[0]
    texts = [p.solution, miracle(p, rng, kind="misquote").solution, corrupt(p, rng, kind="slip").solution]
    manager = _manager(judge_tokenizer)

    def run(source):
        data = _batch(judge_tokenizer, texts, p.question, str(p.answer), source)

        async def go():
            return await asyncio.gather(*[manager.run_single(data[i: i + 1]) for i in range(len(data))])

        return [o["reward_extra_info"] for o in manager.loop.run_until_complete(go())]

    infos = run("world")
    assert [i["acc"] for i in infos] == [1.0, 1.0, 0.0]  # the outcome reward pays the miracle
    assert [(i["trace_correct"], i["answer_correct"], i["miracle"]) for i in infos] == [
        (1.0, 1.0, 0.0), (0.0, 1.0, 1.0), (0.0, 0.0, 0.0)]
    others = run("openai/gsm8k")
    assert all(not {"trace_correct", "answer_correct", "miracle"} & set(i) for i in others)
    assert all(set(i) == set(infos[0]) for i in infos)  # verl reads every row's keys from the first row
