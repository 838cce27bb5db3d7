"""Credit assignment (issue #3): R-PRM step scores -> token rewards -> advantages. Pure torch.

Public API
    assign_credit(step_scores, step_mask, step_ends, response_mask, *, mode, temperature=0.1,
                  clip_eta=None, delta=False, score_map="2p-1") -> token_rewards [B, T]
    MODES, SCORE_MAPS                     registries (a new mode = one decorated function)
    encode_rm_scores / decode_rm_scores   the rm_scores encoding verl's v1 trainer carries
    encode_step_scores / decode_step_scores
    rloo_process_advantage, grpo_process_advantage, compute_gae, masked_whiten
    rprm_rloo, rprm_grpo, ESTIMATORS      verl-contract estimators (registered with verl by
                                          rl_prm.verl_ext.estimators)
Step/token mapping lives in rl_prm.steps (step_token_ends, batch_step_token_ends,
separator_token_mask). Nothing here imports verl, ray or vllm.
"""

from rl_prm.credit.advantages import (
    ESTIMATORS,
    CreditOptions,
    compute_gae,
    grpo_process_advantage,
    masked_whiten,
    resolve_options,
    rloo_process_advantage,
    rprm_grpo,
    rprm_rloo,
)
from rl_prm.credit.encoding import (
    DecodedScores,
    decode_rm_scores,
    decode_step_scores,
    encode_rm_scores,
    encode_step_scores,
)
from rl_prm.credit.modes import MODES, SCORE_MAPS, assign_credit, clip_rewards, delta_rewards, reverse_cumsum

__all__ = [
    "ESTIMATORS",
    "MODES",
    "SCORE_MAPS",
    "CreditOptions",
    "DecodedScores",
    "assign_credit",
    "clip_rewards",
    "compute_gae",
    "decode_rm_scores",
    "decode_step_scores",
    "delta_rewards",
    "encode_rm_scores",
    "encode_step_scores",
    "grpo_process_advantage",
    "masked_whiten",
    "resolve_options",
    "reverse_cumsum",
    "rloo_process_advantage",
    "rprm_grpo",
    "rprm_rloo",
]
