"""Advantage math for process rewards on explicit tensors (pure torch).

    rloo_process_advantage   PURE's RLOO with the token baseline (+ RLOO-centred outcome)
    grpo_step_normalize      DeepSeekMath's per-group normalisation of step rewards
    grpo_process_advantage   process GRPO: normalised step rewards summed over the remaining steps
    compute_gae, masked_whiten

The registered estimators that both backends call (`rprm_rloo`, `rprm_grpo`, `outcome_grpo`) are
in rl_prm.credit.estimators; they read a StepBatch and call these functions.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from rl_prm.credit.encoding import last_token_index
from rl_prm.credit.modes import _check_float, place_at_ends, reverse_cumsum


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
    elif hasattr(index, "__array__") and hasattr(index, "dtype"):  # numpy array
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


def grpo_step_normalize(
    step_rewards: torch.Tensor,
    step_mask: torch.Tensor,
    index: Any,
    *,
    epsilon: float = 1e-6,
    norm_by_std: bool = True,
) -> torch.Tensor:
    """DeepSeekMath's normalisation: r~ = (r - mean(R)) / (std(R) + eps) over every valid step R of a group.

    Unbiased std, as verl's grpo; without /std when norm_by_std is False (Dr.GRPO). A group with a
    single step uses mean 0, std 1 (verl's singleton rule).

    Args:
        step_rewards: `(torch.Tensor)` shape (B, S); step_mask: `(torch.Tensor)` shape (B, S) bool
        index: group label per row, or None
    Returns:
        `(torch.Tensor)` shape (B, S), 0 on invalid slots
    """
    B = step_rewards.shape[0]
    valid = step_mask.bool()
    r = torch.where(valid, step_rewards, torch.zeros_like(step_rewards))
    gid = group_index(index, B, r.device)
    G = int(gid.max().item()) + 1 if B else 0
    vf = valid.to(r.dtype)
    cnt = _group_sum(vf.sum(1), gid, G)
    mean = _group_sum(r.sum(1), gid, G) / cnt.clamp(min=1)
    dev2 = (((r - mean[gid].unsqueeze(1)) ** 2) * vf).sum(1)
    std = torch.sqrt(_group_sum(dev2, gid, G) / (cnt - 1).clamp(min=1))
    single = cnt <= 1
    mean = torch.where(single, torch.zeros_like(mean), mean)
    std = torch.where(single, torch.ones_like(std), std)
    z = r - mean[gid].unsqueeze(1)
    if norm_by_std:
        z = z / (std[gid].unsqueeze(1) + epsilon)
    return z * vf


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

    `grpo_step_normalize` per prompt (uid); the advantage of token t is the sum of the normalised
    rewards of the response's steps ending at or after t. Returns = advantages (as verl's grpo).

    Args:
        step_rewards: `(torch.Tensor)` shape (B, S), rewards (already mapped, e.g. 2p - 1)
        step_mask, step_ends: `(torch.Tensor)` shape (B, S)
        response_mask: `(torch.Tensor)` shape (B, T)
        index: uid per row, or None
    Returns:
        advantages, returns: `(torch.Tensor)` shape (B, T)
    """
    T = response_mask.shape[1]
    valid = step_mask.bool()
    ends = torch.where(valid, step_ends.long(), torch.zeros_like(step_ends.long()))
    z = grpo_step_normalize(step_rewards, step_mask, index, epsilon=epsilon, norm_by_std=norm_by_std)
    adv = reverse_cumsum(place_at_ends(z, valid, ends, T)) * response_mask.to(z.dtype)
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
