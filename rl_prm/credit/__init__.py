"""Credit assignment: R-PRM step scores -> token rewards -> advantages. Pure torch.

Public API
    StepBatch                             one step's rollouts at the step level (the estimators' input)
    ESTIMATORS, EstimatorOptions          rprm_rloo | rprm_grpo | outcome_grpo: fn(batch, opts) -> (adv, returns),
                                          the same functions on both backends (rl_prm.credit.estimators)
    CreditConfig                          the reward.credit recipe section
    assign_credit(step_scores, step_mask, step_ends, response_mask, *, mode, temperature=0.1,
                  clip_eta=None, delta=False, score_map="2p-1") -> token_rewards [B, T]
    MODES, SCORE_MAPS                     registries (a new mode = one decorated function)
    encode_rm_scores / decode_rm_scores   the rm_scores encoding that carries a StepBatch through verl
    rloo_process_advantage, grpo_process_advantage, grpo_step_normalize, compute_gae, masked_whiten
Step/token mapping lives in rl_prm.steps. Nothing here imports verl, ray or vllm.
"""

from rl_prm.credit.advantages import (
    compute_gae,
    grpo_process_advantage,
    grpo_step_normalize,
    masked_whiten,
    rloo_process_advantage,
)
from rl_prm.credit.batch import SCORE_GRID, StepBatch, quantize_scores
from rl_prm.credit.config import CreditConfig
from rl_prm.credit.encoding import DecodedScores, decode_rm_scores, encode_rm_scores
from rl_prm.credit.estimators import ESTIMATORS, EstimatorOptions
from rl_prm.credit.modes import MODES, SCORE_MAPS, assign_credit, clip_rewards, delta_rewards, reverse_cumsum

__all__ = [
    "ESTIMATORS",
    "MODES",
    "SCORE_GRID",
    "SCORE_MAPS",
    "CreditConfig",
    "DecodedScores",
    "EstimatorOptions",
    "StepBatch",
    "assign_credit",
    "clip_rewards",
    "compute_gae",
    "decode_rm_scores",
    "delta_rewards",
    "encode_rm_scores",
    "grpo_process_advantage",
    "grpo_step_normalize",
    "masked_whiten",
    "quantize_scores",
    "reverse_cumsum",
    "rloo_process_advantage",
]
