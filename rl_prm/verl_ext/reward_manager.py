"""The `rprm` reward manager for verl 0.9.1 (registered in verl's reward-loop registry).

Imported through rl_prm.verl_plugin (PLUGIN_MODULES) in every process that imports verl, so
`reward.reward_manager.name=rprm` resolves everywhere. Per response (`run_single`):

  1. split the response into steps on blank lines and map each step to its last token
     (`rl_prm.steps.step_token_ends`, the same split the local backend and the scorer use);
  2. score the steps with the R-PRM judge (K critiques per step, mean P(Yes)) through a
     `StepScorer` (default: `RouterStepScorer`, the rl_prm scorer over verl's reward-model router,
     i.e. the judge served by vLLM replicas on the reward resource pool);
  3. compute the verifiable reward with `compute_score` (verl passes our
     `reward.custom_reward_function`, reward_fns/math_verify_reward.py:compute_score);
  4. build the response's token-level rm_scores row:
       output="encoded"        `rl_prm.credit.encode_rm_scores` (step scores at step ends, outcome on
                               the last token, separator flags) for the rprm_rloo / rprm_grpo
                               estimators, which decode it (verl's v1 trainer hands estimators only
                               rm_scores, response_mask, uid);
       output="token_rewards"  plain `assign_credit(...)` token rewards + outcome_coef x verifiable
                               reward on the last token, for verl's per-token `gae` (PPO) or
                               outcome estimators (grpo/rloo then see the return from token 0).

The row travels to verl as `reward_score`: a `TokenReward`, a float (the real scalar reward, so
verl's scalar paths keep working) that carries the per-token row in `.codes`. Two verl paths use it:
  * colocated reward (`reward_model.enable_resource_pool=False`): `RewardLoopManager` calls
    `assemble_rm_scores(data, scores)`, overridden here to write the rows;
  * streaming reward (judge on its own pool, or no judge): the agent loop writes a scalar at the
    last token; `rl_prm.verl_ext.agent_loop.RPRMAgentLoopManager` (set by the verl backend through
    `+actor_rollout_ref.rollout.agent.agent_loop_manager_class`) writes the row instead.
Real values (acc, prm_min/mean/last, num_steps, ...) are logged through reward_extra_info, since
`rm_scores.sum()` is not a reward under the encoding.

Options: `+reward.rprm.<name>=...` (see `RPRMRewardOptions`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Optional, Protocol, Sequence

import torch

from rl_prm.credit import assign_credit, encode_rm_scores
from rl_prm.steps import StepSpans, step_token_ends

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("RL_PRM_LOGGING_LEVEL", "WARNING"))

OUTPUTS = ("encoded", "token_rewards")


@dataclass
class RPRMRewardOptions:
    """Options of the `rprm` reward manager (`+reward.rprm.*`).

    k / temperature / top_p / max_critique_tokens: R-PRM sampling (K critiques per step, mean P(Yes)).
    fallback_score: score of a step the judge could not score (counted in `prm_fallbacks`).
    output: "encoded" (rprm_* estimators) | "token_rewards" (gae, outcome estimators).
    verifiable: add the math-verify outcome reward; outcome_coef weights it (token_rewards only:
        the rprm_* estimators weight it with algorithm.rprm.outcome_coef).
    separators: mark step-separator tokens in the encoding (zero-advantage option of rprm_rloo).
    mode / credit_temperature / clip_eta / delta / score_map: credit for output="token_rewards".
    prm: False = no judge (verifiable reward only, still as a row).
    """

    k: int = 4
    temperature: float = 0.95
    top_p: float = 0.95
    max_critique_tokens: int = 1024
    fallback_score: float = 0.5
    output: str = "encoded"
    verifiable: bool = True
    outcome_coef: float = 1.0
    separators: bool = True
    mode: str = "min_form"
    credit_temperature: float = 0.1
    clip_eta: Optional[float] = None
    delta: bool = False
    score_map: str = "2p-1"
    prm: bool = True

    @classmethod
    def from_config(cls, config: Any) -> "RPRMRewardOptions":
        """Read `config.reward.rprm` (a DictConfig/dict, or None for defaults); unknown keys raise."""
        src = None
        if config is not None:
            reward = config.get("reward") if hasattr(config, "get") else getattr(config, "reward", None)
            if reward is not None:
                src = reward.get("rprm") if hasattr(reward, "get") else getattr(reward, "rprm", None)
        items = dict(src.items()) if src is not None else {}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(items) - known
        if unknown:
            raise ValueError(f"unknown reward.rprm option(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**items).validate()

    def validate(self) -> "RPRMRewardOptions":
        if self.output not in OUTPUTS:
            raise ValueError(f"reward.rprm.output must be one of {OUTPUTS}, got {self.output!r}")
        if self.k < 1:
            raise ValueError(f"reward.rprm.k must be >= 1, got {self.k}")
        if not 0.0 <= self.fallback_score <= 1.0:
            raise ValueError(f"reward.rprm.fallback_score must be in [0, 1], got {self.fallback_score}")
        return self


class TokenReward(float):
    """A scalar reward (the float value) that carries the response's token-level rm_scores row.

    `codes` has one float per valid response token. Pickles (Ray) with its codes.
    """

    codes: list[float]

    def __new__(cls, value: float, codes: Sequence[float]):
        obj = super().__new__(cls, value)
        obj.codes = [float(c) for c in codes]
        return obj

    def __reduce__(self):
        return (TokenReward, (float(self), self.codes))


class StepScorer(Protocol):
    """Called from an executor thread unless it has `thread_safe = False` (then inline)."""

    def __call__(self, question: str, steps: list[str]) -> tuple[list[Optional[float]], int]:
        """Scores (P(Yes), mean over K; None = could not score) of `steps` and the number of failed critiques."""
        ...


# --------------------------------------------------------------------------------- pure row logic


def build_row(
    spans: StepSpans,
    step_scores: Sequence[Optional[float]],
    outcome: Optional[float],
    n_tokens: int,
    opts: RPRMRewardOptions,
) -> tuple[list[float], dict[str, float]]:
    """Token-level rm_scores row (length n_tokens) and logged scalars for one response.

    step_scores: one P(Yes) per step of `spans` (None -> opts.fallback_score, counted).
    outcome: verifiable reward (None = unavailable: no outcome code / no bonus).
    """
    if len(step_scores) != spans.num_steps:
        raise ValueError(f"{len(step_scores)} step scores for {spans.num_steps} steps")
    fallbacks = sum(s is None for s in step_scores)
    p = [opts.fallback_score if s is None else float(s) for s in step_scores]
    bad = [x for x in p if not (0.0 <= x <= 1.0)]
    if bad:
        raise ValueError(f"step score {bad[0]!r} is not a probability in [0, 1]")
    S = max(1, len(p))
    scores = torch.zeros(1, S, dtype=torch.float64)
    mask = torch.zeros(1, S, dtype=torch.bool)
    ends = torch.zeros(1, S, dtype=torch.long)
    if p:
        scores[0, : len(p)] = torch.tensor(p, dtype=torch.float64)
        mask[0, : len(p)] = True
        ends[0, : len(p)] = torch.tensor(spans.ends, dtype=torch.long)
    response_mask = torch.ones(1, n_tokens, dtype=torch.long)
    if opts.output == "encoded":
        sep = None
        if opts.separators and n_tokens:
            flags = spans.separator_mask()[:n_tokens]
            sep = torch.zeros(1, n_tokens, dtype=torch.bool)
            if flags:
                sep[0, : len(flags)] = torch.tensor(flags, dtype=torch.bool)
        out = None
        if outcome is not None and n_tokens:
            out = torch.tensor([float(outcome)], dtype=torch.float64)
        row = encode_rm_scores(scores, mask, ends, response_mask, outcome=out, separator_mask=sep)
    else:
        row = torch.zeros(1, n_tokens, dtype=torch.float64)
        if p:
            row = assign_credit(
                scores, mask, ends, response_mask, mode=opts.mode, temperature=opts.credit_temperature,
                clip_eta=opts.clip_eta, delta=opts.delta, score_map=opts.score_map,
            )
        if outcome is not None and n_tokens:
            row[0, n_tokens - 1] += opts.outcome_coef * float(outcome)
    info = {
        "acc": float("nan") if outcome is None else float(outcome),
        "prm_min": min(p) if p else float("nan"),
        "prm_mean": sum(p) / len(p) if p else float("nan"),
        "prm_last": p[-1] if p else float("nan"),
        "num_steps": float(len(p)),
        "prm_fallbacks": float(fallbacks),
    }
    return row[0].float().tolist(), info


def scalar_reward(info: dict[str, float]) -> float:
    """The scalar reported as `reward_score`: the verifiable reward, else the min step score."""
    for key in ("acc", "prm_min"):
        v = info.get(key, float("nan"))
        if not math.isnan(v):
            return float(v)
    return 0.0


def question_of(non_tensor: dict) -> str:
    """The problem text: extra_info.question (rl-prm data prep) or the last user message."""
    extra = non_tensor.get("extra_info") or {}
    if isinstance(extra, dict) and extra.get("question"):
        return str(extra["question"])
    chat = non_tensor.get("raw_prompt")
    if chat is not None:
        for msg in reversed(list(chat)):
            if isinstance(msg, dict) and msg.get("role") == "user":
                return str(msg.get("content", ""))
    raise ValueError("rprm reward manager: no question (extra_info.question or a user turn in raw_prompt)")


# ------------------------------------------------------------------------------------- judge access


class RouterStepScorer:
    """R-PRM step scoring against verl's reward-model router (vLLM replicas on the reward pool).

    Builds the rl_prm scorer (`rl_prm.score.scorer.RPRMScorer`) over `HTTPJudgeEngine` pointed at
    the router, which load-balances OpenAI `/v1/completions` requests over the judge replicas.
    """

    def __init__(self, router_address: str, tokenizer: Any, opts: RPRMRewardOptions):
        from rl_prm.score.engines import HTTPJudgeEngine
        from rl_prm.score.scorer import RPRMScorer, ScoreConfig

        url = router_address if router_address.startswith("http") else f"http://{router_address}"
        self.engine = HTTPJudgeEngine(url, tokenizer)
        fields = {f.name for f in dataclasses.fields(ScoreConfig)}
        want = {"k": opts.k, "temperature": opts.temperature, "top_p": opts.top_p,
                "max_critique_tokens": opts.max_critique_tokens, "fallback_score": opts.fallback_score}
        self.scorer = RPRMScorer(self.engine, ScoreConfig(**{k: v for k, v in want.items() if k in fields}))

    def __call__(self, question: str, steps: list[str]) -> tuple[list[Optional[float]], int]:
        return score_with(self.scorer, question, steps)


def score_with(scorer: Any, question: str, steps: list[str]) -> tuple[list[Optional[float]], int]:
    """Score one solution with an `RPRMScorer` (rl_prm.score.scorer) -> (step scores, failed critiques).

    Steps the scorer could not score (status != ok, all samples failed, too long) come back None;
    the caller substitutes the fallback score and counts them.
    """
    if not steps:
        return [], 0
    item = scorer.score([{"question": question, "steps": steps}])[0]
    if item.status != "ok" or len(item.steps) != len(steps):
        logger.warning("rprm: judge could not score a response (%s: %s)", item.status, item.error)
        return [None] * len(steps), len(steps)
    scores = [None if s is None or math.isnan(s) else float(s) for s in item.filled_step_scores()]
    return scores, sum(int(getattr(st, "n_failed", 0)) for st in item.steps)


# ------------------------------------------------------------------------------------ verl manager

try:  # verl is optional for the pure functions above
    from verl import DataProto
    from verl.experimental.reward_loop.reward_manager import register
    from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase
except ModuleNotFoundError as _e:  # pragma: no cover - no verl: only the pure helpers exist
    if (_e.name or "").split(".")[0] != "verl":
        raise
    RewardManagerBase = None  # type: ignore[assignment]

if RewardManagerBase is not None:

    @register("rprm")
    class RPRMRewardManager(RewardManagerBase):
        """verl reward manager: R-PRM step scores + verifiable reward -> token-level rm_scores row."""

        def __init__(self, config, tokenizer, compute_score, reward_router_address=None,
                     reward_model_tokenizer=None, step_scorer: Optional[StepScorer] = None):
            super().__init__(config, tokenizer, compute_score)
            self.opts = RPRMRewardOptions.from_config(config)
            self.reward_router_address = reward_router_address
            self.reward_model_tokenizer = reward_model_tokenizer
            self._step_scorer = step_scorer
            self.eos_ids = _eos_ids(tokenizer)

        @property
        def step_scorer(self) -> Optional[StepScorer]:
            if self._step_scorer is None and self.opts.prm:
                if self.reward_router_address is None or self.reward_model_tokenizer is None:
                    raise RuntimeError(
                        "rprm reward manager: no judge. Set reward.reward_model.enable=True with "
                        "reward.reward_model.model_path=<R-PRM judge> (verl serves it and passes the router "
                        "address), or +reward.rprm.prm=false for verifiable reward only."
                    )
                self._step_scorer = RouterStepScorer(self.reward_router_address, self.reward_model_tokenizer, self.opts)
            return self._step_scorer

        async def run_single(self, data: DataProto) -> dict:
            data = data[-1:]  # multi-output agent loops: reward the final output (as verl's naive)
            item = data[0]
            response_ids = item.batch["responses"]
            T = response_ids.shape[-1]
            n = int(item.batch["attention_mask"][-T:].sum())
            ids = [int(i) for i in response_ids[:n].tolist()]
            truncated = n == T and (not ids or ids[-1] not in self.eos_ids)
            nt = item.non_tensor_batch
            spans = await self.loop.run_in_executor(None, lambda: step_token_ends(ids, self.tokenizer, truncated))

            outcome = None
            gt = (nt.get("reward_model") or {}).get("ground_truth") if isinstance(nt.get("reward_model"), dict) else None
            if self.opts.verifiable and gt is not None:
                result = await self.loop.run_in_executor(
                    None, lambda: self.compute_score(data_source=nt.get("data_source"), solution_str=spans.text,
                                                     ground_truth=gt, extra_info=nt.get("extra_info") or {}))
                outcome = float(result["score"] if isinstance(result, dict) else result)

            scores: list[Optional[float]] = [None] * spans.num_steps
            failures = 0
            if self.opts.prm and spans.num_steps:
                question = question_of(nt)
                scorer = self.step_scorer
                if getattr(scorer, "thread_safe", True):
                    scores, failures = await self.loop.run_in_executor(None, lambda: scorer(question, list(spans.texts)))
                else:  # e.g. an in-process vLLM engine: only from the thread that made it (blocks the loop)
                    scores, failures = scorer(question, list(spans.texts))
            elif not self.opts.prm:
                scores = [0.5] * spans.num_steps  # neutral: no process signal
            row, info = build_row(spans, scores, outcome, n, self.opts)
            info["prm_failed_critiques"] = float(failures)
            info["outcome_missing"] = float(self.opts.verifiable and outcome is None)
            info["truncated"] = float(truncated)
            return {"reward_score": TokenReward(scalar_reward(info), row), "reward_extra_info": info}

        @classmethod
        def assemble_rm_scores(cls, data: DataProto, scores: list) -> torch.Tensor:
            """Write each response's token row (TokenReward.codes); plain floats go on the last token."""
            return assemble_rows(data, scores)


def _eos_ids(tokenizer: Any) -> set[int]:
    ids = getattr(tokenizer, "eos_token_id", None)
    if ids is None:
        return set()
    return set(ids) if isinstance(ids, (list, tuple, set)) else {int(ids)}


def assemble_rows(data: Any, scores: list) -> torch.Tensor:
    """rm_scores [B, T] from per-response rewards: TokenReward rows, or scalars at the last token."""
    prompt_length = data.batch["prompts"].size(1)
    valid = data.batch["attention_mask"][:, prompt_length:].sum(dim=1)
    rm = torch.zeros_like(data.batch["responses"], dtype=torch.float32)
    T = rm.size(1)
    for i, s in enumerate(scores):
        codes = getattr(s, "codes", None)
        if codes is None:
            if int(valid[i]) > 0:
                rm[i, int(valid[i]) - 1] = float(s)
            continue
        if len(codes) > T:
            raise ValueError(f"reward row {i} has {len(codes)} tokens for a response width of {T}")
        rm[i, : len(codes)] = torch.tensor(codes, dtype=torch.float32)
    return rm
