"""A StepBatch packed into verl's token-level `rm_scores` (one float per token), and back.

verl hands an advantage estimator only `token_level_rewards` (= our rm_scores), the response mask
and the uids, so step scores, step ends, separator flags and the outcome travel inside rm_scores.
Our reward manager writes `encode_rm_scores(...)` rows; rl_prm.credit.batch.StepBatch.from_rm_scores
decodes them.

Encoding of a token:

    code = 0                 no event on this token
    code = 2 + f + 2 m       an event token, where
        f = p in [0, 1]      the score P(Yes) of the step that ends on this token, or
        f = 1.5              no step ends here (a separator token or the outcome token only)
        m = s + 2 k          s = 1 if the token is a step-separator token, else 0;
                             k = 0 if no outcome sits here, else k = 1 + j, where the response's
                             outcome (verifiable) reward is o = OUTCOME_MIN + j * OUTCOME_STEP

So a plain step end is 2 + p in [2, 3] (a score of exactly 0 is 2.0, never "no event"); a separator
token without a step end is 3.5; the outcome sits on the last response token. Decoding:
m = floor((code - 2 + 0.25) / 2), f = code - 2 - 2 m.

Precision: codes are below 2 + 1.5 + 2 * (1 + 2 * OUTCOME_LEVELS) = 137.5 < 256, where float32 has a
resolution of 2**-16; StepBatch rounds step scores to that grid (SCORE_GRID), so every code is
exact in float32 and decoding returns the very scores the batch was built with. Outcome rewards
must lie on the grid {-4, -3.75, ..., 4} (binary/ternary verifiable rewards do); `encode_rm_scores`
raises otherwise.

Consequences for verl (the verl backend sets them):
  * `algorithm.use_kl_in_reward` must be False (use the actor KL loss): the in-reward KL penalty
    is added to rm_scores and breaks the code; decoding then raises.
  * `rm_scores.sum(-1)` (verl's logged "reward") is not a reward under this encoding: real scalars
    are logged through reward_extra_info.
  * verl's built-in per-token estimators (`gae`) need plain token rewards: for them the reward
    manager writes StepBatch.plain_rewards(...) instead.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from rl_prm.credit.modes import check_step_inputs

EVENT_BASE = 2.0
NO_STEP = 1.5
STRIDE = 2.0
OUTCOME_MIN = -4.0
OUTCOME_STEP = 0.25
OUTCOME_LEVELS = 33  # -4.0 .. 4.0
_TOL = 1e-3  # decode tolerance on the fractional part (codes are far coarser than this)


class DecodedScores(NamedTuple):
    """What `decode_rm_scores` recovers (S = most steps of a row in the batch).

    step_scores [B, S] float, step_mask [B, S] bool, step_ends [B, S] long (0 where masked),
    outcome [B] float (0 where absent), outcome_mask [B] bool, separator_mask [B, T] bool.
    """

    step_scores: torch.Tensor
    step_mask: torch.Tensor
    step_ends: torch.Tensor
    outcome: torch.Tensor
    outcome_mask: torch.Tensor
    separator_mask: torch.Tensor


def last_token_index(response_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last token with response_mask 1 per row ([B, T] -> [B]; 0 for empty rows)."""
    B, T = response_mask.shape
    if T == 0:
        return torch.zeros(B, dtype=torch.long, device=response_mask.device)
    rev = torch.argmax(torch.flip(response_mask != 0, [1]).to(torch.uint8), dim=1)
    return (T - 1 - rev).long()


def encode_rm_scores(
    step_scores: torch.Tensor,
    step_mask: torch.Tensor,
    step_ends: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    outcome: torch.Tensor | None = None,
    separator_mask: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Pack step scores (and optionally outcome rewards and separator flags) into rm_scores.

    Args:
        step_scores: `(torch.Tensor)` shape (B, S), P(Yes) in [0, 1] for valid steps
        step_mask: `(torch.Tensor)` shape (B, S) bool
        step_ends: `(torch.Tensor)` shape (B, S) long, last token of each valid step
        response_mask: `(torch.Tensor)` shape (B, T)
        outcome: `(torch.Tensor | None)` shape (B,), verifiable reward per response on the grid
            OUTCOME_MIN + j * OUTCOME_STEP; NaN = no outcome for that row. Placed on the last
            response token.
        separator_mask: `(torch.Tensor | None)` shape (B, T) bool, step-separator tokens
    Returns:
        rm_scores: `(torch.Tensor)` shape (B, T), 0 off events and off the response mask
    """
    valid, _ = check_step_inputs(step_scores, step_mask, step_ends, response_mask)
    B, T = response_mask.shape
    dev = step_scores.device
    # work on the (sparse) event tokens only: flat index b * T + t
    sb, sk = torch.nonzero(valid, as_tuple=True)
    flat = [sb * T + step_ends[sb, sk].long()]
    add = [step_scores[sb, sk].double() - NO_STEP]  # f = NO_STEP + add
    if separator_mask is not None:
        if separator_mask.shape != (B, T):
            raise ValueError(f"separator_mask must have shape {(B, T)}, got {tuple(separator_mask.shape)}")
        pb, pt = torch.nonzero(separator_mask.bool() & (response_mask != 0), as_tuple=True)
        flat.append(pb * T + pt)
        add.append(torch.full((pb.numel(),), STRIDE * 1.0, dtype=torch.float64, device=dev))
    if outcome is not None:
        outcome = torch.as_tensor(outcome, device=dev).double().reshape(-1)
        if outcome.shape[0] != B:
            raise ValueError(f"outcome must have shape ({B},), got {tuple(outcome.shape)}")
        has = ~torch.isnan(outcome)
        if (has & ~(response_mask != 0).any(dim=1)).any():
            raise ValueError("outcome given for a response with an empty response_mask")
        o = torch.where(has, outcome, torch.zeros_like(outcome))
        j = torch.round((o - OUTCOME_MIN) / OUTCOME_STEP)
        bad = has & (torch.isinf(o) | (j < 0) | (j >= OUTCOME_LEVELS) | ((OUTCOME_MIN + j * OUTCOME_STEP - o).abs() > 1e-6))
        if bad.any():
            raise ValueError(
                f"outcome reward {outcome[bad][0].item()!r} is not on the encoding grid "
                f"{OUTCOME_MIN} + j*{OUTCOME_STEP}, j in [0, {OUTCOME_LEVELS}) (i.e. multiples of "
                f"{OUTCOME_STEP} in [{OUTCOME_MIN}, {-OUTCOME_MIN}])"
            )
        ob = torch.nonzero(has, as_tuple=True)[0]
        flat.append(ob * T + last_token_index(response_mask)[ob])
        add.append(STRIDE * 2.0 * (j[ob] + 1))  # m += 2k, k = j + 1
    # sum the parts of each event token in float64 (sparse), write each code once
    ev, inv = torch.unique(torch.cat(flat), return_inverse=True)
    val = torch.zeros(ev.numel(), dtype=torch.float64, device=dev).index_add_(0, inv, torch.cat(add))
    code = torch.zeros(B * T, dtype=dtype, device=dev)
    code[ev] = (EVENT_BASE + NO_STEP + val).to(dtype)
    return code.view(B, T)


def decode_rm_scores(rm_scores: torch.Tensor, response_mask: torch.Tensor) -> DecodedScores:
    """Unpack `encode_rm_scores` output (vectorised over the nonzero codes).

    Args:
        rm_scores: `(torch.Tensor)` shape (B, T)
        response_mask: `(torch.Tensor)` shape (B, T)
    Returns:
        DecodedScores (see its doc); steps in token order, valid steps first.
    Raises:
        ValueError if rm_scores is not in this encoding (e.g. nonzero values below 2, as left by
        an in-reward KL penalty or a plain-reward reward manager), has codes off the response
        mask, or more than one outcome per row.
    """
    if rm_scores.dim() != 2 or rm_scores.shape != response_mask.shape:
        raise ValueError(
            f"rm_scores and response_mask must have the same [B, T] shape, got "
            f"{tuple(rm_scores.shape)} and {tuple(response_mask.shape)}"
        )
    B, T = rm_scores.shape
    dev = rm_scores.device
    bi, ti = torch.nonzero(rm_scores, as_tuple=True)  # row-major: sorted by row, then token
    c = rm_scores[bi, ti].double()
    if not torch.isfinite(c).all():
        raise ValueError("rm_scores has NaN/inf values")
    if not (response_mask[bi, ti] != 0).all():
        raise ValueError("rm_scores has nonzero codes off the response mask")
    bad_low = c < EVENT_BASE - _TOL
    if bad_low.any():
        i = int(torch.nonzero(bad_low)[0])
        raise ValueError(
            f"rm_scores is not in rl_prm's step encoding: value {c[i].item():.6g} at "
            f"[{bi[i].item()}, {ti[i].item()}] (codes are 0 or >= 2). Is algorithm.use_kl_in_reward "
            "on, or does the reward manager write plain rewards? rprm_* estimators need "
            "rl_prm.credit.encode_rm_scores output."
        )
    m = torch.floor((c - EVENT_BASE + 0.25) / STRIDE)
    f = c - EVENT_BASE - STRIDE * m
    is_step = f <= 1.0 + _TOL
    no_step = (f - NO_STEP).abs() <= _TOL
    if (~is_step & ~no_step).any():
        i = int(torch.nonzero(~is_step & ~no_step)[0])
        raise ValueError(f"rm_scores has an invalid code {c[i].item():.6g} at [{bi[i].item()}, {ti[i].item()}]")
    m = m.long()
    k = m // 2
    if (k > OUTCOME_LEVELS).any():
        raise ValueError("rm_scores has an outcome code beyond the encoding grid")
    separator_mask = torch.zeros(B, T, dtype=torch.bool, device=dev)
    sep = m % 2 == 1
    separator_mask[bi[sep], ti[sep]] = True

    has_out = k > 0
    n_out = torch.bincount(bi[has_out], minlength=B)
    if (n_out > 1).any():
        raise ValueError("rm_scores has more than one outcome code in a row")
    outcome = torch.zeros(B, dtype=torch.float64, device=dev)
    outcome[bi[has_out]] = OUTCOME_MIN + (k[has_out] - 1).double() * OUTCOME_STEP
    outcome_mask = n_out == 1

    sb, st, sf = bi[is_step], ti[is_step], f[is_step].clamp(0.0, 1.0)
    counts = torch.bincount(sb, minlength=B)
    S = int(counts.max().item()) if B else 0
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(sb.numel(), device=dev) - starts[sb]
    out_dtype = rm_scores.dtype if rm_scores.is_floating_point() else torch.float32
    step_scores = torch.zeros(B, S, dtype=out_dtype, device=dev)
    step_ends = torch.zeros(B, S, dtype=torch.long, device=dev)
    step_mask = torch.zeros(B, S, dtype=torch.bool, device=dev)
    step_scores[sb, rank] = sf.to(out_dtype)
    step_ends[sb, rank] = st
    step_mask[sb, rank] = True
    return DecodedScores(step_scores, step_mask, step_ends, outcome.to(out_dtype), outcome_mask, separator_mask)
