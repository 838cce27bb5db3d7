"""verl: the `rprm` reward manager puts each response's metrics row in reward_extra_info (the world's
process flags for world rows, which verl's validation averages per data source; no checker keys for
other rows), and a batch's rows give the local loop's prm/*, hack/*, process/* and judge/* metrics."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest
import torch

pytest.importorskip("verl")


def _manager(tok, recipe="recipes/grpo_vr_only_qwen2.5_math_7b.yaml"):  # default: outcome only, no judge
    from omegaconf import OmegaConf

    import rl_prm.verl_plugin  # noqa: F401
    from reward_fns.math_verify_reward import compute_score
    from rl_prm.backends.verl_backend import verl_overrides
    from rl_prm.config import load_recipe
    from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls

    cfg = load_recipe(recipe)
    if recipe.endswith("_verl.yaml"):  # world data: the options alone (verl_overrides would write its parquet files)
        from rl_prm.verl_ext.reward_manager import RewardManagerOptions

        config = OmegaConf.create({"reward": {"rprm": RewardManagerOptions.from_recipe(cfg).to_dict()}})
        return get_reward_manager_cls("rprm")(config, tok, compute_score)
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


def test_a_batch_gives_the_same_metrics_on_verl_as_on_the_local_loop(judge_tokenizer):
    """One batch of world responses (gold, miracle, wrong answer, one giant step, filler), scored by the same
    judge, through the verl reward manager + rprm_sync's reward_extra_metrics and through the local loop's
    step_metrics: equal prm/* (but the local-only positions), hack/*, process/* and judge/* metrics."""
    from types import SimpleNamespace

    from rl_prm.backends.local import step_metrics
    from rl_prm.backends.rollouts import StepRollouts
    from rl_prm.config import load_recipe
    from rl_prm.credit import EstimatorOptions, StepBatch
    from rl_prm.metrics import JUDGE_COST, no_judge_cost
    from rl_prm.score.gate import judged_mask
    from rl_prm.score.verifiable import verifiable_rewards
    from rl_prm.steps import step_token_ends
    from rl_prm.verl_ext.trainer import reward_extra_metrics
    from rl_prm.world.tasks import corrupt, miracle, problems

    rng = random.Random(1)
    p = problems("test", 1, seed=5)[0]
    mir = miracle(p, rng, kind="misquote").solution
    texts = [p.solution, mir, corrupt(p, rng, kind="slip").solution, p.solution.replace("\n\n", " "),
             "Wait, let me check. Thank you!\n\n" + mir]

    def judge(question, steps):  # passes every step but the third: misses some first errors, flags right steps
        return [0.2 if k == 2 else 0.9 for k in range(len(steps))], {**no_judge_cost(False), "judge_prompts": 1.0}

    recipe = "recipes/tiny_cpu_verl.yaml"  # min-form R-PRM + VR, answer-gated
    manager = _manager(judge_tokenizer, recipe)
    manager._step_scorer = judge
    data = _batch(judge_tokenizer, texts, p.question, str(p.answer), "world")

    async def go():
        return await asyncio.gather(*[manager.run_single(data[i: i + 1]) for i in range(len(data))])

    verl_m = reward_extra_metrics([o["reward_extra_info"] for o in manager.loop.run_until_complete(go())])

    cfg = load_recipe(recipe, ["trainer.backend=local"])
    rows = [{"problem": p.question, "answer": str(p.answer), "source": "world"}] * len(texts)
    ids = [judge_tokenizer.encode(t, add_special_tokens=False) + [judge_tokenizer.eos_token_id] for t in texts]
    outs = [SimpleNamespace(text=t, response_ids=i, truncated=False, prompt_index=0) for t, i in zip(texts, ids)]
    spans = [step_token_ends(i, judge_tokenizer, False) for i in ids]
    vr = verifiable_rewards(rows, texts)
    judged = judged_mask(cfg.reward.prm.gate, vr, len(texts))
    scores = [judge(p.question, sp.texts)[0] if ok else [0.0] * sp.num_steps for sp, ok in zip(spans, judged)]
    batch = StepBatch.from_spans(spans, [len(i) for i in ids], scores, vr, [0] * len(texts))
    r = StepRollouts([0], outs, rows, spans, 0.0, 0)
    local_m = step_metrics(cfg, r, scores, vr, judged, batch, torch.zeros(batch.B, batch.T), EstimatorOptions.from_recipe(cfg))

    cost = tuple(JUDGE_COST.values()) + ("prm/dedup_frac",)  # the judge's work: the scorer's, compared elsewhere
    shared = lambda m: {k: v for k, v in m.items() if k.startswith(("prm/", "hack/", "process/", "judge/"))  # noqa: E731
                        and "@" not in k and not k.endswith("_hist") and not k.startswith(cost)}
    assert shared(verl_m) == pytest.approx(shared(local_m))
    assert {"hack/prm_ok_vr_wrong", "hack/frac_no_separator", "judge/false_accept_rate", "judge/false_reject_rate",
            "process/miracle_rate", "prm/response_min_score_mean"} <= set(shared(verl_m))
    assert verl_m["hack/reflection_words"] > 0 and verl_m["hack/frac_no_separator"] == pytest.approx(1 / 5)
    # miracles: the misquote twice, and the gold steps run together (one step the checker cannot read)
    assert verl_m["process/miracle_rate"] == pytest.approx(3 / 5) and verl_m["judge/miracles"] == 3
