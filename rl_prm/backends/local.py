"""The one-node backend: a readable RL loop over Ray actors (CPU or one GPU). The embedded default.

    rl-prm train recipes/tiny_cpu.yaml            # -> rl_prm.backends.local.train(cfg)

Per step (one batch), in order:
    1. generate  prompts_per_step prompts x n samples on the policy's vLLM engine (rl_prm.backends.rollouts:
                 plain, pipelined or streamed to the judge)
    2. score     split responses into "\\n\\n" steps mapped to their last tokens (rl_prm.steps); R-PRM step
                 scores for exactly those step texts (rl_prm.score.pool); the verifiable reward
    3. credit    one StepBatch -> the recipe's estimator (rl_prm.credit.estimators, shared with verl)
    4. update    PPO-clip + KL + entropy on the HF policy (rl_prm.update.Learner, driver process)
    5. sync      push the new weights into the running vLLM engine
    6. log       metrics (the same per-response definition verl's reward manager logs, rl_prm.metrics), eval,
                 warnings, checkpoint (atomic; a restart resumes at step + 1 in the same W&B run)

Ray: joins $RAY_ADDRESS when launched with `ray job submit`, else starts a private local cluster.
"""

from __future__ import annotations

import os
import random
import sys
import time
from typing import Any, Callable, Optional

import ray
import torch
from tqdm import tqdm
from transformers import AutoTokenizer

from rl_prm import checkpoint as ckpt
from rl_prm import logs
from rl_prm.backends import RunResult
from rl_prm.backends.engines import Engines, ray_init
from rl_prm.backends.rollouts import Rollouts, StepRollouts
from rl_prm.config import run_dir_of, save_resolved, to_dict
from rl_prm.credit import ESTIMATORS, EstimatorOptions, StepBatch
from rl_prm.data.datasets import load_data, tokenize_prompts
from rl_prm.eval.during_training import evaluate_policy
from rl_prm.metrics import (HackWatch, SpikeDetector, prm_histograms, prm_position_metrics, response_metrics,
                            response_row, rl_metrics)
from rl_prm.models import resolve_model
from rl_prm.score.gate import judged_mask
from rl_prm.score.oracle import ORACLE
from rl_prm.score.verifiable import verifiable_rewards
from rl_prm.tasks import first_wrong, task_of
from rl_prm.timing import marked_timer
from rl_prm.tracking import Tracker
from rl_prm.update import Learner, LearnerConfig, make_batch

__all__ = ["Engines", "train"]


def train(cfg: Any, on_step: Optional[Callable[[int, dict], None]] = None,
          engines: Optional[Engines] = None) -> RunResult:
    """Run (or resume) the recipe `cfg` (rl_prm.config.load_recipe).

    on_step(step, ctx): optional hook after each step's weight sync (tests use it to inspect the
    learner and the rollout actor: ctx = {"learner", "rollout", "metrics"}).
    engines: reuse the vLLM actors of an ``Engines`` (left running at the end); None = start
    this run's own and stop them at the end.
    """
    t_start = time.time()
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
    estimator, est_opts = ESTIMATORS.get(cfg.algorithm.estimator), EstimatorOptions.from_recipe(cfg)
    random.seed(cfg.run.seed)
    torch.manual_seed(cfg.run.seed)

    # --- run dir and resume point --------------------------------------------------------------
    run_dir = run_dir_of(cfg)
    logs.set_dir(run_dir / "logs")  # engine / library output of a quiet session goes there
    ckpt_root = run_dir / "checkpoints"
    start_step, run_id, resume_from = ckpt.resume_point(ckpt_root, cfg.trainer.resume)
    result = RunResult(str(run_dir), run_id=run_id, start_step=start_step,
                       resumed_from=str(resume_from) if resume_from else None)
    if start_step > cfg.trainer.total_steps:
        print(f"run {run_dir} is already complete ({resume_from.name}); raise trainer.total_steps to continue, "
              "or pick a new run.name", flush=True)
        result.final_step, result.wall_s, result.checkpoint = start_step - 1, time.time() - t_start, str(resume_from)
        return result
    save_resolved(cfg, run_dir)

    # --- data and models -----------------------------------------------------------------------
    startup: dict[str, float] = {}
    with marked_timer("startup_models", startup):  # a build (tiny, RL_PRM_WORLD=build) or a download happens here
        policy_path = resolve_model(cfg.model.policy, "policy")
        ref_path = resolve_model(cfg.model.ref_policy, "ref_policy") if cfg.model.ref_policy else policy_path
        judge_path = (resolve_model(cfg.model.judge, "judge")  # None: no judge, or the oracle (no model)
                      if cfg.reward.prm.enabled and cfg.model.judge != ORACLE else None)
    start_weights = str(resume_from / "model") if resume_from is not None else policy_path
    tokenizer = AutoTokenizer.from_pretrained(policy_path)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    limit = cfg.data.max_prompt_tokens
    train_rows, train_ids, n_long = tokenize_prompts(load_data(cfg.data.train, "train", cfg.data.train_limit, cfg.run.seed),
                                                     tokenizer, cfg.data.prompt_instruction, limit)
    test_rows, _, _ = tokenize_prompts(load_data(cfg.data.test, "test", cfg.data.test_limit, cfg.run.seed),
                                       tokenizer, cfg.data.prompt_instruction, limit)
    if not train_rows:
        raise ValueError(f"every train prompt is longer than data.max_prompt_tokens={limit}")
    learner = Learner(start_weights, LearnerConfig.from_recipe(cfg), ref_policy=ref_path)
    if resume_from is not None:
        ckpt.load_checkpoint(resume_from, learner)
    tracker = Tracker(run_dir, project=cfg.trainer.project, name=cfg.run.name, config=to_dict(cfg),
                      loggers=list(cfg.trainer.logger), resume_id=run_id, resume_step=start_step if run_id else None)
    result.run_id = tracker.run_id
    print(("resuming at step %d from %s; " % (start_step, resume_from) if resume_from else "")
          + f"run dir {run_dir}  checkpoints {ckpt_root}  W&B run {tracker.run_id} "
          f"({os.environ.get('WANDB_MODE')}: {run_dir / 'wandb'})", flush=True)
    if n_long:
        tracker.warn(f"{n_long} train prompts longer than data.max_prompt_tokens were skipped", step=start_step)
    startup["timing/startup_learner"] = time.time() - t_start - startup["timing/startup_models"]

    # --- engines -------------------------------------------------------------------------------
    with marked_timer("startup_ray", startup):
        ray_init()
    own = engines is None
    engines = Engines() if own else engines
    prm, rollouts = None, None
    try:
        with marked_timer("startup_rollout_engine", startup):
            rollouts = Rollouts(cfg, engines.rollout(cfg, start_weights), learner, tokenizer, train_rows, train_ids)
            rollouts.client.ready()
            if not own:  # a shared engine holds the previous run's weights
                rollouts.client.load_weights(learner.named_weights())
        if cfg.reward.prm.enabled:
            with marked_timer("startup_prm_engine", startup):
                prm = rollouts.prm = engines.prm(cfg, judge_path)  # streamed rollouts hand responses to it
        startup["timing/startup_total"] = time.time() - t_start
        label = lambda k: "model build/download" if k == "timing/startup_models" else k.split("_", 1)[1]  # noqa: E731
        print("startup: " + ", ".join(f"{label(k)} {v:.0f}s" for k, v in startup.items()), flush=True)

        if start_step == 1 and cfg.trainer.val_before_train:
            m0: dict[str, Any] = {}
            with marked_timer("eval", m0):
                m0.update(evaluate_policy(rollouts.client, tokenizer, test_rows, cfg))
            tracker.log(m0, step=0)
            print("eval before training: " + ", ".join(f"{k}={v:.3f}" for k, v in m0.items()), flush=True)

        spikes, watch = SpikeDetector(), HackWatch()  # sharp moves; the reward-hacking monitors' rules
        bar = tqdm(range(start_step, cfg.trainer.total_steps + 1), initial=start_step - 1,
                   total=cfg.trainer.total_steps, desc="train", dynamic_ncols=True, file=sys.stderr)
        for step in bar:
            m: dict[str, Any] = {}
            with marked_timer("step", m):
                # 1. generate (pipelined: the rollouts started during the previous step) ---------------
                with marked_timer("generate", m):  # pipelined: the wait for them
                    r = rollouts.get(step)
                m["timing/generate_engine"], m["pipeline/policy_lag"] = r.generate_s, float(r.lag)

                # 2. score: verifiable reward; R-PRM step scores (exactly the step texts credit uses) of the
                #    responses the gate sends to the judge (reward.prm.gate; the others get the floor)
                with marked_timer("score", m):  # streamed: the wait after generation
                    vr, judged, scores = score(cfg, prm, r, m)

                # 3. credit: one StepBatch -> the recipe's estimator (the same function verl calls) ---------
                with marked_timer("credit", m):
                    batch = StepBatch.from_spans(r.spans, [len(o.response_ids) for o in r.outs], scores, vr,
                                                 [o.prompt_index for o in r.outs])
                    adv, _ = estimator(batch, est_opts)

                # 4. update ------------------------------------------------------------------------------
                with marked_timer("update", m):
                    train_batch = make_batch([o.prompt_ids for o in r.outs], [o.response_ids for o in r.outs], adv, pad_id)
                    train_batch.rollout_logprobs = _pad([o.logprobs for o in r.outs], batch.T)
                    if r.lag:  # sampled by the weights before the last update: PPO's ratio is against those
                        train_batch.old_logprobs = train_batch.rollout_logprobs
                    m.update(learner.update(train_batch))

                # 5. sync weights into the rollout engine (pipelined: once the next rollouts are done) -------
                m.update(rollouts.sync())

                # 6. metrics and eval ---------------------------------------------------------------------
                m.update(step_metrics(cfg, r, scores, vr, judged, batch, adv, est_opts))
                if cfg.trainer.eval_every and (step % cfg.trainer.eval_every == 0 or step == cfg.trainer.total_steps):
                    with marked_timer("eval", m):
                        m.update(evaluate_policy(rollouts.client, tokenizer, test_rows, cfg))
            log_step(cfg, step, start_step, m, startup, r, scores, vr, batch, tracker, rollouts, prm, spikes, watch)
            if on_step is not None:
                on_step(step, {"learner": learner, "rollout": rollouts.client.handle, "metrics": m})
            save(cfg, step, ckpt_root, learner, tokenizer, tracker)
            result.steps.append(step)
            bar.set_postfix(reward=f"{m.get('reward/mean', 0):.3f}", vr=f"{m['reward/vr_mean']:.2f}",
                            kl=f"{m.get('actor/kl', 0):.2e}", s=f"{m['timing/step']:.1f}")
        bar.close()
        result.final_step, result.wall_s = cfg.trainer.total_steps, time.time() - t_start
        result.checkpoint = str(ckpt.latest_checkpoint(ckpt_root))
        tracker.finish(0)
        return result
    except BaseException:
        tracker.finish(1)
        raise
    finally:
        if rollouts is not None:
            rollouts.close()
        if own:
            engines.close()
            if not os.environ.get("RAY_ADDRESS"):
                ray.shutdown()


def score(cfg: Any, prm: Any, r: StepRollouts, m: dict) -> tuple[Optional[list[float]], list[bool], Optional[list]]:
    """(verifiable rewards, judged mask, step scores: P(Yes) per step, None without a judge) of a step's
    rollouts; the judge's prm/* metrics into m."""
    vr = None
    if cfg.reward.verifiable.enabled:
        vr = r.vr if r.vr is not None else verifiable_rewards(r.rows, [o.text for o in r.outs])
    judged = judged_mask(cfg.reward.prm.gate if prm is not None else "none", vr, len(r.outs))
    scores, prm_m = None, {}
    if r.streamed is not None:  # scored while the batch generated: wait for the last of it
        streamer, order = r.streamed
        results = streamer.finish()
        scores, prm_m = prm.assemble(r.spans, [results[j] for j in order], judged)
        m["prm/stream_calls"], m["timing/score_judge"] = float(streamer.calls), streamer.busy_s
    elif prm is not None:
        scores, prm_m = prm.score_responses([row["problem"] for row in r.rows], r.spans, judged)
    m.update(prm_m)
    return vr, judged, scores


def log_step(cfg: Any, step: int, start_step: int, m: dict, startup: dict, r: StepRollouts, scores: Optional[list],
             vr: Optional[list[float]], batch: Any, tracker: Tracker, rollouts: Rollouts, prm: Any,
             spikes: SpikeDetector, watch: HackWatch) -> None:
    """Log one step's metrics (the start-up times on the first), sample rollouts, and the warnings of the
    spike detector, the hacking monitors' rules and the engines."""
    if step == start_step:
        m.update(startup)
    m["perf/step_time"] = m["timing/step"]
    m["perf/throughput"] = float(batch.response_mask.sum()) / max(1e-9, m["timing/generate"])
    m["rollout/engine_restarts"] = float(rollouts.client.restarts)
    tracker.log(m, step=step)
    if step == start_step or step % max(1, cfg.trainer.eval_every or 1) == 0:
        tracker.log_rollouts(_rollout_rows(r.outs[: min(4, len(r.outs))], r.rows, scores, vr), step=step)
    for w in spikes.update(m) + watch.update(m) + rollouts.client.pop_events() + (prm.pop_events() if prm is not None else []):
        tracker.warn(w, step=step)


def save(cfg: Any, step: int, root: Any, learner: Learner, tokenizer: Any, tracker: Tracker) -> None:
    """Checkpoint every trainer.save_every steps and at the end. A failed save (full disk) is loud and keeps
    the previous checkpoint; the last one must land."""
    if not ((cfg.trainer.save_every and step % cfg.trainer.save_every == 0) or step == cfg.trainer.total_steps):
        return
    try:
        ckpt.save_checkpoint(root, step, learner, tokenizer, run_id=tracker.run_id, keep=cfg.trainer.keep_checkpoints)
    except ckpt.CheckpointError as e:
        tracker.warn(str(e), step=step)
        if step == cfg.trainer.total_steps:
            raise


def step_metrics(cfg: Any, r: StepRollouts, scores: Optional[list], vr: Optional[list[float]], judged: list[bool],
                 batch: Any, adv: torch.Tensor, opts: Any) -> dict[str, float]:
    """RL basics and rewards of one step; its responses' rows (rl_prm.metrics.response_row, what the verl
    reward manager logs per response) summed into prm/*, hack/* and, for a task with a step checker,
    process/* and judge/*; the step scores by position and their histograms (every step's score: local only)."""
    outs, rows, spans = r.outs, r.rows, r.spans
    B = len(outs)
    vr_list = vr if vr is not None else [0.0] * B
    prm_return = batch.prm_returns(opts.credit) if scores is not None else torch.zeros(B)
    coef = cfg.reward.verifiable.coef if vr is not None else 0.0
    total = [float(prm_return[b]) + coef * vr_list[b] for b in range(B)]
    mask = batch.response_mask
    m = rl_metrics([len(o.response_ids) for o in outs], cfg.rollout.max_tokens, total, [o.prompt_index for o in outs])
    m.update({"reward/vr_mean": sum(vr_list) / B, "reward/prm_mean": float(prm_return.mean()),
              "critic/advantages_mean": float((adv * mask).sum() / max(1.0, float(mask.sum()))),
              "critic/advantages_abs_max": float(adv.abs().max()),
              "response/truncated_frac": sum(o.truncated for o in outs) / B})
    # the monitors and the checker compare with the graded answer, also when the verifiable reward is off
    graded = vr if vr is not None else verifiable_rewards(rows, [o.text for o in outs])
    task = task_of(rows)
    checker = task is not None and task.has_checker
    m.update(response_metrics([
        response_row(o.text, spans[b].texts, scores[b] if scores is not None else None, judged[b], graded[b],
                     first_wrong(task, rows[b]["problem"], spans[b].texts) if checker else None)
        for b, o in enumerate(outs)]))
    if scores is not None:
        m.update(prm_position_metrics(scores))
        m.update(prm_histograms(scores))
    return m


def _pad(rows: list[list[float]], T: int) -> torch.Tensor:
    out = torch.full((len(rows), T), float("nan"))
    for b, r in enumerate(rows):
        if r:
            out[b, : len(r)] = torch.tensor(r[:T], dtype=torch.float32)
    return out


def _rollout_rows(outs: list, rows: list[dict], scores: Optional[list], vr: Optional[list[float]]) -> list[dict]:
    return [{"question": rows[i]["problem"], "answer": rows[i]["answer"], "response": o.text,
             "step_scores": scores[i] if scores is not None else [], "vr": vr[i] if vr is not None else None,
             "truncated": o.truncated} for i, o in enumerate(outs)]
