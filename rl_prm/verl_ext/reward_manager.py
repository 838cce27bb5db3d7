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
  4. build the response's token-level rm_scores row: its one-row `rl_prm.credit.StepBatch` (the
     batch type the local backend builds), as
       output="encoded"        `StepBatch.to_rm_scores()` (step scores at step ends, outcome on the
                               last token, separator flags) for rl_prm's estimators, which decode
                               the batch back (verl hands estimators only rm_scores, mask, uid);
       output="token_rewards"  `StepBatch.plain_rewards(...)`: credit-assigned token rewards +
                               outcome_coef x verifiable reward on the last token, for verl's `gae`.

The row travels to verl as `reward_score`: a `TokenReward`, a float (the real scalar reward, so
verl's scalar paths keep working) that carries the per-token row in `.codes`. Two verl paths use it:
  * colocated reward (`reward_model.enable_resource_pool=False`): `RewardLoopManager` calls
    `assemble_rm_scores(data, scores)`, overridden here to write the rows;
  * streaming reward (judge on its own pool, or no judge): the agent loop writes a scalar at the
    last token; `rl_prm.verl_ext.agent_loop.RPRMAgentLoopManager` (set by the verl backend through
    `+actor_rollout_ref.rollout.agent.agent_loop_manager_class`) writes the row instead.
Real values (acc, prm_min/mean/last, num_steps, ...) are logged through reward_extra_info, since
`rm_scores.sum()` is not a reward under the encoding.

Options: `reward.rprm` (`RewardManagerOptions`), written by rl_prm.backends.verl_backend from the recipe.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from dataclasses import dataclass
from typing import Any, Optional, Protocol, Sequence

import torch
from omegaconf import OmegaConf

from rl_prm.credit import CreditConfig, StepBatch
from rl_prm.metrics import no_judge_cost, response_row
from rl_prm.score.engines import HTTPJudgeEngine
from rl_prm.score.gate import GATES, gated_scores, judged_mask
from rl_prm.score.memo import JudgeMemo
from rl_prm.score.scorer import RPRMScorer, ScoreConfig
from rl_prm.score.types import ScoringOptions
from rl_prm.steps import StepSpans, step_token_ends
from rl_prm.tasks import find_task, first_wrong

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("RL_PRM_LOGGING_LEVEL", "WARNING"))

OUTPUTS = ("encoded", "token_rewards")


@dataclass
class RewardManagerOptions:
    """What the `rprm` reward manager reads from `reward.rprm`; rl_prm.backends.verl_backend writes
    it from the recipe (`from_recipe`), so its values are the recipe's and nothing is declared twice.

    prm: the recipe's reward.prm scoring knobs (rl_prm.score.types.ScoringOptions), None = no judge;
    seed: critique seed base (run.seed); timeout_s: one judge call's limit; verifiable: add the
    math-verify outcome; output: "encoded" (StepBatch rows for rl_prm's estimators) |
    "token_rewards" (plain rewards for verl's gae: credit + outcome_coef x outcome).
    """

    prm: Optional[ScoringOptions]
    seed: int
    timeout_s: float
    verifiable: bool
    output: str
    credit: CreditConfig
    outcome_coef: float
    gate: str = "none"  # reward.prm.gate (rl_prm.score.gate)

    @classmethod
    def from_recipe(cls, cfg: Any) -> "RewardManagerOptions":
        est = cfg.algorithm.estimator
        prm = None
        if cfg.reward.prm.enabled:
            p = OmegaConf.to_container(cfg.reward.prm, resolve=True)
            prm = ScoringOptions(**{f.name: p[f.name] for f in dataclasses.fields(ScoringOptions)})
        credit = CreditConfig(**OmegaConf.to_container(cfg.reward.credit, resolve=True))
        return cls(prm, int(cfg.run.seed), float(cfg.reward.prm.timeout_s), bool(cfg.reward.verifiable.enabled),
                   "token_rewards" if est == "gae" else "encoded", credit, float(cfg.reward.verifiable.coef),
                   str(cfg.reward.prm.gate) if prm is not None else "none")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config: Any) -> "RewardManagerOptions":
        """Read `config.reward.rprm` (a DictConfig/dict); a missing or unknown key raises naming it."""
        src = None
        if config is not None:
            reward = config.get("reward") if hasattr(config, "get") else getattr(config, "reward", None)
            if reward is not None:
                src = reward.get("rprm") if hasattr(reward, "get") else getattr(reward, "rprm", None)
        if src is None:
            raise ValueError("rprm reward manager: no reward.rprm options (rl_prm.backends.verl_backend writes them "
                             "from the recipe: run through `rl-prm train` / launch/grpo_rprm.sh)")
        d = {k: src[k] for k in src.keys()}
        names = [f.name for f in dataclasses.fields(cls)]
        missing, unknown = [n for n in names if n not in d], sorted(set(d) - set(names))
        if missing or unknown:
            raise ValueError(f"reward.rprm: missing {missing}, unknown {unknown}")

        def sub(schema: type, node: Any) -> Any:
            items = {k: node[k] for k in node.keys()}
            bad = set(items) - {f.name for f in dataclasses.fields(schema)}
            if bad:
                raise ValueError(f"reward.rprm: unknown {schema.__name__} key(s) {sorted(bad)}")
            return schema(**items)

        opts = cls(sub(ScoringOptions, d["prm"]) if d["prm"] is not None else None, int(d["seed"]),
                   float(d["timeout_s"]), bool(d["verifiable"]), str(d["output"]), sub(CreditConfig, d["credit"]),
                   float(d["outcome_coef"]), str(d["gate"]))
        if opts.output not in OUTPUTS:
            raise ValueError(f"reward.rprm.output must be one of {OUTPUTS}, got {opts.output!r}")
        if opts.gate not in GATES:
            raise ValueError(f"reward.rprm.gate must be one of {GATES.names()}, got {opts.gate!r}")
        return opts


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

    def __call__(self, question: str, steps: list[str]) -> tuple[list[float], dict[str, float]]:
        """One training score per step (see `score_with`) and counts logged as reward_extra_info."""
        ...


# --------------------------------------------------------------------------------- pure row logic


def build_row(
    spans: StepSpans,
    step_scores: Optional[Sequence[float]],
    outcome: Optional[float],
    n_tokens: int,
    opts: RewardManagerOptions,
) -> tuple[list[float], dict[str, float]]:
    """Token-level rm_scores row (length n_tokens) and logged scalars for one response.

    step_scores: one training score per step of `spans` (ItemScore.training_scores), or None when
    the judge is off (no step is scored). outcome: verifiable reward (None = off/unavailable).
    The row is this one response's StepBatch, encoded (or as plain rewards for gae), exactly as the
    local backend builds its batch.
    """
    if step_scores is not None and len(step_scores) != spans.num_steps:
        raise ValueError(f"{len(step_scores)} step scores for {spans.num_steps} steps")
    batch = StepBatch.from_spans([spans], [n_tokens], None if step_scores is None else [list(step_scores)],
                                 None if outcome is None or not n_tokens else [float(outcome)], [0])
    row = batch.to_rm_scores() if opts.output == "encoded" else batch.plain_rewards(opts.credit, opts.outcome_coef)
    p = [float(x) for x in (step_scores or [])]
    info = {
        "acc": float("nan") if outcome is None else float(outcome),
        "prm_min": min(p) if p else float("nan"),
        "prm_mean": sum(p) / len(p) if p else float("nan"),
        "prm_last": p[-1] if p else float("nan"),
        "num_steps": float(spans.num_steps),
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

    The rl_prm scorer (`rl_prm.score.scorer.RPRMScorer`, with the recipe's reward.prm knobs) over
    `HTTPJudgeEngine` pointed at the router, which load-balances `/v1/completions` over the replicas.
    Its calls (one per response, from concurrent threads) share one `JudgeMemo`: a judge prompt already
    judged, or being judged, for another response of this process is not judged again.
    """

    def __init__(self, router_address: str, tokenizer: Any, opts: RewardManagerOptions):
        url = router_address if router_address.startswith("http") else f"http://{router_address}"
        self.engine = HTTPJudgeEngine(url, tokenizer, timeout=opts.timeout_s)
        self.scorer = RPRMScorer(self.engine, ScoreConfig.from_options(opts.prm, seed=opts.seed), memo=JudgeMemo())

    def __call__(self, question: str, steps: list[str]) -> tuple[list[float], dict[str, float]]:
        return score_with(self.scorer, question, steps)


def score_with(scorer: Any, question: str, steps: list[str]) -> tuple[list[float], dict[str, float]]:
    """Score one solution with an `RPRMScorer` -> (one training score per step, counts).

    The same rule as the local backend (`ItemScore.training_scores`): early-rejected steps get the
    rejecting step's score, unscorable steps `fallback_score` (counted in prm_fallbacks). The counts
    include the response's judge work (`ItemScore.judge_cost`), which the verl trainer sums per step.
    """
    if not steps:
        return [], {"prm_fallbacks": 0.0, "prm_failed_critiques": 0.0, **no_judge_cost(False)}
    item = scorer.score([{"question": question, "steps": steps}])[0]
    if item.status != "ok":
        logger.warning("rprm: judge could not score a response (%s: %s)", item.status, item.error)
    scores, n_fallback = item.training_scores(len(steps), scorer.config.fallback_score)
    return scores, {"prm_fallbacks": float(n_fallback),
                    "prm_failed_critiques": float(sum(int(st.n_failed) for st in item.steps if not st.shared)),
                    **item.judge_cost()}


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
            self.opts = RewardManagerOptions.from_config(config)
            self.reward_router_address = reward_router_address
            self.reward_model_tokenizer = reward_model_tokenizer
            self._step_scorer = step_scorer
            self.eos_ids = _eos_ids(tokenizer)

        @property
        def step_scorer(self) -> Optional[StepScorer]:
            if self._step_scorer is None and self.opts.prm is not None:
                if self.reward_router_address is None or self.reward_model_tokenizer is None:
                    raise RuntimeError(
                        "rprm reward manager: no judge. Set reward.reward_model.enable=True with "
                        "reward.reward_model.model_path=<R-PRM judge> (verl serves it and passes the router "
                        "address), or reward.prm.enabled=false in the recipe for verifiable reward only."
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

            # the graded answer: the outcome reward when reward.verifiable is on; graded either way, since the
            # monitors and the task's checker compare with it (as on the local backend)
            graded = None
            gt = (nt.get("reward_model") or {}).get("ground_truth") if isinstance(nt.get("reward_model"), dict) else None
            if gt is not None:
                result = await self.loop.run_in_executor(
                    None, lambda: self.compute_score(data_source=nt.get("data_source"), solution_str=spans.text,
                                                     ground_truth=gt, extra_info=nt.get("extra_info") or {}))
                graded = float(result["score"] if isinstance(result, dict) else result)
            outcome = graded if self.opts.verifiable else None

            scores: Optional[list[float]] = None  # judge off: no step is scored (as on the local backend)
            counts: dict[str, float] = {}
            judged = True
            if self.opts.prm is not None:
                scores = []
                judged = judged_mask(self.opts.gate, [outcome], 1)[0]  # reward.prm.gate: False for a wrong answer
                counts = {"prm_fallbacks": 0.0, "prm_failed_critiques": 0.0, **no_judge_cost(not judged)}
                if not judged:
                    scores = gated_scores(spans.num_steps)
                elif spans.num_steps:
                    question = question_of(nt)
                    scorer = self.step_scorer
                    if getattr(scorer, "thread_safe", True):
                        scores, counts = await self.loop.run_in_executor(None, lambda: scorer(question, list(spans.texts)))
                    else:  # e.g. an in-process vLLM engine: only from the thread that made it (blocks the loop)
                        scores, counts = scorer(question, list(spans.texts))
            row, info = build_row(spans, scores, outcome, n, self.opts)
            info.update(counts)
            info.update(self.response_row(nt, spans, scores, judged, graded))
            info["outcome_missing"] = float(self.opts.verifiable and outcome is None)
            info["truncated"] = float(truncated)
            return {"reward_score": TokenReward(scalar_reward(info), row), "reward_extra_info": info}

        @staticmethod
        def response_row(nt: dict, spans: StepSpans, scores: Optional[list[float]], judged: bool,
                         graded: Optional[float]) -> dict[str, float]:
            """The response's metrics row (rl_prm.metrics.response_row, what the local backend logs per
            rollout); for a row of a task with a step checker (data_source a task name, extra_info.question)
            its process flags and the judge's verdicts against the checker."""
            task, extra = find_task(nt.get("data_source")), nt.get("extra_info") or {}
            question = extra.get("question") if isinstance(extra, dict) else None
            w = (first_wrong(task, str(question), spans.texts)
                 if task is not None and task.has_checker and question else None)
            return response_row(spans.text, list(spans.texts), scores, judged, graded, w)

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
