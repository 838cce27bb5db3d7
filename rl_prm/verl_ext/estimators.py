"""Register rl_prm's estimators with verl (`register_adv_est`): a decoder + the shared function.

Imported by rl_prm.verl_plugin, i.e. on `import verl` in every process. For each name in
rl_prm.credit.ESTIMATORS (ours, and those of plugins: rl_prm.registry) verl gets

    fn(token_level_rewards, response_mask, index=None, config=None, **kw) -> (advantages, returns)

which decodes rm_scores into a StepBatch (rl_prm.credit.batch) and calls the very function the
local backend calls, with `EstimatorOptions.from_dict(config.rprm)`: the `+algorithm.rprm.*`
overrides that rl_prm.backends.verl_backend derives from the recipe.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from verl.trainer.ppo.core_algos import register_adv_est

from rl_prm.credit import ESTIMATORS, EstimatorOptions, StepBatch

ADAPTERS: dict[str, Callable] = {}  # name -> the function registered with verl


def options_from_config(config: Any) -> EstimatorOptions:
    rprm = config.get("rprm") if hasattr(config, "get") else getattr(config, "rprm", None)
    if rprm is None:
        raise ValueError("rl_prm estimators need algorithm.rprm (set by rl_prm.backends.verl_backend from the recipe)")
    return EstimatorOptions.from_dict(rprm)


def _adapter(name: str) -> Callable:
    fn = ESTIMATORS.get(name)

    def compute(token_level_rewards: torch.Tensor, response_mask: torch.Tensor, index: Any = None,
                config: Any = None, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """rl_prm estimator `name` on rl_prm-encoded rm_scores. Shapes (bs, response_length)."""
        opts = options_from_config(config)
        with torch.no_grad():
            batch = StepBatch.from_rm_scores(token_level_rewards, response_mask, index, has_outcome=opts.verifiable)
            adv, ret = fn(batch, opts)
        return adv.to(token_level_rewards.dtype), ret.to(token_level_rewards.dtype)

    compute.__name__ = f"compute_{name}_advantage"
    compute.__qualname__ = compute.__name__
    return compute


def register_all() -> dict[str, Callable]:
    """Register with verl every ESTIMATORS name it does not have from us yet (ESTIMATORS.names() imports
    the plugins first); returns ADAPTERS. Called on import; again after registering an estimator later."""
    for name in ESTIMATORS.names():
        if name not in ADAPTERS:
            ADAPTERS[name] = register_adv_est(name)(_adapter(name))
    return ADAPTERS


register_all()
