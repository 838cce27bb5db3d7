"""Agent loop manager for verl's v1 trainer that keeps token-level reward rows on the streaming path.

When the reward is computed while rolling out (no reward model, or the judge on its own resource
pool: `reward.reward_model.enable_resource_pool=True`), verl's agent loop stores the reward as a
scalar on the last response token (`AgentLoopOutput.as_dict`). Our `rprm` reward manager returns a
`TokenReward` (a float carrying the response's full rm_scores row); this manager's workers write
that row instead, so the rprm_* estimators can decode step boundaries.

Selected by the verl backend with
    +actor_rollout_ref.rollout.agent.agent_loop_manager_class=rl_prm.verl_ext.agent_loop.RPRMAgentLoopManager
Needs verl's v1 trainer (TransferQueue installed, as `verl[vllm]` does on GPU machines).
"""

from __future__ import annotations

from typing import Any

import ray
import torch
from verl.experimental.agent_loop import AgentLoopOutput
from verl.trainer.ppo.v1.agent_loop_tq import AgentLoopManagerTQ, AgentLoopWorkerTQ


class RowAgentLoopOutput(AgentLoopOutput):
    """AgentLoopOutput whose rm_scores is the reward's token row (TokenReward.codes) when present."""

    def as_dict(self) -> dict[str, Any]:
        codes = getattr(self.reward_score, "codes", None)
        out = super().as_dict()
        if codes is not None:
            n = out["responses"].size(0)
            if len(codes) != n:
                raise ValueError(f"reward row has {len(codes)} tokens for a response of {n} tokens")
            out["rm_scores"] = torch.tensor(codes, dtype=torch.float32)
        return out


def attach_rows(outputs: list[AgentLoopOutput]) -> None:
    """Make the final output write its token row (others of a multi-output loop keep the scalar)."""
    final = outputs[-1]
    if getattr(final.reward_score, "codes", None) is not None and not isinstance(final, RowAgentLoopOutput):
        final.__class__ = RowAgentLoopOutput


def _original_class(actor_cls: Any) -> type:
    meta = getattr(actor_cls, "__ray_metadata__", None)
    cls = getattr(meta, "modified_class", actor_cls)
    return getattr(cls, "__ray_actor_class__", cls)


class _RowWorker(_original_class(AgentLoopWorkerTQ)):  # type: ignore[misc]
    def __init__(self, *args, **kwargs):
        # Defined here on purpose: Ray wraps the actor class's __init__ and ships the class to the worker
        # with cloudpickle. The inherited AgentLoopWorkerTQ.__init__ cannot be pickled by reference
        # (the module attribute AgentLoopWorkerTQ is Ray's ActorClass, not the class), so it would
        # arrive as a copy whose `super()` names a copy of AgentLoopWorkerTQ: "super(type, obj): obj
        # must be an instance or subtype of type". This one pickles by reference.
        super().__init__(*args, **kwargs)

    async def _compute_score(self, outputs, kwargs):
        await super()._compute_score(outputs, kwargs=kwargs)
        attach_rows(outputs)


RPRMAgentLoopWorker = ray.remote(_RowWorker)


class RPRMAgentLoopManager(AgentLoopManagerTQ):
    """AgentLoopManagerTQ with workers that keep the rprm reward manager's token rows."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.agent_loop_workers_class = RPRMAgentLoopWorker
