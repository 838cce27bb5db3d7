"""Credit assignment: step scores of the R-PRM -> token rewards (pure torch).

Vocabulary (shapes as in verl: B responses, S step slots, T response tokens)

    step_scores   float [B, S]  R-PRM P(Yes) per step, in [0, 1]
    step_mask     bool  [B, S]  True for a scored step; False slots are ignored entirely
                                (their score, end index and position play no role: a
                                not-scored step is treated as if it did not exist)
    step_ends     long  [B, S]  index of each step's last response token (valid steps: strictly
                                increasing along S and on a token where response_mask is 1)
    response_mask       [B, T]  1 for response tokens

Pipeline inside `assign_credit` (each stage a registry entry, so a new one is one function):

    p --score_map--> r --clip (opt.)--> --delta (opt.)--> --mode--> x_k (value placed at step k's
    last token) --scatter--> token_rewards [B, T]

so that the token return G_t = sum_{t' >= t} token_rewards[t'] is the mode's return:

    sum         x_k = r_k                               G_t = sum_{k: e_k >= t} r_k
    min_form    x_k = w_k r_k, w = softmax(-r / T)      PURE's min-form (T -> 0: min over all steps
                                                        for tokens before the worst step)
    future_min  x_k = m_k - m_{k+1}, m_k = min_{j>=k} r_j   G_t = min_{k: e_k >= t} r_k (strict)

Sources: PURE (Cheng et al. 2025, "Stop Summation: Min-Form Credit Assignment Is All Process
Reward Model Needs for Reasoning", github.com/CJReinforce/PURE) for r = 2p - 1, min_form and the
strict future minimum; Gao et al. 2024 (arXiv 2410.15115) for Clip and Delta.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from rl_prm.registry import Registry

ScoreMap = Callable[[torch.Tensor], torch.Tensor]
# mode(r [B, S] (0 on invalid slots), valid [B, S] bool (valid steps first, in order), *, temperature)
#   -> x [B, S]: value placed on each step's last token (0 on invalid slots)
CreditMode = Callable[..., torch.Tensor]

SCORE_MAPS: Registry[ScoreMap] = Registry("score map")
MODES: Registry[CreditMode] = Registry("credit mode")


# --------------------------------------------------------------------------- score maps


@SCORE_MAPS.register("2p-1")
def _score_2p_minus_1(p: torch.Tensor) -> torch.Tensor:
    """r = 2p - 1 = P(Yes) - P(No), in [-1, 1] (PURE's reward range)."""
    return 2.0 * p - 1.0


@SCORE_MAPS.register("p")
def _score_identity(p: torch.Tensor) -> torch.Tensor:
    """r = p, in [0, 1]."""
    return p


# --------------------------------------------------------------------------- modes


@MODES.register("sum")
def credit_sum(r: torch.Tensor, valid: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """Sum form: x_k = r_k, so G_t = sum of the rewards of the steps ending at or after t.

    Args:
        r: `(torch.Tensor)` shape (B, S), step rewards, 0 on invalid slots
        valid: `(torch.Tensor)` shape (B, S) bool, valid steps first and in order
    Returns:
        `(torch.Tensor)` shape (B, S): values placed at the step ends
    """
    return r * valid


@MODES.register("min_form")
def credit_min_form(r: torch.Tensor, valid: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """PURE min-form: x_k = w_k r_k with w = softmax(-r / T) over the trajectory's valid steps.

    As T -> 0 the weights concentrate on the worst step, so the return of every token before it
    approaches min_k r_k (PURE, sec. 3; their T = 0.1).

    Args:
        r: `(torch.Tensor)` shape (B, S), step rewards, 0 on invalid slots
        valid: `(torch.Tensor)` shape (B, S) bool
        temperature: `(float)` T > 0
    Returns:
        `(torch.Tensor)` shape (B, S)
    """
    logits = (-r / temperature).masked_fill(~valid, -math.inf)
    any_valid = valid.any(dim=1, keepdim=True)
    logits = torch.where(any_valid, logits, torch.zeros_like(logits))  # rows without steps: no NaN
    w = torch.softmax(logits, dim=1) * valid
    return w * r


@MODES.register("future_min")
def credit_future_min(r: torch.Tensor, valid: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """Strict min form: G_t = min of r_k over the valid steps ending at or after t.

    m_k = min_{j >= k} r_j (reverse cummin); x_k = m_k - m_{k+1} for all but the last valid step,
    x_last = r_last, so the reverse cumsum of x telescopes to m_k.

    Args:
        r: `(torch.Tensor)` shape (B, S), step rewards, 0 on invalid slots
        valid: `(torch.Tensor)` shape (B, S) bool, valid steps first and in order
    Returns:
        `(torch.Tensor)` shape (B, S)
    """
    big = torch.full_like(r, math.inf)
    m = torch.flip(torch.cummin(torch.flip(torch.where(valid, r, big), [1]), dim=1).values, [1])
    m_next = torch.cat([m[:, 1:], big[:, :1]], dim=1)
    valid_next = torch.cat([valid[:, 1:], torch.zeros_like(valid[:, :1])], dim=1)
    x = torch.where(valid_next, m - m_next, m)
    return torch.where(valid, x, torch.zeros_like(x))


# Modes whose return at every token up to a response's worst step is that step's reward (future_min
# exactly, min_form up to its softmin): a response whose answer is wrong may skip the judge and get the
# floor reward on every step (reward.prm.gate, docs/protocols.md). Sum-form has no such bound.
credit_min_form.bounded_by_worst_step = True  # type: ignore[attr-defined]
credit_future_min.bounded_by_worst_step = True  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- transforms


def clip_rewards(r: torch.Tensor, valid: torch.Tensor, eta: float) -> torch.Tensor:
    """Clip (Gao et al. 2024): r_k <- min(r_k - eta, 0); every step reward becomes <= 0.

    Args:
        r: `(torch.Tensor)` shape (B, S); valid: `(torch.Tensor)` shape (B, S) bool
        eta: `(float)` threshold (no default: the paper's value is not pinned here)
    Returns:
        `(torch.Tensor)` shape (B, S), 0 on invalid slots
    """
    return torch.clamp(r - eta, max=0.0) * valid


def delta_rewards(r: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Delta (Gao et al. 2024): r_k <- r_k - r_{k+1} for all but the last valid step.

    With the sum form the return from step k then telescopes to r_k.
    Requires valid steps first and in order (see `_compact`).

    Args:
        r: `(torch.Tensor)` shape (B, S); valid: `(torch.Tensor)` shape (B, S) bool
    Returns:
        `(torch.Tensor)` shape (B, S), 0 on invalid slots
    """
    r_next = torch.cat([r[:, 1:], torch.zeros_like(r[:, :1])], dim=1)
    valid_next = torch.cat([valid[:, 1:], torch.zeros_like(valid[:, :1])], dim=1)
    return torch.where(valid_next, r - r_next, r) * valid


# --------------------------------------------------------------------------- validation


def _check_float(name: str, x: float | None, *, positive: bool = False) -> None:
    if x is None:
        return
    try:
        xf = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {x!r}") from None
    if not math.isfinite(xf):
        raise ValueError(f"{name} must be finite, got {x!r}")
    if positive and xf <= 0:
        raise ValueError(f"{name} must be > 0, got {x!r}")


def check_step_inputs(
    step_scores: torch.Tensor,
    step_mask: torch.Tensor,
    step_ends: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    check_prob: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate the step tensors; return (step_mask as bool, response_mask as bool).

    Raises ValueError naming the problem: shapes that disagree, non-integer step_ends, NaN/inf or
    (check_prob) out-of-[0, 1] scores in valid steps, valid step ends out of range, on a masked
    token, or not strictly increasing.
    """
    for name, t in (("step_scores", step_scores), ("step_mask", step_mask), ("step_ends", step_ends),
                    ("response_mask", response_mask)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 2:
            raise ValueError(f"{name} must be 2-D, got shape {tuple(t.shape)}")
    if step_scores.shape != step_mask.shape or step_scores.shape != step_ends.shape:
        raise ValueError(
            "step_scores, step_mask and step_ends must have the same [B, S] shape, got "
            f"{tuple(step_scores.shape)}, {tuple(step_mask.shape)}, {tuple(step_ends.shape)}"
        )
    if response_mask.shape[0] != step_scores.shape[0]:
        raise ValueError(
            f"batch sizes disagree: step tensors have B={step_scores.shape[0]}, "
            f"response_mask has B={response_mask.shape[0]}"
        )
    if not step_scores.is_floating_point():
        raise ValueError(f"step_scores must be floating point, got {step_scores.dtype}")
    if step_ends.is_floating_point() or step_ends.dtype == torch.bool or step_ends.is_complex():
        raise ValueError(f"step_ends must be an integer tensor, got {step_ends.dtype}")
    if step_mask.is_floating_point():
        raise ValueError(f"step_mask must be bool (or integer 0/1), got {step_mask.dtype}")
    valid = step_mask.bool()
    rmask = response_mask.bool()
    T = response_mask.shape[1]

    s = step_scores[valid]
    if s.numel():
        if not torch.isfinite(s).all():
            raise ValueError("step_scores has NaN/inf in valid steps (step_mask True)")
        if check_prob and ((s < 0) | (s > 1)).any():
            raise ValueError(
                f"step_scores must be probabilities P(Yes) in [0, 1] in valid steps; got min "
                f"{s.min().item():.4g}, max {s.max().item():.4g}"
            )
    e = step_ends[valid]
    if e.numel():
        if (e < 0).any() or (e >= T).any():
            raise ValueError(f"step_ends out of range [0, {T}) for valid steps: min {e.min().item()}, max {e.max().item()}")
        safe = torch.where(valid, step_ends, torch.zeros_like(step_ends)).long()
        on_resp = torch.gather(rmask, 1, safe)
        if (valid & ~on_resp).any():
            b, k = torch.nonzero(valid & ~on_resp)[0].tolist()
            raise ValueError(
                f"step_ends outside the response mask: step {k} of row {b} ends at token "
                f"{step_ends[b, k].item()} where response_mask is 0"
            )
        # strictly increasing among valid steps (compare each valid step with the previous valid one)
        prev = torch.where(valid, step_ends.long(), torch.full_like(safe, -1))
        prev_max = torch.cummax(prev, dim=1).values
        prev_max = torch.cat([torch.full_like(prev_max[:, :1], -1), prev_max[:, :-1]], dim=1)
        if (valid & (step_ends.long() <= prev_max)).any():
            b, k = torch.nonzero(valid & (step_ends.long() <= prev_max))[0].tolist()
            raise ValueError(
                f"step_ends of valid steps must be strictly increasing: row {b}, step {k} ends at "
                f"{step_ends[b, k].item()} at or before an earlier step"
            )
    return valid, rmask


def _compact(*tensors: torch.Tensor, valid: torch.Tensor):
    """Move the valid slots of each row to the front, keeping their order (stable sort)."""
    order = torch.argsort((~valid).to(torch.int8), dim=1, stable=True)
    return [torch.gather(t, 1, order) for t in tensors] + [torch.gather(valid, 1, order)]


def prepare_step_rewards(
    step_scores: torch.Tensor,
    step_mask: torch.Tensor,
    step_ends: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    clip_eta: float | None = None,
    delta: bool = False,
    score_map: str = "2p-1",
):
    """Validate, compact valid steps to the front, map scores, apply Clip then Delta.

    Returns (r [B, S] float (0 on invalid slots), valid [B, S] bool, ends [B, S] long (0 on invalid
    slots)); valid steps of each row are first and in token order.
    """
    fmap = SCORE_MAPS.get(score_map)
    _check_float("clip_eta", clip_eta)
    valid, _ = check_step_inputs(step_scores, step_mask, step_ends, response_mask)
    scores, ends, valid = _compact(step_scores, step_ends.long(), valid=valid)
    r = torch.where(valid, fmap(torch.where(valid, scores, torch.zeros_like(scores))), torch.zeros_like(scores))
    if clip_eta is not None:
        r = clip_rewards(r, valid, float(clip_eta))
    if delta:
        r = delta_rewards(r, valid)
    ends = torch.where(valid, ends, torch.zeros_like(ends))
    return r, valid, ends


def place_at_ends(x: torch.Tensor, valid: torch.Tensor, ends: torch.Tensor, T: int) -> torch.Tensor:
    """Scatter step values x [B, S] onto their end tokens: out [B, T], 0 elsewhere."""
    out = torch.zeros(x.shape[0], T, dtype=x.dtype, device=x.device)
    return out.scatter_add_(1, ends, torch.where(valid, x, torch.zeros_like(x)))


def assign_credit(
    step_scores: torch.Tensor,
    step_mask: torch.Tensor,
    step_ends: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    mode: str,
    temperature: float = 0.1,
    clip_eta: float | None = None,
    delta: bool = False,
    score_map: str = "2p-1",
) -> torch.Tensor:
    """Turn R-PRM step scores into token rewards whose reverse cumsum is the mode's return.

    Args:
        step_scores: `(torch.Tensor)` shape (B, S) float, P(Yes) in [0, 1] (valid steps)
        step_mask: `(torch.Tensor)` shape (B, S) bool; False slots are ignored entirely (score,
            end and position): the trajectory is the sequence of its valid steps
        step_ends: `(torch.Tensor)` shape (B, S) long, last response token of each step; for valid
            steps strictly increasing, in [0, T) and on tokens with response_mask 1
        response_mask: `(torch.Tensor)` shape (B, T)
        mode: `(str)` a name in MODES: "sum", "min_form", "future_min"
        temperature: `(float)` T > 0 of "min_form" (PURE: 0.1); validated for every mode
        clip_eta: `(float | None)` if set, Clip r_k <- min(r_k - eta, 0) before the mode
        delta: `(bool)` if set, Delta r_k <- r_k - r_{k+1} (all but the last valid step) before the
            mode, after Clip
        score_map: `(str)` a name in SCORE_MAPS: "2p-1" (r = 2p - 1, PURE) or "p"

    Returns:
        token_rewards: `(torch.Tensor)` shape (B, T), dtype of step_scores; nonzero only on valid
        step ends; G_t = token_rewards[:, t:].sum(-1) is the mode's return (see module doc).

    Raises:
        ValueError naming the problem (unknown mode / score map, T <= 0, bad clip_eta, shapes,
        step ends out of range / off the response mask / not increasing, NaN or p outside [0, 1]).
    """
    fn = MODES.get(mode)
    _check_float("temperature", temperature, positive=True)
    r, valid, ends = prepare_step_rewards(
        step_scores, step_mask, step_ends, response_mask, clip_eta=clip_eta, delta=delta, score_map=score_map
    )
    x = fn(r, valid, temperature=float(temperature))
    return place_at_ends(x, valid, ends, response_mask.shape[1])


def reverse_cumsum(x: torch.Tensor) -> torch.Tensor:
    """G_t = sum_{t' >= t} x_t' along the last dim. Shape (B, T) -> (B, T)."""
    return torch.flip(torch.cumsum(torch.flip(x, [-1]), dim=-1), [-1])
