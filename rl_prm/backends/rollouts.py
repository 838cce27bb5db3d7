"""One training step's rollouts on the policy's vLLM engine, three ways (the local backend's step 1 and 5):

    rollouts = Rollouts(cfg, handle, learner, tokenizer, train_rows, train_ids, prm)   # prm: the judge (streamed)
    r = rollouts.get(step)          # StepRollouts: the step's prompts x n samples, prompt-major, with step spans
    timing = rollouts.sync()        # the learner's new weights into the engine
    rollouts.close()

    plain      generated when asked (get), with the weights of the last sync
    pipelined  trainer.pipeline: while step s scores and updates, step s+1 generates with the weights of the
               last sync (one update behind: lag 1, PPO's ratio is against its sampling log-probs); sync waits
               for it, then pushes the new weights
    streamed   reward.prm.stream: each prompt's responses go to the judge as they finish (StreamScorer), so
               scoring overlaps generation; the gate's verifiable rewards are computed on the way and kept
"""

from __future__ import annotations

import concurrent.futures
import time
from dataclasses import dataclass
from typing import Any, Optional

from rl_prm.data.datasets import batch_indices
from rl_prm.generate import RolloutClient, step_seed
from rl_prm.score.gate import judged_mask
from rl_prm.score.streaming import StreamScorer
from rl_prm.score.verifiable import verifiable_rewards
from rl_prm.steps import step_token_ends


@dataclass
class StepRollouts:
    """A step's rollouts, prompt-major. streamed: (the StreamScorer that got them, the prompt-major order of
    what it got), None when not streamed; vr: their verifiable rewards when computed on the way (streamed
    with a gate), else None."""

    idx: list[int]          # train row index of each prompt
    outs: list[Any]         # rl_prm.generate.Rollout per response
    rows: list[dict]        # each response's train row
    spans: list[Any]        # each response's steps mapped to its tokens (rl_prm.steps.StepSpans)
    generate_s: float       # seconds the engine took
    lag: int                # updates between the sampling weights and the learner's (pipelined: 1)
    streamed: Optional[tuple[StreamScorer, list[int]]] = None
    vr: Optional[list[float]] = None


class Rollouts:
    """See the module doc."""

    def __init__(self, cfg: Any, handle: Any, learner: Any, tokenizer: Any, rows: list[dict], ids: list[list[int]],
                 prm: Any = None):
        self.cfg, self.learner, self.tokenizer, self.rows, self.ids, self.prm = cfg, learner, tokenizer, rows, ids, prm
        self.pipelined = bool(cfg.trainer.pipeline)
        self.stream = bool(cfg.reward.prm.enabled and cfg.reward.prm.stream)
        self.gate = cfg.reward.prm.gate if cfg.reward.prm.enabled else "none"
        # what the engine holds after a sync (a restarted engine gets it back); pipelined, a copy, since the
        # learner moves on while the engine generates with it
        self._synced = self._snapshot() if self.pipelined else None
        self.client = RolloutClient(handle, weights=self._engine_weights)
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="rollout") if self.pipelined else None
        self._ahead: Optional[concurrent.futures.Future] = None  # the next step's rollouts, being generated

    def get(self, step: int) -> StepRollouts:
        """Step `step`'s rollouts (pipelined: those generated during the previous step, if any; the next
        step's start now)."""
        r = self._ahead.result() if self._ahead is not None else self._generate(step, lag=0)
        self._ahead = (self._pool.submit(self._generate, step + 1, 1)
                       if self._pool is not None and step < self.cfg.trainer.total_steps else None)
        return r

    def sync(self) -> dict[str, float]:
        """Push the learner's weights into the engine (pipelined: after the next rollouts are done); timings."""
        m = {}
        if self._ahead is not None:
            t0 = time.perf_counter()
            concurrent.futures.wait([self._ahead])
            m["timing/wait_next_rollouts"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if self.pipelined:
            self._synced = self._snapshot()
        self.client.load_weights(self._engine_weights())
        m["timing/sync"] = time.perf_counter() - t0
        return m

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def _snapshot(self) -> list:
        return [(k, v.clone()) for k, v in self.learner.named_weights()]

    def _engine_weights(self):
        return self._synced if self.pipelined else self.learner.named_weights()

    def _spans(self, outs: list) -> list:
        return [step_token_ends(o.response_ids, self.tokenizer, o.truncated) for o in outs]

    def _generate(self, step: int, lag: int) -> StepRollouts:
        c = self.cfg
        t = time.perf_counter()
        idx = batch_indices(len(self.rows), step, c.rollout.prompts_per_step, c.run.seed)
        prompts = [self.ids[i] for i in idx]
        kw = dict(n=c.rollout.n, temperature=c.rollout.temperature, top_p=c.rollout.top_p,
                  max_tokens=c.rollout.max_tokens, seed=step_seed(c.run.seed, step, c.rollout.prompts_per_step, c.rollout.n))
        if not self.stream:
            outs = self.client.generate(prompts, **kw)
            return StepRollouts(idx, outs, [self.rows[idx[o.prompt_index]] for o in outs], self._spans(outs),
                                time.perf_counter() - t, lag)
        gated = self.gate != "none" and c.reward.verifiable.enabled  # the gate needs each response's VR
        streamer, outs, spans, vr = StreamScorer(self.prm), [], [], []
        try:
            for group in self.client.generate_stream(prompts, **kw):
                sp, grows = self._spans(group), [self.rows[idx[o.prompt_index]] for o in group]
                gvr = verifiable_rewards(grows, [o.text for o in group]) if gated else None
                streamer.add([r["problem"] for r in grows], sp, judged_mask(self.gate, gvr, len(group)))
                outs, spans, vr = outs + group, spans + sp, vr + (gvr or [])
        finally:
            streamer.close()
        order = sorted(range(len(outs)), key=lambda j: (outs[j].prompt_index, outs[j].sample_index))  # prompt-major
        outs = [outs[j] for j in order]
        return StepRollouts(idx, outs, [self.rows[idx[o.prompt_index]] for o in outs], [spans[j] for j in order],
                            time.perf_counter() - t, lag, (streamer, order), [vr[j] for j in order] if gated else None)
