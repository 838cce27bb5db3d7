"""verl backend on CPU: recipe -> verl command checked against verl 0.9.1's config schema; the
`rprm` reward manager's rm_scores rows through verl's compute_advantage; and the parity matrix: the
same rollouts and step scores give the same advantages through the local path and through verl.

Schema check: rl_prm.verl_ext.config_check.compose (hydra's compose API) + validate (verl's
validate_config + its dataclass configs).
"""

from __future__ import annotations

import asyncio
import math
import pickle

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from rl_prm.backends.verl_backend import build_verl_command, hydra_value, verl_overrides
from rl_prm.config import load_recipe
from rl_prm.verl_ext.config_check import compose, validate

GPU_RECIPES = {
    "recipes/grpo_rprm_qwen2.5_math_7b.yaml": "rprm_rloo",
    "recipes/ppo_rprm_qwen2.5_math_1.5b.yaml": "gae",
    "recipes/grpo_vr_only_qwen2.5_math_7b.yaml": "rprm_rloo",
}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # fail fast instead of trying the network


def _compose_recipe(path, overrides=()):
    cfg = load_recipe(path, list(overrides))
    cmd = build_verl_command(cfg)
    assert cmd[:3] == ["python3", "-m", "verl.trainer.main_ppo"]
    return cfg, cmd, compose(cmd[3:])


@pytest.mark.parametrize("recipe", sorted(GPU_RECIPES))
def test_gpu_recipe_composes_and_validates_against_verl(recipe, tiny_policy_dir):
    # verl's validate_config builds the critic config, which reads the critic model's HF config:
    # use the local tiny policy for the PPO recipe (no network here); everything else as shipped.
    ov = [f"model.policy={tiny_policy_dir}"] if GPU_RECIPES[recipe] == "gae" else []
    cfg, cmd, c = _compose_recipe(recipe, ov)
    built = validate(c)
    assert c.algorithm.adv_estimator == GPU_RECIPES[recipe]
    assert c.trainer.total_training_steps == cfg.trainer.total_steps
    assert c.trainer.n_gpus_per_node == cfg.trainer.gpus_per_node and c.trainer.nnodes == cfg.trainer.nnodes
    assert list(c.trainer.logger) == ["console", "wandb"]
    assert c.trainer.resume_mode == "auto" and c.trainer.experiment_name == cfg.run.name
    assert c.actor_rollout_ref.rollout.n == cfg.rollout.n
    assert c.actor_rollout_ref.actor.optim.lr == cfg.optim.lr
    assert c.algorithm.use_kl_in_reward is False
    assert c.reward.custom_reward_function.path.endswith("reward_fns/math_verify_reward.py")
    assert callable(built["custom_reward_fn"])
    assert built["actor"].kl_loss_type == cfg.algorithm.kl_type
    from rl_prm.credit import EstimatorOptions
    from rl_prm.verl_ext.reward_manager import RewardManagerOptions

    assert c.reward.reward_manager.name == "rprm" and built["reward_manager"].__name__ == "RPRMRewardManager"
    opts = RewardManagerOptions.from_config(c)  # our manager accepts every option the command sets
    assert opts == RewardManagerOptions.from_recipe(cfg)
    assert c.actor_rollout_ref.rollout.agent.agent_loop_manager_class.endswith("RPRMAgentLoopManager")
    want = "encoded" if cfg.algorithm.estimator != "gae" else "token_rewards"
    assert opts.output == want
    if cfg.reward.prm.enabled:
        rm = c.reward.reward_model
        assert rm.enable and rm.enable_resource_pool and rm.n_gpus_per_node >= 1 and rm.nnodes >= 1
        assert rm.model_path == "kevinpro/R-PRM-7B-DPO"
        assert opts.prm.k == cfg.reward.prm.k
    else:
        assert not c.reward.reward_model.enable and opts.prm is None
    if cfg.algorithm.estimator != "gae":
        # our estimator reads exactly the recipe's options
        assert EstimatorOptions.from_dict(c.algorithm.rprm) == EstimatorOptions.from_recipe(cfg)
    if cfg.algorithm.estimator == "gae":
        assert "critic" in built and c.critic.model.path == str(tiny_policy_dir)
    # the recipe's free-form verl block is applied last
    for k, v in cfg.verl.items():
        from omegaconf import OmegaConf

        assert OmegaConf.select(c, k.lstrip("+")) == v, k


def test_unknown_verl_key_fails_with_its_name_and_plus_adds_it():
    bad = "verl.actor_rollout_ref.actor.no_such_option=1"
    cfg = load_recipe("recipes/grpo_vr_only_qwen2.5_math_7b.yaml", [bad])
    with pytest.raises(ValueError, match="actor_rollout_ref.actor.no_such_option"):
        compose(build_verl_command(cfg)[3:])
    with pytest.raises(ValueError, match=r"already (exists|at)"):  # our fallback / real hydra
        compose(["+trainer.nnodes=2"])
    c = compose(["+actor_rollout_ref.actor.no_such_option=1"])
    assert c.actor_rollout_ref.actor.no_such_option == 1


def test_hydra_values_round_trip_through_compose():
    vals = {"trainer.project_name": "my project, v2", "trainer.experiment_name": "123",
            "trainer.default_local_dir": "/tmp/a b/c", "trainer.logger": ["console", "file"],
            "trainer.resume_from_path": None, "trainer.val_before_train": False}
    c = compose([f"{k}={hydra_value(v)}" for k, v in vals.items()])
    from omegaconf import OmegaConf

    for k, v in vals.items():
        got = OmegaConf.select(c, k)
        assert (OmegaConf.to_container(got) if hasattr(got, "_content") else got) == v, k


def test_bad_recipe_for_verl_names_the_problem():
    with pytest.raises(ValueError, match="tiny_arith"):
        verl_overrides(load_recipe("recipes/grpo_rprm_qwen2.5_math_7b.yaml", ["data.train=tiny_arith"]))


# ------------------------------------------------------------------------ reward manager + estimator

SOLUTIONS = [  # (response text, is the boxed answer right for ground truth 12)
    "Tom has 3 bags of 4 apples.\n\nSo he has 3 * 4 = 12 apples.\n\nThe answer is \\boxed{12}.",
    "Tom has 3 bags.\n\n3 + 4 = 7.\n\nThe answer is \\boxed{7}.",
    "3 * 4 = 12, so \\boxed{12}",
    "Each bag has 4 apples.\n\n\n\nThe total is 4 + 4 = 8.\n\nSo \\boxed{8}",
]
QUESTION = "Tom has 3 bags with 4 apples each. How many apples does he have?"


class GivenScores:
    """Step scorer with given P(Yes) by step position (step scores are the judge's job, tested in
    test_score*; here we test what the manager does with them)."""

    def __init__(self):
        self.calls = []

    def __call__(self, question, steps):
        self.calls.append((question, list(steps)))
        scores = [0.9 if ("12" in s or "bag" in s) else 0.2 for s in steps]
        return scores, {"prm_fallbacks": 0.0}


def _batch(tok, texts, T=64, uids=("q0", "q0", "q1", "q1")):
    from tensordict import TensorDict
    from verl import DataProto

    P = 8
    prompts = torch.full((len(texts), P), tok.pad_token_id or 0, dtype=torch.long)
    responses = torch.full((len(texts), T), tok.pad_token_id or 0, dtype=torch.long)
    attn = torch.zeros(len(texts), P + T, dtype=torch.long)
    attn[:, :P] = 1
    for i, t in enumerate(texts):
        ids = tok.encode(t, add_special_tokens=False)[: T - 1] + [tok.eos_token_id]
        responses[i, : len(ids)] = torch.tensor(ids)
        attn[i, P : P + len(ids)] = 1
    n = len(texts)
    return DataProto(
        batch=TensorDict({"prompts": prompts, "responses": responses, "attention_mask": attn}, batch_size=n),
        non_tensor_batch={
            "data_source": np.array(["openai/gsm8k"] * n, dtype=object),
            "reward_model": np.array([{"style": "rule", "ground_truth": "12"}] * n, dtype=object),
            "extra_info": np.array([{"question": QUESTION}] * n, dtype=object),
            "uid": np.array(list(uids)[:n], dtype=object),
        },
    )


R_PRM_RECIPE = "recipes/grpo_rprm_qwen2.5_math_7b.yaml"
VR_RECIPE = "recipes/grpo_vr_only_qwen2.5_math_7b.yaml"


def _rprm_options(recipe=R_PRM_RECIPE, overrides=()):
    """reward.rprm exactly as the verl command carries it (the +reward.rprm.* overrides, parsed)."""
    from omegaconf import OmegaConf

    ov = [o[1:] for o in verl_overrides(load_recipe(recipe, list(overrides))) if o.startswith("+reward.rprm.")]
    return OmegaConf.from_dotlist(ov).reward.rprm


def _manager(tok, scorer, overrides=(), recipe=R_PRM_RECIPE, rprm=None):
    from omegaconf import OmegaConf

    import rl_prm.verl_plugin  # noqa: F401
    from reward_fns.math_verify_reward import compute_score
    from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls

    cls = get_reward_manager_cls("rprm")
    config = OmegaConf.create({"reward": {"rprm": rprm if rprm is not None else _rprm_options(recipe, overrides)}})
    return cls(config, tok, compute_score, step_scorer=scorer)


def _algorithm(recipe, overrides=()):
    """verl's `algorithm` node as the verl command builds it (adv_estimator + our +algorithm.rprm.*)."""
    from omegaconf import OmegaConf

    ov = [o.lstrip("+") for o in verl_overrides(load_recipe(recipe, list(overrides)))
          if o.startswith(("+algorithm.rprm.", "algorithm.adv_estimator="))]
    return OmegaConf.merge({"norm_adv_by_std_in_grpo": True}, OmegaConf.from_dotlist(ov).algorithm)


def _run(manager, data):
    """What verl's RewardLoopWorker + RewardLoopManager do: run_single per row, then assemble_rm_scores."""
    async def go():
        return await asyncio.gather(*[manager.run_single(data[i : i + 1]) for i in range(len(data))])

    outs = manager.loop.run_until_complete(go())
    rm = type(manager).assemble_rm_scores(data, [o["reward_score"] for o in outs])
    return outs, rm


def test_rprm_manager_rows_decode_to_steps_scores_and_outcome(judge_tokenizer):
    from rl_prm.credit import decode_rm_scores
    from rl_prm.steps import step_token_ends

    tok = judge_tokenizer
    data = _batch(tok, SOLUTIONS)
    scorer = GivenScores()
    outs, rm = _run(_manager(tok, scorer), data)
    T = data.batch["responses"].shape[1]
    resp_mask = data.batch["attention_mask"][:, -T:]
    d = decode_rm_scores(rm, resp_mask)
    for i, text in enumerate(SOLUTIONS):
        n = int(resp_mask[i].sum())
        spans = step_token_ends(data.batch["responses"][i, :n].tolist(), tok)
        k = spans.num_steps
        assert d.step_mask[i].sum() == k
        assert d.step_ends[i, :k].tolist() == spans.ends  # step boundaries survive the trip
        want = GivenScores()(QUESTION, spans.texts)[0]
        assert torch.allclose(d.step_scores[i, :k].double(), torch.tensor(want, dtype=torch.float64), atol=1e-5)
        right = "\\boxed{12}" in text
        assert d.outcome_mask[i] and d.outcome[i].item() == (1.0 if right else 0.0)
        info = outs[i]["reward_extra_info"]
        assert info["acc"] == d.outcome[i].item() and info["num_steps"] == k
        assert info["prm_min"] == pytest.approx(min(want))
        assert float(outs[i]["reward_score"]) == info["acc"]  # the logged scalar is a real reward
        assert d.separator_mask[i].any() == (k > 1)
        assert not (rm[i, n:] != 0).any()  # nothing past the response
    assert all(q == QUESTION for q, _ in scorer.calls)  # the judge sees the problem, not the chat prompt
    assert len(scorer.calls) == len(SOLUTIONS)


def test_rprm_rows_through_verl_compute_advantage(judge_tokenizer):
    """rm_scores from the manager -> verl's compute_advantage(adv_estimator=rprm_rloo) on uids."""
    from verl import DataProto
    from verl.trainer.ppo.ray_trainer import compute_advantage

    from rl_prm.credit import decode_rm_scores

    tok = judge_tokenizer
    data = _batch(tok, SOLUTIONS)
    _, rm = _run(_manager(tok, GivenScores()), data)
    T = rm.shape[1]
    mask = data.batch["attention_mask"][:, -T:]
    batch = DataProto.from_dict(
        tensors={"rm_scores": rm, "token_level_scores": rm, "token_level_rewards": rm, "response_mask": mask},
        non_tensors={"uid": data.non_tensor_batch["uid"]},
    )
    cfg = _algorithm(R_PRM_RECIPE)
    adv = compute_advantage(batch, adv_estimator="rprm_rloo", config=cfg).batch["advantages"]
    assert adv.shape == rm.shape and torch.isfinite(adv).all()
    assert not (adv[mask == 0] != 0).any()
    sep = decode_rm_scores(rm, mask).separator_mask
    assert not (adv[sep] != 0).any()  # PURE: separator tokens get no advantage
    mean = [(adv[i] * mask[i]).sum() / mask[i].sum() for i in range(len(SOLUTIONS))]
    # within each prompt group the right, well-scored solution beats the wrong one
    assert mean[0] > mean[1] and mean[2] > mean[3]


def test_token_rewards_output_for_gae(judge_tokenizer):
    """output=token_rewards: plain assign_credit rewards + coef x outcome on the last token."""
    from rl_prm.credit import assign_credit
    from rl_prm.steps import batch_step_token_ends

    tok = judge_tokenizer
    data = _batch(tok, SOLUTIONS[:2])
    outs, rm = _run(_manager(tok, GivenScores(), recipe="recipes/ppo_rprm_qwen2.5_math_1.5b.yaml",
                             overrides=["reward.verifiable.coef=0.5"]), data)
    T = rm.shape[1]
    mask = data.batch["attention_mask"][:, -T:]
    ids = [data.batch["responses"][i, : int(mask[i].sum())].tolist() for i in range(2)]
    ends, smask, spans = batch_step_token_ends(ids, tok)
    p = torch.zeros(ends.shape, dtype=torch.float64)
    for i, sp in enumerate(spans):
        p[i, : sp.num_steps] = torch.tensor(GivenScores()(QUESTION, sp.texts)[0], dtype=torch.float64)
    want = assign_credit(p, smask, ends, mask, mode="min_form", temperature=0.1)
    for i in range(2):
        want[i, int(mask[i].sum()) - 1] += 0.5 * outs[i]["reward_extra_info"]["acc"]
    assert torch.allclose(rm.double(), want.double(), atol=1e-4)


def test_token_reward_is_a_float_that_keeps_its_row_across_pickling():
    import ray.cloudpickle as cp

    from rl_prm.verl_ext.reward_manager import TokenReward

    r = TokenReward(1.0, [0.0, 2.5, 0.0, 70.0])
    for dumps, loads in ((pickle.dumps, pickle.loads), (cp.dumps, cp.loads)):
        back = loads(dumps({"reward_score": r}))["reward_score"]
        assert isinstance(back, float) and float(back) == 1.0 and back.codes == r.codes
    assert torch.tensor([r]).item() == 1.0  # verl's scalar paths see the float


def test_bad_rprm_option_is_named(judge_tokenizer):
    good = _rprm_options()
    from omegaconf import OmegaConf

    with pytest.raises(ValueError, match="nope"):
        _manager(judge_tokenizer, GivenScores(), rprm=OmegaConf.merge(good, {"nope": 1}))
    with pytest.raises(ValueError, match="output"):
        _manager(judge_tokenizer, GivenScores(), rprm=OmegaConf.merge(good, {"output": "sum"}))
    with pytest.raises(ValueError, match="kk"):
        _manager(judge_tokenizer, GivenScores(), rprm=OmegaConf.merge(good, {"prm": {"kk": 2}}))


def test_missing_judge_is_a_clear_error(judge_tokenizer):
    m = _manager(judge_tokenizer, None)
    data = _batch(judge_tokenizer, SOLUTIONS[:1])
    with pytest.raises(RuntimeError, match="reward_model.enable"):
        _run(m, data)


@pytest.mark.slow
def test_rprm_manager_with_the_tiny_judge(judge_tokenizer, judge_llm):
    """End to end on CPU: the session's tiny-judge vLLM engine through rl_prm's scorer."""
    from rl_prm.credit import decode_rm_scores
    from rl_prm.score.engines import VLLMJudgeEngine
    from rl_prm.score.scorer import RPRMScorer, ScoreConfig
    from rl_prm.verl_ext.reward_manager import score_with

    scorer = RPRMScorer(VLLMJudgeEngine(judge_llm), ScoreConfig(k=2, max_critique_tokens=200))
    tok = judge_tokenizer
    data = _batch(tok, SOLUTIONS[:2])
    def judge(q, steps):
        return score_with(scorer, q, steps)

    judge.thread_safe = False  # the in-process vLLM engine must be driven from its own thread
    outs, rm = _run(_manager(tok, judge, ["reward.prm.k=2"]), data)
    T = rm.shape[1]
    d = decode_rm_scores(rm, data.batch["attention_mask"][:, -T:])
    for i in range(2):
        k = int(d.step_mask[i].sum())
        assert k == outs[i]["reward_extra_info"]["num_steps"] == 3
        s = d.step_scores[i, :k]
        assert ((s >= 0) & (s <= 1)).all()
        assert not math.isnan(outs[i]["reward_extra_info"]["prm_mean"])


# ------------------------------------------------------------------------ parity: local == verl

def _parity_cases():
    cases = []
    for est in ("rprm_rloo", "rprm_grpo"):
        for mode in ("sum", "min_form", "future_min"):
            for clip in (None, 0.3):
                for delta in (False, True):
                    for vr in (True, False):
                        for whiten in (True, False):
                            ov = [f"algorithm.estimator={est}", f"reward.credit.mode={mode}", f"reward.credit.delta={delta}",
                                  f"reward.verifiable.enabled={vr}", f"algorithm.whiten={whiten}"]
                            ov += [f"reward.credit.clip_eta={clip}"] if clip is not None else []
                            cases.append(pytest.param(R_PRM_RECIPE, ov, id=f"parity-{est}-{mode}-clip{clip}-delta{delta}"
                                                      f"-vr{vr}-whiten{whiten}"))
    for est in ("rprm_rloo", "rprm_grpo", "outcome_grpo"):  # the VR-only baseline: no judge
        cases.append(pytest.param(VR_RECIPE, [f"algorithm.estimator={est}"], id=f"parity-{est}-vr_only"))
    for est in ("rprm_rloo", "rprm_grpo"):  # wrong answers kept from the judge (reward.prm.gate)
        for mode in ("min_form", "future_min"):
            ov = [f"algorithm.estimator={est}", f"reward.credit.mode={mode}", "reward.prm.gate=answer_correct"]
            cases.append(pytest.param(R_PRM_RECIPE, ov, id=f"parity-{est}-{mode}-gated"))
    return cases


def _given_items(items):
    """GivenScores as a scorer's `score(items)` (ItemScores), for the local backend's scoring path."""
    from rl_prm.score.types import ItemScore, StepScore

    return [ItemScore("ok", [StepScore(p, [p], 1, 0, None, []) for p in GivenScores()(it["question"], it["steps"])[0]],
                      None, 0, 0, 0.0, judged_steps=len(it["steps"])) for it in items]


PARITY_TEXTS = SOLUTIONS + [
    "Tom has 3 bags.\n\nHe gets 3 * 4 = 12.\n\nThe answer is \\boxed{12}.",
    "3 + 4 = 7 apples, \\boxed{7}",
]


@pytest.mark.parametrize("recipe, overrides", _parity_cases())
def test_parity_local_and_verl_give_the_same_advantages(judge_tokenizer, recipe, overrides):
    """One recipe, one objective: for fixed rollouts and step scores, the advantages the local loop
    computes (StepBatch.from_spans -> ESTIMATORS) equal what verl's compute_advantage gets through
    our reward manager's rm_scores and our registered estimator, to 1e-6."""
    from verl import DataProto
    from verl.trainer.ppo.ray_trainer import compute_advantage

    from rl_prm.credit import ESTIMATORS, EstimatorOptions, StepBatch
    from rl_prm.score.gate import judged_mask
    from rl_prm.score.pool import assemble, score_spans
    from rl_prm.score.verifiable import verifiable_rewards
    from rl_prm.steps import step_token_ends

    tok = judge_tokenizer
    texts = PARITY_TEXTS
    data = _batch(tok, texts, uids=["q0", "q0", "q0", "q1", "q1", "q1"])
    cfg = load_recipe(recipe, overrides)
    # --- verl: our manager per response -> rm_scores -> verl's compute_advantage
    _, rm = _run(_manager(tok, GivenScores(), overrides, recipe=recipe), data)
    T = rm.shape[1]
    mask = data.batch["attention_mask"][:, -T:]
    batch = DataProto.from_dict(tensors={"token_level_rewards": rm, "response_mask": mask},
                                non_tensors={"uid": data.non_tensor_batch["uid"]})
    est = cfg.algorithm.estimator
    verl_adv = compute_advantage(batch, adv_estimator=est, config=_algorithm(recipe, overrides)).batch["advantages"]
    # --- local: the loop's own construction from the same responses
    ids = [data.batch["responses"][i, : int(mask[i].sum())].tolist() for i in range(len(texts))]
    spans = [step_token_ends(x, tok) for x in ids]
    rows = [{"answer": "12", "source": "openai/gsm8k"}] * len(texts)
    vr = verifiable_rewards(rows, [sp.text for sp in spans]) if cfg.reward.verifiable.enabled else None
    scores = None
    if cfg.reward.prm.enabled:  # the local loop's scoring path: the gate, then the judged responses' scores
        judged = judged_mask(cfg.reward.prm.gate, vr, len(texts))
        scores, m = assemble(spans, score_spans(_given_items, [QUESTION] * len(texts), spans, judged), judged,
                             cfg.reward.prm.fallback_score)
        assert m["prm/gated_responses"] == (3 if cfg.reward.prm.gate != "none" else 0)  # the three wrong answers
    local = StepBatch.from_spans(spans, [len(x) for x in ids], scores, vr, list(data.non_tensor_batch["uid"]), T=T)
    local_adv, _ = ESTIMATORS.get(est)(local, EstimatorOptions.from_recipe(cfg))
    assert torch.isfinite(local_adv).all() and local_adv.abs().max() > 0
    assert (verl_adv - local_adv).abs().max() <= 1e-6, (verl_adv - local_adv).abs().max()


@pytest.mark.parametrize("gate", ["none", "answer_correct"])
def test_parity_with_judge_prompts_shared_by_responses(judge_tokenizer, gate):
    """A real scorer (rl_prm.score.scorer over a scripted engine) on responses that share steps: the local
    path (one scoring call for the batch) and verl's (one call per response, concurrent, sharing a memo)
    each judge a shared judge prompt once, and both give the advantages of judging every response alone."""
    from test_score_core import ScriptedEngine
    from verl import DataProto
    from verl.trainer.ppo.ray_trainer import compute_advantage

    from rl_prm.credit import ESTIMATORS, EstimatorOptions, StepBatch
    from rl_prm.score.gate import judged_mask
    from rl_prm.score.memo import JudgeMemo
    from rl_prm.score.pool import assemble, score_spans
    from rl_prm.score.scorer import RPRMScorer, ScoreConfig
    from rl_prm.score.verifiable import verifiable_rewards
    from rl_prm.steps import step_token_ends
    from rl_prm.verl_ext.reward_manager import score_with

    tok = judge_tokenizer
    texts = PARITY_TEXTS + PARITY_TEXTS[:2]  # two more responses identical to others: every step shared
    ov = ["reward.prm.k=1", "reward.prm.temperature=0", f"reward.prm.gate={gate}"]
    cfg = load_recipe(R_PRM_RECIPE, ov)
    script = lambda text, step, j: ("yes", 0.9 if ("12" in text or "bag" in text) else 0.2)  # noqa: E731
    scoring = ScoreConfig.from_options(cfg.reward.prm, seed=0)
    data = _batch(tok, texts, uids=["q0"] * 4 + ["q1"] * 4)
    T = data.batch["responses"].shape[1]
    mask = data.batch["attention_mask"][:, -T:]
    ids = [data.batch["responses"][i, : int(mask[i].sum())].tolist() for i in range(len(texts))]
    spans = [step_token_ends(x, tok) for x in ids]
    vr = verifiable_rewards([{"answer": "12", "source": "openai/gsm8k"}] * len(texts), [sp.text for sp in spans])
    judged = judged_mask(gate, vr, len(texts))
    opts, est = EstimatorOptions.from_recipe(cfg), ESTIMATORS.get(cfg.algorithm.estimator)

    def local_adv(score):
        scores, m = assemble(spans, score_spans(score, [QUESTION] * len(texts), spans, judged), judged,
                             scoring.fallback_score)
        batch = StepBatch.from_spans(spans, [len(x) for x in ids], scores, vr, list(data.non_tensor_batch["uid"]), T=T)
        return est(batch, opts)[0], m

    alone = lambda items: [RPRMScorer(ScriptedEngine(tok, script), scoring).score([it])[0] for it in items]  # noqa: E731
    want, m_alone = local_adv(alone)
    local_engine = ScriptedEngine(tok, script)
    got, m = local_adv(RPRMScorer(local_engine, scoring).score)
    assert m["prm/judge_prompts"] == m_alone["prm/judge_prompts"] > m["prm/judge_prompts_distinct"]
    assert m["prm/judge_prompts_distinct"] == sum(map(len, local_engine.generate_calls))  # requests sent
    assert (got - want).abs().max() == 0
    verl_engine = ScriptedEngine(tok, script)
    shared = RPRMScorer(verl_engine, scoring, memo=JudgeMemo())
    outs, rm = _run(_manager(tok, lambda q, steps: score_with(shared, q, steps), ov), data)
    batch = DataProto.from_dict(tensors={"token_level_rewards": rm, "response_mask": mask},
                                non_tensors={"uid": data.non_tensor_batch["uid"]})
    verl_adv = compute_advantage(batch, adv_estimator=cfg.algorithm.estimator,
                                 config=_algorithm(R_PRM_RECIPE, ov)).batch["advantages"]
    assert (verl_adv - want).abs().max() <= 1e-6
    sent = [c[1] for calls in verl_engine.generate_calls for c in calls]
    assert len(sent) == m["prm/judge_prompts_distinct"]  # each distinct judge prompt judged once
    infos = [o["reward_extra_info"] for o in outs]
    assert sum(i["judge_prompts_distinct"] for i in infos) == len(sent)
    assert sum(i["judge_gated"] for i in infos) == m["prm/gated_responses"] == (4 if gate != "none" else 0)


def test_every_recipe_key_reaches_verl_or_is_refused():
    """A key the verl backend cannot honour is refused at load, never ignored: changing any knob of
    the GPU recipe either changes the verl command or fails at load (device-specific knobs aside)."""
    from rl_prm.config import RecipeConfig
    from rl_prm.schema import choices_of, knobs

    base_cfg = load_recipe(R_PRM_RECIPE)
    base = verl_overrides(base_cfg)
    special = {"run.name": "other", "model.policy": "org/other", "model.judge": "org/judge", "model.ref_policy": "org/ref",
               "data.train": "gsm8k", "data.test": "gsm8k", "trainer.logger": "[console]", "trainer.device": "cpu",
               "data.prompt_instruction": "Solve.", "run.output_dir": "elsewhere"}
    device_only = {"rollout.kv_cache_gib", "reward.prm.kv_cache_gib"}  # CPU engines only; the GPU recipe has GPUs
    ignored = []
    for k in knobs(RecipeConfig):
        if k.key in device_only or k.key in ("verl", "trainer.backend"):
            continue
        v = OmegaConf.select(base_cfg, k.key)
        if k.key in special:
            new = special[k.key]
        elif isinstance(v, bool):
            new = not v
        elif choices_of(k.meta):
            new = next(c for c in choices_of(k.meta) if c != v)
        elif isinstance(v, int):
            new = v + 1
        elif isinstance(v, float):
            new = min(v * 0.5 + 0.01, 1.0) if (k.meta.get("le") == 1) else v * 2 + 0.1
        else:  # None
            new = {"reward.credit.clip_eta": 0.2, "reward.prm.early_reject_threshold": 0.3}.get(k.key, 7)
        try:
            cfg = load_recipe(R_PRM_RECIPE, [f"{k.key}={new}"])
            cmd = verl_overrides(cfg)
        except ValueError:
            continue  # refused at load (or by the command builder), naming the key
        if cmd == base:
            ignored.append(f"{k.key}={new}")
    assert not ignored, f"silently ignored on verl: {ignored}"
