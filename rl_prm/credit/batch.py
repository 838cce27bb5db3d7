"""`StepBatch`: one training step's rollouts at the step level, the one input of every estimator.

The local backend builds it from its rollouts (`StepBatch.from_spans`); on verl our reward manager
encodes each response's row into `rm_scores` (`to_rm_scores`) and our estimator decodes the batch
back (`StepBatch.from_rm_scores`). Both then call the same `rl_prm.credit.estimators` function.

Shapes: B responses, T response tokens, S step slots.

    step_scores    float32 [B, S]  P(Yes) of each scored step, on the SCORE_GRID (0 elsewhere)
    step_mask      bool    [B, S]  True for a scored step (valid steps first, in token order)
    step_ends      long    [B, S]  index of each step's last response token (0 where masked)
    response_mask  float32 [B, T]  1 for response tokens
    separator_mask bool    [B, T]  step-separator tokens ("\\n\\n")
    outcome        float32 [B] | None   verifiable reward (None: the verifiable reward is off)
    outcome_mask   bool    [B] | None   rows that have an outcome
    index          long    [B]     group (prompt) id of each response

Unscored steps, one policy on both backends (rl_prm.score.types.ItemScore.training_scores): every
step of a response gets a score when the judge is on; a step skipped by early rejection gets the
rejecting step's score, a step the judge could not score (prompt too long, engine error, no
verdict in any critique) gets `reward.prm.fallback_score` and is counted (prm/steps_fallback).

Step scores are rounded to multiples of SCORE_GRID = 2**-16 when the batch is built, on both
backends, so the float32 `rm_scores` encoding carries them exactly (rl_prm.credit.encoding) and
the two backends compute bit-identical advantages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch

from rl_prm.credit.advantages import group_index
from rl_prm.credit.encoding import DecodedScores, decode_rm_scores, encode_rm_scores, last_token_index
from rl_prm.credit.modes import assign_credit, check_step_inputs

SCORE_GRID = 2.0**-16


def quantize_scores(p: torch.Tensor) -> torch.Tensor:
    """P(Yes) rounded to the nearest multiple of SCORE_GRID (exact in the float32 encoding)."""
    return torch.round(p.double() / SCORE_GRID) * SCORE_GRID


@dataclass
class StepBatch:
    step_scores: torch.Tensor
    step_mask: torch.Tensor
    step_ends: torch.Tensor
    response_mask: torch.Tensor
    separator_mask: torch.Tensor
    outcome: Optional[torch.Tensor]
    outcome_mask: Optional[torch.Tensor]
    index: torch.Tensor

    @property
    def B(self) -> int:
        return self.response_mask.shape[0]

    @property
    def T(self) -> int:
        return self.response_mask.shape[1]

    # ------------------------------------------------------------------------ construction

    @classmethod
    def from_spans(cls, spans: Sequence[Any], lengths: Sequence[int], scores: Optional[Sequence[Sequence[float]]],
                   outcome: Optional[Sequence[float]], group: Sequence[Any], T: Optional[int] = None) -> "StepBatch":
        """Build from per-response `rl_prm.steps.StepSpans`.

        lengths: response tokens per row; scores: one P(Yes) per step of each row (None = the
        judge is off: no step is scored); outcome: one verifiable reward per row (None = off);
        group: group label per row (prompt index / uid); T: padded width (default max length).
        """
        B = len(spans)
        if not (len(lengths) == len(group) == B) or (scores is not None and len(scores) != B) \
                or (outcome is not None and len(outcome) != B):
            raise ValueError(f"StepBatch.from_spans: {B} spans, {len(lengths)} lengths, {len(group)} group ids, "
                             f"{None if scores is None else len(scores)} score rows, "
                             f"{None if outcome is None else len(outcome)} outcomes")
        T = max([int(n) for n in lengths] + [1]) if T is None else int(T)
        S = max([sp.num_steps for sp in spans] + [0]) if scores is not None else 0
        pos = torch.arange(T)
        response_mask = (pos.unsqueeze(0) < torch.tensor([int(n) for n in lengths]).unsqueeze(1)).float()
        n_steps = torch.tensor([sp.num_steps if scores is not None else 0 for sp in spans], dtype=torch.long)
        step_mask = torch.arange(S).unsqueeze(0) < n_steps.unsqueeze(1)
        step_ends = torch.zeros(B, S, dtype=torch.long)
        step_scores = torch.zeros(B, S, dtype=torch.float64)
        if S:
            step_ends[step_mask] = torch.tensor([e for sp in spans for e in sp.ends], dtype=torch.long)
            for b, (sp, row) in enumerate(zip(spans, scores)):  # type: ignore[arg-type]
                if len(row) != sp.num_steps:
                    raise ValueError(f"row {b}: {len(row)} step scores for {sp.num_steps} steps")
            flat = [float(s) for row in scores for s in row]  # type: ignore[union-attr]
            step_scores[step_mask] = torch.tensor(flat, dtype=torch.float64)
        sep = torch.zeros(B, T, dtype=torch.bool)
        flags = [sp.separator_mask()[: min(T, int(n))] for sp, n in zip(spans, lengths)]
        rows = torch.tensor([b for b, f in enumerate(flags) for _ in f], dtype=torch.long)
        cols = torch.tensor([t for f in flags for t in range(len(f))], dtype=torch.long)
        if rows.numel():
            sep[rows, cols] = torch.tensor([x for f in flags for x in f], dtype=torch.bool)
        out = out_mask = None
        if outcome is not None:
            out = torch.tensor([float(o) for o in outcome], dtype=torch.float32)
            out_mask = response_mask.bool().any(dim=1)
        batch = cls(quantize_scores(step_scores).float(), step_mask, step_ends, response_mask, sep, out, out_mask,
                    _group_ids(group))
        batch.check()
        return batch

    @classmethod
    def from_rm_scores(cls, rm_scores: torch.Tensor, response_mask: torch.Tensor, index: Any = None,
                       has_outcome: Optional[bool] = None) -> "StepBatch":
        """Decode verl's rm_scores (our encoding). has_outcome None: present iff any row has one."""
        d: DecodedScores = decode_rm_scores(rm_scores, response_mask)
        if has_outcome is None:
            has_outcome = bool(d.outcome_mask.any())
        gid = _group_ids(index) if index is not None else torch.arange(rm_scores.shape[0])
        return cls(d.step_scores.float(), d.step_mask, d.step_ends, response_mask.float(), d.separator_mask,
                   d.outcome.float() if has_outcome else None, d.outcome_mask if has_outcome else None, gid)

    def check(self) -> None:
        check_step_inputs(self.step_scores, self.step_mask, self.step_ends, self.response_mask)

    # ------------------------------------------------------------------------ views

    def to_rm_scores(self) -> torch.Tensor:
        """float32 [B, T] rm_scores in rl_prm's encoding (step scores, separators, outcome)."""
        out = None
        if self.outcome is not None:
            out = torch.where(self.outcome_mask, self.outcome.double(), torch.full_like(self.outcome.double(), float("nan")))
        return encode_rm_scores(self.step_scores, self.step_mask, self.step_ends, self.response_mask,
                                outcome=out, separator_mask=self.separator_mask)

    def token_rewards(self, credit: Any) -> torch.Tensor:
        """[B, T] credit-assigned process rewards (`assign_credit` with a CreditConfig); 0 without steps."""
        if not self.step_mask.any():
            return torch.zeros(self.B, self.T)
        return assign_credit(self.step_scores, self.step_mask, self.step_ends, self.response_mask, mode=credit.mode,
                             temperature=credit.temperature, clip_eta=credit.clip_eta, delta=credit.delta,
                             score_map=credit.score_map)

    def plain_rewards(self, credit: Any, outcome_coef: float) -> torch.Tensor:
        """[B, T] plain token rewards for verl's per-token estimators (gae): credit + coef x outcome
        on the last token."""
        x = self.token_rewards(credit)
        if self.outcome is not None:
            rows = torch.arange(self.B)
            o = torch.where(self.outcome_mask, self.outcome, torch.zeros_like(self.outcome))
            x = x.index_put((rows, last_token_index(self.response_mask)), outcome_coef * o, accumulate=True)
        return x * self.response_mask

    def prm_returns(self, credit: Any) -> torch.Tensor:
        """[B] the process reward of each response (sum of its credit-assigned token rewards)."""
        return (self.token_rewards(credit) * self.response_mask).sum(1)


def _group_ids(group: Any) -> torch.Tensor:
    n = len(group) if not isinstance(group, torch.Tensor) else group.numel()
    return group_index(group, n)
