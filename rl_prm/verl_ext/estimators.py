"""Register rl_prm's advantage estimators with verl (`register_adv_est`).

Imported by rl_prm.verl_plugin, i.e. on `import verl` in every process (entry point group
`verl.plugins`, or VERL_USE_EXTERNAL_MODULES=rl_prm.verl_plugin). Select one with
`algorithm.adv_estimator=rprm_rloo` (or rprm_grpo) and options under `+algorithm.rprm.*`
(see rl_prm.credit.advantages.CreditOptions). The math lives in rl_prm.credit (pure torch);
these are thin wrappers with verl's estimator contract:

    fn(token_level_rewards, response_mask, index=None, config=None, **kw) -> (advantages, returns)

token_level_rewards must be rl_prm's rm_scores encoding (rl_prm.credit.encoding), which needs
`algorithm.use_kl_in_reward=False`. For PPO-GAE use verl's built-in `gae` with plain token
rewards from rl_prm.credit.assign_credit written as rm_scores (verl passes `values` only to its
own gae, so no rprm_gae is registered).
"""

from __future__ import annotations

from typing import Any

import torch
from verl.trainer.ppo.core_algos import register_adv_est

from rl_prm.credit import advantages as _adv

NAMES = ("rprm_rloo", "rprm_grpo")


@register_adv_est("rprm_rloo")
def compute_rprm_rloo_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Any = None,
    config: Any = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PURE-style RLOO with R-PRM process rewards; see rl_prm.credit.advantages.rprm_rloo.

    Args:
        token_level_rewards: `(torch.Tensor)` shape (bs, response_length), rl_prm-encoded rm_scores
        response_mask: `(torch.Tensor)` shape (bs, response_length)
        index: `(np.ndarray)` uid per row; config: algorithm config (reads config.rprm)
    Returns:
        advantages, returns: `(torch.Tensor)` shape (bs, response_length)
    """
    with torch.no_grad():
        return _adv.rprm_rloo(token_level_rewards, response_mask, index=index, config=config, **kwargs)


@register_adv_est("rprm_grpo")
def compute_rprm_grpo_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Any = None,
    config: Any = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepSeekMath process-supervised GRPO; see rl_prm.credit.advantages.rprm_grpo.

    Args / Returns: as compute_rprm_rloo_advantage.
    """
    with torch.no_grad():
        return _adv.rprm_grpo(token_level_rewards, response_mask, index=index, config=config, **kwargs)
