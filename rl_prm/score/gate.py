"""Which responses the judge sees (`reward.prm.gate`), and what the steps of the others get.

    judged = judged_mask(gate, outcomes)           # per response: send it to the judge?
    scores[b] = gated_scores(spans[b].num_steps)   # a response not judged: every step P(Yes) = GATED_P_YES

Gates (the registry below is the list):
  none            every response with steps is judged
  answer_correct  only responses whose verifiable reward says right (>= 0.5) are judged; every step of a
                  wrong answer gets P(Yes) = 0, the floor of every score map (2p-1: -1; p: 0). A response
                  without a verifiable reward (no ground truth) is judged.
Why a gated answer may skip the judge only under a credit mode whose return before the worst step is
that step's reward (min_form, future_min), and not under sum-form or Delta: docs/protocols.md
("Answer-gated judging"); rl_prm.config.rules refuses the other combinations at load.
Both backends call these (rl_prm.backends.local, rl_prm.verl_ext.reward_manager).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

from rl_prm.registry import Registry

# gate(outcome) -> judge this response? (outcome: its verifiable reward, None when it has none)
Gate = Callable[[Optional[float]], bool]
GATES: Registry[Gate] = Registry("judge gate")
GATED_P_YES = 0.0  # P(Yes) given to every step of a response the gate keeps from the judge


@GATES.register("none")
def _judge_every_response(outcome: Optional[float]) -> bool:
    return True


@GATES.register("answer_correct")
def _judge_right_answers(outcome: Optional[float]) -> bool:
    return outcome is None or outcome >= 0.5


def judged_mask(gate: str, outcomes: Optional[Sequence[Optional[float]]], n: int) -> list[bool]:
    """Per response, whether it goes to the judge (`outcomes` None: no verifiable reward, all judged)."""
    fn = GATES.get(gate)
    return [fn(None if outcomes is None else outcomes[b]) for b in range(n)]


def gated_scores(n_steps: int) -> list[float]:
    """The training scores of a response the gate kept from the judge: GATED_P_YES for every step."""
    return [GATED_P_YES] * n_steps
