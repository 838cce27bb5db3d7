"""The advantage estimators, one registry for both backends: `fn(batch, opts) -> (advantages, returns)`.

    batch = StepBatch.from_spans(...)              # local backend, once per step
    batch = StepBatch.from_rm_scores(rm, mask, uid) # verl (rl_prm.verl_ext.estimators decodes, then calls)
    adv, ret = ESTIMATORS.get("rprm_rloo")(batch, EstimatorOptions.from_recipe(cfg))

    rprm_rloo     PURE's RLOO (CJReinforce/PURE): credit-assigned process rewards with the leave-one-out
                  token baseline, plus the RLOO-centred verifiable reward x outcome_coef on the last token.
                  With reward.prm.enabled=false it is RLOO on the verifiable reward alone: the VR-only
                  baseline of our recipes (PURE-VR).
    rprm_grpo     process-supervised GRPO (DeepSeekMath sec. 4.1.3): every step reward of a group
                  normalised by the group's mean/std, then the credit mode turns the normalised rewards
                  into returns (mode=sum is DeepSeekMath exactly), plus coef x outcome GRPO.
    outcome_grpo  GRPO on the verifiable reward only (verl's grpo), x outcome_coef; no step scores.

Every estimator honours every option: zero_separator_adv zeroes the advantages of step-separator
tokens, whiten whitens the advantages over the batch (masked and separator tokens excluded).
Options come from the recipe (`EstimatorOptions.from_recipe`) on the local backend and from the
`+algorithm.rprm.*` overrides the verl backend derives from the same recipe (`from_dict`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from omegaconf import OmegaConf

from rl_prm.credit.advantages import (
    _finish,
    grpo_process_advantage,
    grpo_step_normalize,
    rloo_process_advantage,
)
from rl_prm.credit.batch import StepBatch
from rl_prm.credit.config import CreditConfig
from rl_prm.credit.encoding import last_token_index
from rl_prm.credit.modes import MODES, place_at_ends, prepare_step_rewards, reverse_cumsum
from rl_prm.registry import Registry

Estimator = Callable[[StepBatch, "EstimatorOptions"], "tuple[torch.Tensor, torch.Tensor]"]
ESTIMATORS: Registry[Estimator] = Registry("advantage estimator", plugins=True)  # plugins may add theirs


@dataclass
class EstimatorOptions:
    """What an estimator reads, assembled from recipe sections (no defaults of its own)."""

    credit: CreditConfig  # reward.credit
    whiten: bool  # algorithm.whiten
    zero_separator_adv: bool  # algorithm.zero_separator_adv
    verifiable: bool  # reward.verifiable.enabled
    outcome_coef: float  # reward.verifiable.coef

    @classmethod
    def from_recipe(cls, cfg: Any) -> "EstimatorOptions":
        credit = CreditConfig(**OmegaConf.to_container(cfg.reward.credit, resolve=True))  # type: ignore[arg-type]
        return cls(credit, bool(cfg.algorithm.whiten), bool(cfg.algorithm.zero_separator_adv),
                   bool(cfg.reward.verifiable.enabled), float(cfg.reward.verifiable.coef))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> "EstimatorOptions":
        """Inverse of to_dict (verl: `config.rprm`); a missing or unknown key raises ValueError naming it."""
        d = dict(d.items())
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in d]
        unknown = sorted(set(d) - set(names))
        if missing or unknown:
            raise ValueError(f"estimator options: missing {missing}, unknown {unknown} (the verl backend writes "
                             "+algorithm.rprm.* from the recipe; see rl_prm.backends.verl_backend)")
        credit = dict(d["credit"].items())
        known = {f.name for f in dataclasses.fields(CreditConfig)}
        if set(credit) - known:
            raise ValueError(f"estimator options: unknown credit key(s) {sorted(set(credit) - known)}")
        return cls(CreditConfig(**credit), bool(d["whiten"]), bool(d["zero_separator_adv"]), bool(d["verifiable"]),
                   float(d["outcome_coef"]))


def _separators(batch: StepBatch, opts: EstimatorOptions):
    return batch.separator_mask if opts.zero_separator_adv else None


def _outcome_advantage(batch: StepBatch) -> torch.Tensor:
    """GRPO of the outcome (one 'step' per response at its last token), unwhitened. [B, T]."""
    o = torch.where(batch.outcome_mask, batch.outcome, torch.zeros_like(batch.outcome))
    ends = last_token_index(batch.response_mask).reshape(-1, 1)
    valid = batch.outcome_mask.reshape(-1, 1) & batch.response_mask.bool().any(dim=1, keepdim=True)
    adv, _ = grpo_process_advantage(o.reshape(-1, 1), valid, ends, batch.response_mask, batch.index)
    return adv


@ESTIMATORS.register("rprm_rloo")
def rprm_rloo(batch: StepBatch, opts: EstimatorOptions) -> tuple[torch.Tensor, torch.Tensor]:
    """PURE's RLOO with process rewards (+ the verifiable reward). Shapes: (B, T) each."""
    x = batch.token_rewards(opts.credit)
    return rloo_process_advantage(
        x, batch.response_mask, batch.index, batch.step_ends, batch.step_mask,
        outcome=batch.outcome, outcome_mask=batch.outcome_mask, outcome_coef=opts.outcome_coef,
        separator_mask=_separators(batch, opts), whiten=opts.whiten,
    )


@ESTIMATORS.register("rprm_grpo")
def rprm_grpo(batch: StepBatch, opts: EstimatorOptions) -> tuple[torch.Tensor, torch.Tensor]:
    """Process GRPO: group-normalised step rewards -> credit mode -> returns (+ coef x outcome GRPO)."""
    c = opts.credit
    adv = torch.zeros(batch.B, batch.T)
    if batch.step_mask.any():
        r, valid, ends = prepare_step_rewards(batch.step_scores, batch.step_mask, batch.step_ends, batch.response_mask,
                                              clip_eta=c.clip_eta, delta=c.delta, score_map=c.score_map)
        z = grpo_step_normalize(r, valid, batch.index)
        x = MODES.get(c.mode)(z, valid, temperature=float(c.temperature))
        adv = reverse_cumsum(place_at_ends(x, valid, ends, batch.T)) * batch.response_mask
    if batch.outcome is not None:
        adv = adv + opts.outcome_coef * _outcome_advantage(batch)
    adv = _finish(adv, batch.response_mask, _separators(batch, opts), opts.whiten)
    return adv, adv.clone()


@ESTIMATORS.register("outcome_grpo")
def outcome_grpo(batch: StepBatch, opts: EstimatorOptions) -> tuple[torch.Tensor, torch.Tensor]:
    """GRPO on the verifiable reward alone (verl's grpo), x outcome_coef."""
    if batch.outcome is None:
        raise ValueError("algorithm.estimator=outcome_grpo needs reward.verifiable.enabled=true")
    adv = _finish(opts.outcome_coef * _outcome_advantage(batch), batch.response_mask, _separators(batch, opts),
                  opts.whiten)
    return adv, adv.clone()
