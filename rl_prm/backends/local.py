"""The one-node backend: a readable RL loop over Ray actors (CPU or one GPU). The embedded default.

    rl-prm train recipes/tiny_cpu.yaml            # -> rl_prm.backends.local.train(cfg)

Per step (one batch), in order:
    1. generate  prompts_per_step prompts x n samples on the policy's vLLM engine (rl_prm.generate)
    2. score     split responses into "\\n\\n" steps mapped to their last tokens (rl_prm.steps); R-PRM step
                 scores for exactly those step texts (rl_prm.score.pool); the verifiable reward
    3. credit    one StepBatch -> the recipe's estimator (rl_prm.credit.estimators, shared with verl)
    4. update    PPO-clip + KL + entropy on the HF policy (rl_prm.update.Learner, driver process)
    5. sync      push the new weights into the running vLLM engine
    6. log       metrics, eval, checkpoint (atomic; a restart resumes at step + 1 in the same W&B run)

Ray: joins $RAY_ADDRESS when launched with `ray job submit`, else starts a private local cluster.
"""

from __future__ import annotations

import concurrent.futures
import os
import random
import sys
import time
from typing import Any, Callable, Optional

import torch

from rl_prm.backends.engines import Engines, ray_init

__all__ = ["Engines", "train"]


def train(cfg: Any, on_step: Optional[Callable[[int, dict], None]] = None,
          engines: Optional[Engines] = None) -> dict[str, Any]:
    """Run (or resume) the recipe `cfg` (rl_prm.config.load_recipe). Returns a summary dict.

    on_step(step, ctx): optional hook after each step's weight sync (tests use it to inspect the
    learner and the rollout actor: ctx = {"learner", "rollout", "metrics"}).
    engines: reuse the vLLM actors of an ``Engines`` (left running at the end); None = start
    this run's own and stop them at the end.
    """
    import ray
    from tqdm import tqdm
    from transformers import AutoTokenizer

    from rl_prm import checkpoint as ckpt
    from rl_prm.config import run_dir_of, save_resolved, to_dict
    from rl_prm.credit import ESTIMATORS, EstimatorOptions, StepBatch
    from rl_prm.data.datasets import batch_indices, load_data, tokenize_prompts
    from rl_prm.eval.during_training import evaluate_policy
    from rl_prm import logs
    from rl_prm.generate import RolloutClient, step_seed
    from rl_prm.metrics import HackWatch, SpikeDetector
    from rl_prm.models import resolve_model
    from rl_prm.score.gate import judged_mask
    from rl_prm.score.streaming import StreamScorer
    from rl_prm.score.verifiable import verifiable_rewards
    from rl_prm.steps import step_token_ends
    from rl_prm.tracking import Tracker
    from rl_prm.update import Learner, LearnerConfig, make_batch

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
    summary: dict[str, Any] = {"run_dir": str(run_dir), "run_id": run_id, "start_step": start_step, "steps": [],
                               "resumed_from": str(resume_from) if resume_from else None}
    if start_step > cfg.trainer.total_steps:
        print(f"run {run_dir} is already complete ({resume_from.name}); raise trainer.total_steps to continue, "
              "or pick a new run.name", flush=True)
        return {**summary, "final_step": start_step - 1, "wall_s": time.time() - t_start, "checkpoint": str(resume_from)}
    save_resolved(cfg, run_dir)

    # --- data and models -----------------------------------------------------------------------
    t0 = time.time()  # model resolution: a build (tiny, RL_PRM_WORLD=build) or a download happens here
    policy_path = resolve_model(cfg.model.policy, "policy")
    ref_path = resolve_model(cfg.model.ref_policy, "ref_policy") if cfg.model.ref_policy else policy_path
    judge_path = resolve_model(cfg.model.judge, "judge") if cfg.reward.prm.enabled else None
    models_s = time.time() - t0
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
    summary["run_id"] = tracker.run_id
    print(("resuming at step %d from %s; " % (start_step, resume_from) if resume_from else "")
          + f"run dir {run_dir}  checkpoints {ckpt_root}  W&B run {tracker.run_id} "
          f"({os.environ.get('WANDB_MODE')}: {run_dir / 'wandb'})", flush=True)
    if n_long:
        tracker.warn(f"{n_long} train prompts longer than data.max_prompt_tokens were skipped", step=start_step)

    # --- engines -------------------------------------------------------------------------------
    startup = {"timing/startup_models": models_s, "timing/startup_learner": time.time() - t_start - models_s}
    t0 = time.time()
    ray_init()
    startup["timing/startup_ray"] = time.time() - t0
    own = engines is None
    engines = Engines() if own else engines
    # the weights the engine holds after a sync (a restarted engine gets them back); pipelined, a copy, since
    # the learner moves on while the engine generates with them
    pipelined = cfg.trainer.pipeline
    snapshot = lambda: [(k, v.clone()) for k, v in learner.named_weights()]  # noqa: E731
    synced = snapshot() if pipelined else None
    engine_weights = (lambda: synced) if pipelined else learner.named_weights
    rollout = RolloutClient(engines.rollout(cfg, start_weights), weights=engine_weights)
    prm = None
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="rollout") if pipelined else None
    ahead: Optional[concurrent.futures.Future] = None  # the next step's rollouts, being generated

    stream = cfg.reward.prm.enabled and cfg.reward.prm.stream
    gate = cfg.reward.prm.gate if cfg.reward.prm.enabled else "none"

    def spans_of(outs: list) -> list:
        return [step_token_ends(o.response_ids, tokenizer, o.truncated) for o in outs]

    def generate(s: int) -> tuple[list[int], list, list, float, Any]:
        """(prompt indices, rollouts prompt-major, their step spans, seconds, streamed) of step s's batch;
        streamed (reward.prm.stream): (the StreamScorer that got each prompt's responses as they finished,
        the prompt-major order of what it got), else None."""
        t = time.perf_counter()
        idx = batch_indices(len(train_rows), s, cfg.rollout.prompts_per_step, cfg.run.seed)
        prompts, kw = [train_ids[i] for i in idx], dict(
            n=cfg.rollout.n, temperature=cfg.rollout.temperature, top_p=cfg.rollout.top_p,
            max_tokens=cfg.rollout.max_tokens, seed=step_seed(cfg.run.seed, s, cfg.rollout.prompts_per_step, cfg.rollout.n))
        if not stream:
            outs = rollout.generate(prompts, **kw)
            return idx, outs, spans_of(outs), time.perf_counter() - t, None
        streamer, outs, spans = StreamScorer(prm), [], []
        try:
            for group in rollout.generate_stream(prompts, **kw):
                sp, grows = spans_of(group), [train_rows[idx[o.prompt_index]] for o in group]
                gvr = (verifiable_rewards(grows, [o.text for o in group])
                       if gate != "none" and cfg.reward.verifiable.enabled else None)
                streamer.add([r["problem"] for r in grows], sp, judged_mask(gate, gvr, len(group)))
                outs, spans = outs + group, spans + sp
        finally:
            streamer.close()
        order = sorted(range(len(outs)), key=lambda j: (outs[j].prompt_index, outs[j].sample_index))  # prompt-major
        return idx, [outs[j] for j in order], [spans[j] for j in order], time.perf_counter() - t, (streamer, order)
    try:
        t0 = time.time()
        rollout.ready()
        if not own:  # a shared engine holds the previous run's weights
            rollout.load_weights(learner.named_weights())
        startup["timing/startup_rollout_engine"] = time.time() - t0
        if judge_path is not None:
            t0 = time.time()
            prm = engines.prm(cfg, judge_path)
            startup["timing/startup_prm_engine"] = time.time() - t0
        startup["timing/startup_total"] = time.time() - t_start
        label = lambda k: "model build/download" if k == "timing/startup_models" else k.split("_", 1)[1]  # noqa: E731
        print("startup: " + ", ".join(f"{label(k)} {v:.0f}s" for k, v in startup.items()), flush=True)

        if start_step == 1 and cfg.trainer.val_before_train:
            t0 = time.perf_counter()
            m0 = {**evaluate_policy(rollout, tokenizer, test_rows, cfg), "timing/eval": time.perf_counter() - t0}
            tracker.log(m0, step=0)
            print("eval before training: " + ", ".join(f"{k}={v:.3f}" for k, v in m0.items()), flush=True)

        spikes, watch = SpikeDetector(), HackWatch()  # sharp moves; the reward-hacking monitors' rules
        bar = tqdm(range(start_step, cfg.trainer.total_steps + 1), initial=start_step - 1,
                   total=cfg.trainer.total_steps, desc="train", dynamic_ncols=True, file=sys.stderr)
        for step in bar:
            t_step = time.perf_counter()
            m: dict[str, Any] = {}

            # 1. generate (pipelined: collect the rollouts started during the previous step) ---------
            t0 = time.perf_counter()
            idx, outs, spans, gen_s, streamed, lag = ahead.result() if ahead is not None else (*generate(step), 0)
            ahead = pool.submit(lambda s=step + 1: (*generate(s), 1)) if pool and step < cfg.trainer.total_steps else None
            rows = [train_rows[idx[o.prompt_index]] for o in outs]
            m["timing/generate"] = time.perf_counter() - t0  # pipelined: the wait for them
            m["timing/generate_engine"], m["pipeline/policy_lag"] = gen_s, float(lag)

            # 2. score: verifiable reward; R-PRM step scores (exactly the step texts credit uses) of the
            #    responses the gate sends to the judge (reward.prm.gate; the others get the floor)
            t0 = time.perf_counter()
            vr = verifiable_rewards(rows, [o.text for o in outs]) if cfg.reward.verifiable.enabled else None
            judged = judged_mask(gate, vr, len(outs))
            scores, prm_m = None, {}
            if streamed is not None:  # scored while the batch generated: wait for the last of it
                streamer, order = streamed
                results = streamer.finish()
                scores, prm_m = prm.assemble(spans, [results[j] for j in order], judged)
                m["prm/stream_calls"], m["timing/score_judge"] = float(streamer.calls), streamer.busy_s
            elif prm is not None:
                scores, prm_m = prm.score_responses([r["problem"] for r in rows], spans, judged)
            m.update(prm_m)
            m["timing/score"] = time.perf_counter() - t0  # streamed: the wait after generation

            # 3. credit: one StepBatch -> the recipe's estimator (the same function verl calls) ------
            t0 = time.perf_counter()
            batch = StepBatch.from_spans(spans, [len(o.response_ids) for o in outs], scores, vr,
                                         [o.prompt_index for o in outs])
            adv, _ = estimator(batch, est_opts)
            m["timing/credit"] = time.perf_counter() - t0

            # 4. update --------------------------------------------------------------------------
            t0 = time.perf_counter()
            train_batch = make_batch([o.prompt_ids for o in outs], [o.response_ids for o in outs], adv, pad_id)
            train_batch.rollout_logprobs = _pad([o.logprobs for o in outs], batch.T)
            if lag:  # sampled by the weights before the last update: PPO's ratio is against those
                train_batch.old_logprobs = train_batch.rollout_logprobs
            m.update(learner.update(train_batch))
            m["timing/update"] = time.perf_counter() - t0

            # 5. sync weights into the rollout engine (pipelined: once the next rollouts are done) ---
            if ahead is not None:
                t0 = time.perf_counter()
                concurrent.futures.wait([ahead])
                m["timing/wait_next_rollouts"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            if pipelined:
                synced = snapshot()
            rollout.load_weights(engine_weights())
            m["timing/sync"] = time.perf_counter() - t0

            # 6. log, eval, checkpoint -----------------------------------------------------------
            m.update(step_metrics(cfg, rows, outs, spans, scores, vr, judged, batch, adv, est_opts))
            if cfg.trainer.eval_every and (step % cfg.trainer.eval_every == 0 or step == cfg.trainer.total_steps):
                t0 = time.perf_counter()
                m.update(evaluate_policy(rollout, tokenizer, test_rows, cfg))
                m["timing/eval"] = time.perf_counter() - t0
            if step == start_step:
                m.update(startup)
            m["timing/step"] = m["perf/step_time"] = time.perf_counter() - t_step
            m["perf/throughput"] = float(batch.response_mask.sum()) / max(1e-9, m["timing/generate"])
            m["rollout/engine_restarts"] = float(rollout.restarts)
            tracker.log(m, step=step)
            if step == start_step or step % max(1, cfg.trainer.eval_every or 1) == 0:
                tracker.log_rollouts(_rollout_rows(outs[: min(4, len(outs))], rows, scores, vr), step=step)
            for w in spikes.update(m) + watch.update(m) + rollout.pop_events() + (prm.pop_events() if prm is not None else []):
                tracker.warn(w, step=step)
            if on_step is not None:
                on_step(step, {"learner": learner, "rollout": rollout.handle, "metrics": m})
            if (cfg.trainer.save_every and step % cfg.trainer.save_every == 0) or step == cfg.trainer.total_steps:
                try:  # a failed save (full disk) is loud, keeps the previous checkpoint; the last one must land
                    ckpt.save_checkpoint(ckpt_root, step, learner, tokenizer, run_id=tracker.run_id,
                                         keep=cfg.trainer.keep_checkpoints)
                except ckpt.CheckpointError as e:
                    tracker.warn(str(e), step=step)
                    if step == cfg.trainer.total_steps:
                        raise
            summary["steps"].append(step)
            bar.set_postfix(reward=f"{m.get('reward/mean', 0):.3f}", vr=f"{m['reward/vr_mean']:.2f}",
                            kl=f"{m.get('actor/kl', 0):.2e}", s=f"{m['timing/step']:.1f}")
        bar.close()
        summary.update(final_step=cfg.trainer.total_steps, wall_s=time.time() - t_start,
                       checkpoint=str(ckpt.latest_checkpoint(ckpt_root)))
        tracker.finish(0)
        return summary
    except BaseException:
        tracker.finish(1)
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if own:
            engines.close()
            if not os.environ.get("RAY_ADDRESS"):
                ray.shutdown()


def step_metrics(cfg: Any, rows: list[dict], outs: list, spans: list, scores: Optional[list], vr: Optional[list[float]],
                 judged: list[bool], batch: Any, adv: torch.Tensor, opts: Any) -> dict[str, float]:
    """RL basics and rewards of one step; its responses' rows (rl_prm.metrics.response_row, what the verl
    reward manager logs per response) summed into prm/*, hack/* and, for a task with a step checker,
    process/* and judge/*; the step scores by position and their histograms (every step's score: local only)."""
    from rl_prm.metrics import prm_histograms, prm_position_metrics, response_metrics, response_row, rl_metrics
    from rl_prm.score.verifiable import verifiable_rewards
    from rl_prm.tasks import first_wrong, task_of

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
