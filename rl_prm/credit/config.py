"""The credit recipe section (`reward.credit`), declared once; both backends read it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from rl_prm.credit.modes import MODES, SCORE_MAPS
from rl_prm.schema import knob


@dataclass
class CreditConfig:
    """Step scores -> token rewards (rl_prm.credit.assign_credit; docs/protocols.md)."""

    mode: str = knob("min_form", "how step rewards become a return: sum (plain reverse cumsum), min_form (PURE "
                     "softmin weighting), future_min (strict minimum of the remaining steps)",
                     choices=lambda: MODES.names())
    temperature: float = knob(0.1, "min-form softmin temperature T (PURE: 0.1)", gt=0)
    clip_eta: Optional[float] = knob(None, "Clip (Gao et al. 2024): r <- min(r - eta, 0) before the mode; null = off")
    delta: bool = knob(False, "Delta (Gao et al. 2024): r_k <- r_k - r_{k+1} (after Clip) before the mode")
    score_map: str = knob("2p-1", "step probability P(Yes) -> reward: 2p-1 (P(Yes) - P(No), PURE) or p",
                          choices=lambda: SCORE_MAPS.names())
