"""Advantage estimators for process rewards (pure torch; the verl registration is in rl_prm.verl_ext).

Two layers:
  * pure math on explicit tensors: `rloo_process_advantage`, `grpo_process_advantage`,
    `compute_gae`, `masked_whiten`;
  * verl-contract functions `fn(token_level_rewards, response_mask, index=None, config=None, **kw)
    -> (advantages, returns)` that read rl_prm's rm_scores encoding (rl_prm.credit.encoding),
    run credit assignment and call the pure math: `rprm_rloo`, `rprm_grpo` (registry ESTIMATORS).
    rl_prm.verl_ext.estimators registers them with verl under the same names.

Options of the verl-contract functions (`CreditOptions`) come, in increasing priority, from the
defaults, `config["rprm"]` (e.g. hydra `+algorithm.rprm.mode=min_form`), and a `rprm=` keyword.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Callable, Optional

import torch

from rl_prm.credit.encoding import decode_rm_scores, last_token_index
from rl_prm.credit.modes import (
    MODES,
    SCORE_MAPS,
    _check_float,
    assign_credit,
    place_at_ends,
    prepare_step_rewards,
    reverse_cumsum,
)
from rl_prm.registry import Registry

Estimator = Callable[..., tuple[torch.Tensor, torch.Tensor]]
ESTIMATORS: Registry[Estimator] = Registry("advantage estimator")


# --------------------------------------------------------------------------- helpers


def group_index(index: Any, batch_size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Map group labels (uids: numpy object array, list, or tensor) to contiguous ids [B] long.

    None -> every row its own group.
    """
    if index is None:
        return torch.arange(batch_size, device=device)
    if isinstance(index, torch.Tensor):
        t = index.reshape(-1)
        gid = torch.unique(t, return_inverse=True)[1]
    elif hasattr(index, "__array__") and hasattr(index, "dtype"):  # numpy array (numpy is present)
        import numpy as np

        arr = np.asarray(index).reshape(-1)
        if arr.dtype == object:
            arr = arr.astype(str)
        gid = torch.as_tensor(np.unique(arr, return_inverse=True)[1].reshape(-1), dtype=torch.long)
    else:  # python sequence of hashable labels
        table: dict[Any, int] = {}
        gid = torch.tensor([table.setdefault(u, len(table)) for u in index], dtype=torch.long)
    if gid.numel() != batch_size:
        raise ValueError(f"index has {gid.numel()} labels for a batch of {batch_size}")
    return gid.to(device)


def _group_sum(x: torch.Tensor, gid: torch.Tensor, G: int) -> torch.Tensor:
    return torch.zeros(G, dtype=x.dtype, device=x.device).index_add_(0, gid, x)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(values - mean) / sqrt(var + eps) with mean/unbiased var over mask (verl's masked_whiten).

    With fewer than two masked entries only the mean is removed. Shape (B, T) -> (B, T).
    """
    m = mask.to(values.dtype)
    n = m.sum()
    if n < 1:
        return values.clone()
    mean = (values * m).sum() / n
    if n < 2:
        return values - mean
    var = (((values - mean) ** 2) * m).sum() / (n - 1)
    return (values - mean) * torch.rsqrt(var + eps)


def _finish(adv: torch.Tensor, mask: torch.Tensor, separator_mask: Optional[torch.Tensor], whiten: bool) -> torch.Tensor:
    keep = mask.bool()
    if separator_mask is not None:
        if separator_mask.shape != mask.shape:
            raise ValueError(f"separator_mask must have shape {tuple(mask.shape)}, got {tuple(separator_mask.shape)}")
        keep = keep & ~separator_mask.bool()
    if whiten:
        adv = masked_whiten(adv, keep)
    return adv * keep


def _step_lengths(ends: torch.Tensor, valid: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Tokens per step: e_k - e_{k-1} (first step: e_0 - first response token + 1). [B, S]."""
    first = torch.argmax(response_mask.long(), dim=1)  # first token with mask 1 (0 for empty rows)
    prev = torch.cat([(first - 1).unsqueeze(1), ends[:, :-1]], dim=1)
    return torch.where(valid, ends - prev, torch.zeros_like(ends))


# --------------------------------------------------------------------------- pure estimators


def rloo_process_advantage(
    token_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Any,
    step_ends: torch.Tensor,
    step_mask: torch.Tensor,
    *,
    outcome: Optional[torch.Tensor] = None,
    outcome_mask: Optional[torch.Tensor] = None,
    outcome_coef: float = 1.0,
    baseline: str = "token",
    separator_mask: Optional[torch.Tensor] = None,
    whiten: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PURE's RLOO with process rewards (CJReinforce/PURE, experience_maker.process_experiences).

    With R_i = sum_t x_i,t (the response's credit-assigned process reward), L_i its length and
    the other responses j != i of the same prompt (uid):
        baseline "token": b_i,k = (sum_j R_j / sum_j L_j) * n_i,k   (n_i,k = tokens of step k:
                          e_k - e_{k-1}; PURE counts the step without its separator token)
        baseline "step":  b_i,k = mean_j (R_j / K_j)                 (K_j = steps of response j)
    and x_i,e_k <- x_i,e_k - b_i,k at each step end. The outcome (verifiable) reward o_i is
    RLOO-centred, o_i - mean_{j != i} o_j, times `outcome_coef`, and added on the last response
    token. Returns G_t = reverse cumsum; advantages = returns (PURE), optionally whitened over the
    batch (masked tokens and separator tokens excluded); separator tokens get 0 (PURE zeroes the
    returns of separator tokens). A prompt with one response gets baseline 0 (as verl's rloo).

    Args:
        token_rewards: `(torch.Tensor)` shape (B, T), credit-assigned process rewards (assign_credit)
        response_mask: `(torch.Tensor)` shape (B, T)
        index: uid per row (numpy array / list / tensor), or None (each row its own group)
        step_ends, step_mask: `(torch.Tensor)` shape (B, S), the steps (as for assign_credit)
        outcome: `(torch.Tensor | None)` shape (B,); outcome_mask: shape (B,) bool (rows without an
            outcome count as 0)
        separator_mask: `(torch.Tensor | None)` shape (B, T) bool: zero these tokens' advantages
    Returns:
        advantages, returns: `(torch.Tensor)` shape (B, T)
    """
    if baseline not in ("token", "step"):
        raise ValueError(f"baseline must be 'token' or 'step', got {baseline!r}")
    _check_float("outcome_coef", outcome_coef)
    if token_rewards.shape != response_mask.shape:
        raise ValueError(f"token_rewards {tuple(token_rewards.shape)} and response_mask {tuple(response_mask.shape)} differ")
    B, T = token_rewards.shape
    mask = response_mask.to(token_rewards.dtype)
    x = token_rewards * mask
    gid = group_index(index, B, x.device)
    G = int(gid.max().item()) + 1 if B else 0
    n = _group_sum(torch.ones(B, dtype=x.dtype, device=x.device), gid, G)[gid]
    multi = n > 1

    valid = step_mask.bool()
    ends = torch.where(valid, step_ends.long(), torch.zeros_like(step_ends.long()))
    R = x.sum(dim=1)
    if baseline == "token":
        L = mask.sum(dim=1)
        other_R = _group_sum(R, gid, G)[gid] - R
        other_L = _group_sum(L, gid, G)[gid] - L
        per_token = torch.where(multi & (other_L > 0), other_R / other_L.clamp(min=1), torch.zeros_like(R))
        b = per_token.unsqueeze(1) * _step_lengths(ends, valid, response_mask).to(x.dtype)
    else:
        K = valid.sum(dim=1).to(x.dtype)
        avg = torch.where(K > 0, R / K.clamp(min=1), torch.zeros_like(R))
        per_step = torch.where(multi, (_group_sum(avg, gid, G)[gid] - avg) / (n - 1).clamp(min=1), torch.zeros_like(R))
        b = per_step.unsqueeze(1).expand(-1, valid.shape[1])
    rewards = x.scatter_add_(1, ends, -torch.where(valid, b.to(x.dtype), torch.zeros_like(b, dtype=x.dtype)))

    if outcome is not None:
        o = outcome.to(x.dtype).reshape(-1)
        if o.shape[0] != B:
            raise ValueError(f"outcome must have shape ({B},), got {tuple(o.shape)}")
        if outcome_mask is not None:
            o = torch.where(outcome_mask.bool(), o, torch.zeros_like(o))
        loo = torch.where(multi, (_group_sum(o, gid, G)[gid] - o) / (n - 1).clamp(min=1), torch.zeros_like(o))
        nonempty = (response_mask != 0).any(dim=1)
        rows = torch.arange(B, device=x.device)
        rewards.index_put_((rows, last_token_index(response_mask)), outcome_coef * (o - loo) * nonempty, accumulate=True)

    returns = reverse_cumsum(rewards) * mask
    advantages = _finish(returns, response_mask, separator_mask, whiten)
    if separator_mask is not None:
        returns = returns * ~separator_mask.bool()
    return advantages, returns


def grpo_process_advantage(
    step_rewards: torch.Tensor,
    step_mask: torch.Tensor,
    step_ends: torch.Tensor,
    response_mask: torch.Tensor,
    index: Any,
    *,
    epsilon: float = 1e-6,
    norm_by_std: bool = True,
    separator_mask: Optional[torch.Tensor] = None,
    whiten: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GRPO with process supervision (DeepSeekMath, Shao et al. 2024, sec. 4.1.3).

    For each prompt (uid) collect every valid step reward of every response into R; normalise
    r~ = (r - mean(R)) / (std(R) + eps) (unbiased std, as verl's grpo; without /std when
    norm_by_std is False, as Dr.GRPO); the advantage of token t is the sum of r~ over the
    response's steps ending at or after t. A group with a single step uses mean 0, std 1 (verl's
    singleton rule). Returns = advantages (as verl's grpo).

    Args:
        step_rewards: `(torch.Tensor)` shape (B, S), rewards (already mapped, e.g. 2p - 1)
        step_mask, step_ends: `(torch.Tensor)` shape (B, S)
        response_mask: `(torch.Tensor)` shape (B, T)
        index: uid per row, or None
    Returns:
        advantages, returns: `(torch.Tensor)` shape (B, T)
    """
    B, T = response_mask.shape
    valid = step_mask.bool()
    r = torch.where(valid, step_rewards, torch.zeros_like(step_rewards))
    ends = torch.where(valid, step_ends.long(), torch.zeros_like(step_ends.long()))
    gid = group_index(index, B, r.device)
    G = int(gid.max().item()) + 1 if B else 0
    vf = valid.to(r.dtype)
    cnt = _group_sum(vf.sum(1), gid, G)
    s1 = _group_sum(r.sum(1), gid, G)
    mean = s1 / cnt.clamp(min=1)
    dev2 = (((r - mean[gid].unsqueeze(1)) ** 2) * vf).sum(1)
    std = torch.sqrt(_group_sum(dev2, gid, G) / (cnt - 1).clamp(min=1))
    single = cnt <= 1
    mean = torch.where(single, torch.zeros_like(mean), mean)
    std = torch.where(single, torch.ones_like(std), std)
    z = r - mean[gid].unsqueeze(1)
    if norm_by_std:
        z = z / (std[gid].unsqueeze(1) + epsilon)
    adv = reverse_cumsum(place_at_ends(z * vf, valid, ends, T)) * response_mask.to(r.dtype)
    adv = _finish(adv, response_mask, separator_mask, whiten)
    return adv, adv.clone()


def compute_gae(
    token_rewards: torch.Tensor,
    values: torch.Tensor,
    response_mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 1.0,
    *,
    whiten: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised Advantage Estimation on per-token rewards (Schulman et al. 2016), verl semantics.

    delta_t = r_t + gamma V_{t+1} - V_t; A_t = delta_t + gamma lam A_{t+1}, where t+1 is the next
    token with response_mask 1 (masked tokens are skipped, as in verl's compute_gae_advantage_return);
    returns = A + V; advantages whitened over the mask when `whiten` (verl does). This is a
    recurrence, so it loops over T (vector ops over the batch per token). In verl use the built-in
    `gae` estimator: it takes our token rewards (assign_credit output, written as rm_scores) directly.

    Args:
        token_rewards, values, response_mask: `(torch.Tensor)` shape (B, T)
    Returns:
        advantages, returns: `(torch.Tensor)` shape (B, T)
    """
    if not (token_rewards.shape == values.shape == response_mask.shape):
        raise ValueError("token_rewards, values and response_mask must have the same shape")
    with torch.no_grad():
        m = response_mask.to(token_rewards.dtype)
        B, T = token_rewards.shape
        next_v = torch.zeros(B, dtype=token_rewards.dtype, device=token_rewards.device)
        last = torch.zeros_like(next_v)
        adv = torch.empty_like(token_rewards)
        for t in range(T - 1, -1, -1):
            mt = m[:, t]
            delta = token_rewards[:, t] + gamma * next_v - values[:, t]
            new = delta + gamma * lam * last
            next_v = values[:, t] * mt + (1 - mt) * next_v
            last = new * mt + (1 - mt) * last
            adv[:, t] = last
        returns = adv + values
        if whiten:
            adv = masked_whiten(adv, response_mask.bool())
    return adv, returns


# --------------------------------------------------------------------------- verl-contract layer


@dataclasses.dataclass
class CreditOptions:
    """Options of the rprm_* estimators (config["rprm"] / `rprm=` keyword).

    mode, temperature, clip_eta, delta, score_map: as `assign_credit` (rprm_grpo ignores mode and
    temperature: it sums normalised step rewards). outcome_coef: weight of the verifiable reward
    (rprm_rloo). baseline: "token" | "step" (rprm_rloo). zero_separator / whiten: None = the
    estimator's default (rprm_rloo: True / True as PURE; rprm_grpo: False / False).
    epsilon: GRPO std epsilon. norm_by_std: None = config.norm_adv_by_std_in_grpo (default True).
    """

    mode: str = "min_form"
    temperature: float = 0.1
    clip_eta: Optional[float] = None
    delta: bool = False
    score_map: str = "2p-1"
    outcome_coef: float = 1.0
    baseline: str = "token"
    zero_separator: Optional[bool] = None
    whiten: Optional[bool] = None
    epsilon: float = 1e-6
    norm_by_std: Optional[bool] = None

    def validate(self) -> "CreditOptions":
        MODES.get(self.mode)
        SCORE_MAPS.get(self.score_map)
        _check_float("temperature", self.temperature, positive=True)
        _check_float("clip_eta", self.clip_eta)
        _check_float("outcome_coef", self.outcome_coef)
        if self.baseline not in ("token", "step"):
            raise ValueError(f"baseline must be 'token' or 'step', got {self.baseline!r}")
        return self


def _cfg_get(config: Any, key: str, default: Any = None) -> Any:
    if config is None:
        return default
    getter = getattr(config, "get", None)
    if callable(getter):
        try:
            return getter(key, default)
        except Exception:  # noqa: BLE001 - struct configs may refuse unknown keys
            return default
    return getattr(config, key, default)


def resolve_options(config: Any = None, rprm: Mapping | None = None) -> CreditOptions:
    """Defaults <- config["rprm"] <- `rprm` mapping; unknown keys raise ValueError."""
    fields = {f.name for f in dataclasses.fields(CreditOptions)}
    merged: dict[str, Any] = {}
    for src in (_cfg_get(config, "rprm"), rprm):
        if src is None:
            continue
        items = dict(src.items()) if hasattr(src, "items") else dataclasses.asdict(src)
        unknown = set(items) - fields
        if unknown:
            raise ValueError(f"unknown rprm option(s) {sorted(unknown)}; known: {sorted(fields)}")
        merged.update(items)
    opts = CreditOptions(**merged)
    if opts.norm_by_std is None:
        opts.norm_by_std = bool(_cfg_get(config, "norm_adv_by_std_in_grpo", True))
    return opts.validate()


@ESTIMATORS.register("rprm_rloo")
def rprm_rloo(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Any = None,
    config: Any = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PURE-style RLOO on rl_prm-encoded rm_scores (verl estimator contract).

    token_level_rewards must be `encode_rm_scores` output (step scores, outcome, separators).
    Steps: decode -> assign_credit(mode, T, clip, delta, score_map) -> rloo_process_advantage
    (token baseline, RLOO-centred verifiable reward x outcome_coef on the last token, zero
    separator advantages, batch whitening). Source: PURE (CJReinforce/PURE).

    Args:
        token_level_rewards, response_mask: `(torch.Tensor)` shape (B, T)
        index: uids (B,); config: verl AlgoConfig/DictConfig (reads config["rprm"]); rprm= options
    Returns:
        advantages, returns: `(torch.Tensor)` shape (B, T)
    """
    opts = resolve_options(config, kwargs.get("rprm"))
    d = decode_rm_scores(token_level_rewards, response_mask)
    x = assign_credit(
        d.step_scores, d.step_mask, d.step_ends, response_mask, mode=opts.mode, temperature=opts.temperature,
        clip_eta=opts.clip_eta, delta=opts.delta, score_map=opts.score_map,
    )
    zero_sep = True if opts.zero_separator is None else opts.zero_separator
    return rloo_process_advantage(
        x, response_mask, index, d.step_ends, d.step_mask,
        outcome=d.outcome, outcome_mask=d.outcome_mask, outcome_coef=opts.outcome_coef, baseline=opts.baseline,
        separator_mask=d.separator_mask if zero_sep else None,
        whiten=True if opts.whiten is None else opts.whiten,
    )


@ESTIMATORS.register("rprm_grpo")
def rprm_grpo(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Any = None,
    config: Any = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepSeekMath process-supervised GRPO on rl_prm-encoded rm_scores (verl estimator contract).

    Steps: decode -> r = score_map(p) (then Clip, Delta if set) -> grpo_process_advantage
    (per-uid normalisation of all step rewards, token advantage = sum of normalised rewards of
    the steps ending at or after t). The outcome code, if any, is ignored. Source: Shao et al.
    2024 (DeepSeekMath) sec. 4.1.3.

    Args / Returns: as `rprm_rloo`.
    """
    opts = resolve_options(config, kwargs.get("rprm"))
    d = decode_rm_scores(token_level_rewards, response_mask)
    r, valid, ends = prepare_step_rewards(
        d.step_scores, d.step_mask, d.step_ends, response_mask,
        clip_eta=opts.clip_eta, delta=opts.delta, score_map=opts.score_map,
    )
    return grpo_process_advantage(
        r, valid, ends, response_mask, index, epsilon=opts.epsilon, norm_by_std=bool(opts.norm_by_std),
        separator_mask=d.separator_mask if opts.zero_separator else None, whiten=bool(opts.whiten),
    )
