"""The one-node backend: a readable RL loop over Ray actors (CPU or one GPU). The embedded default.

    rl-prm train recipes/tiny_cpu.yaml            # -> rl_prm.backends.local.train(cfg)

Per step (one batch):
    1. generate  prompts_per_step prompts x n samples on the policy's vLLM engine (Ray actor)
    2. steps     split responses into "\\n\\n" steps and map each to its last token (rl_prm.steps)
    3. score     R-PRM step scores P(Yes) for exactly those step texts (R-PRM worker, Ray actor)
    4. reward    verifiable outcome reward (math-verify on the last \\boxed{})
    5. credit    step scores -> token rewards (rl_prm.credit.assign_credit; not-scored steps masked)
    6. advantage ESTIMATORS[algorithm.estimator] (RLOO / GRPO with process rewards, outcome GRPO)
    7. update    PPO-clip + KL + entropy on the HF policy (rl_prm.update.Learner, driver process)
    8. sync      push the new weights into the running vLLM engine
    9. log / eval / checkpoint (atomic; resume continues at step + 1 with the same W&B run)

Ray: `ray.init(address=$RAY_ADDRESS or None)`: joins the cluster when launched with
`ray job submit`, else starts a private local one. The learner lives in the driver process.
"""

from __future__ import annotations

import dataclasses
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from rl_prm.registry import Registry

# ------------------------------------------------------------------------------------------------
# data: name -> loader(split, limit, seed) -> [{"problem", "answer", "source", ("prompt": messages)}]
# ------------------------------------------------------------------------------------------------

DATASETS: Registry[Callable[..., list[dict]]] = Registry("dataset")
TINY_ARITH_SIZE = {"train": 1024, "test": 256}


@DATASETS.register("tiny_arith")
def _tiny_arith(split: str, limit: Optional[int], seed: int) -> list[dict]:
    """Synthetic arithmetic word problems (rl_prm.tiny.arith); train and test questions are disjoint
    (fixed generator seeds; test questions are removed from train)."""
    from rl_prm.tiny.arith import make_problem

    def gen(rng_seed: int, n: int, exclude: set[str]) -> list[dict]:
        rng, out, seen = random.Random(rng_seed), [], set(exclude)
        while len(out) < n:
            p = make_problem(rng)
            if p.question not in seen:
                seen.add(p.question)
                out.append({"problem": p.question, "answer": str(p.answer), "source": "tiny_arith"})
        return out

    test = gen(1_000_003, TINY_ARITH_SIZE["test"], set())
    if split == "test":
        rows = test
    else:
        rows = gen(7_000_001, limit or TINY_ARITH_SIZE["train"], {r["problem"] for r in test})
    return rows[:limit] if limit else rows


@DATASETS.register("world")
def _world(split: str, limit: Optional[int], seed: int) -> list[dict]:
    """The miniature world's problems (rl_prm.world.tasks): train/test disjoint by a hash of the
    question; a fixed set (seed 0) whatever the run seed, so every arm of a comparison sees the
    same test problems."""
    from rl_prm.world.tasks import problems

    n = limit or TINY_ARITH_SIZE[split]
    return [{"problem": p.question, "answer": str(p.answer), "source": "world"} for p in problems(split, n, seed=0)]


def _benchmark(name: str):
    def load(split: str, limit: Optional[int], seed: int) -> list[dict]:
        from rl_prm.data import load_benchmark

        rows = load_benchmark(name, split)
        return rows[:limit] if limit else rows

    return load


for _name in ("gsm8k", "math"):
    DATASETS.register(_name)(_benchmark(_name))


def _parquet(path: str, limit: Optional[int]) -> list[dict]:
    """verl parquet (rl-prm data prep): prompt messages, reward_model.ground_truth, extra_info.question."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    missing = {"prompt", "reward_model"} - set(table.column_names)
    if missing:
        raise ValueError(f"data file {path}: missing column(s) {sorted(missing)} (expected verl parquet)")
    rows = []
    for r in table.to_pylist()[: limit or None]:
        extra = r.get("extra_info") or {}
        user = [m["content"] for m in r["prompt"] if m.get("role") == "user"]
        rows.append({"problem": extra.get("question") or (user[-1] if user else ""), "prompt": r["prompt"],
                     "answer": str(r["reward_model"]["ground_truth"]), "source": r.get("data_source") or "parquet"})
    return rows


def load_data(spec: str, split: str, limit: Optional[int], seed: int) -> list[dict]:
    """`spec`: a DATASETS name or a .parquet path."""
    if spec.endswith(".parquet"):
        if not Path(spec).is_file():
            raise ValueError(f"data file {spec} not found")
        rows = _parquet(spec, limit)
    else:
        rows = DATASETS.get(spec)(split, limit, seed)
    if not rows:
        raise ValueError(f"data {spec!r} ({split}) has no rows")
    return rows


def prompt_ids(tokenizer: Any, row: dict, instruction: str) -> list[int]:
    from rl_prm.generate import chat_prompt_ids

    if "prompt" in row:  # verl parquet: messages already carry the instruction
        ids = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True)
        ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "input_ids") else ids
        return [int(i) for i in ids]
    return chat_prompt_ids(tokenizer, row["problem"], instruction)


def batch_indices(n_rows: int, step: int, per_step: int, seed: int) -> list[int]:
    """Row indices of training step `step` (1-based): consecutive slices of per-epoch shuffles.
    A pure function of (step, seed), so a resumed run sees exactly the prompts it would have."""
    out = []
    start = (step - 1) * per_step
    for pos in range(start, start + per_step):
        epoch, i = divmod(pos, n_rows)
        perm = list(range(n_rows))
        random.Random(seed * 1_000_003 + epoch).shuffle(perm)
        out.append(perm[i])
    return out


def rollout_seed(cfg: Any, step: int) -> int:
    """Base sampling seed of `step`: generate() gives sample j of prompt i seed + i*n + j, so each
    step owns the disjoint range [seed, seed + prompts_per_step * n) and no two samples of a run
    share a random stream (runs with different run.seed are 2**32 apart)."""
    return int(cfg.run.seed) * 2**32 + (step - 1) * cfg.rollout.prompts_per_step * cfg.rollout.n


# ------------------------------------------------------------------------------------------------
# advantages: algorithm.estimator -> fn(ctx) -> advantages [B, T]
# ------------------------------------------------------------------------------------------------


@dataclass
class CreditInputs:
    """Everything the estimators need, as padded tensors (B responses, T tokens, S steps)."""

    token_rewards: torch.Tensor  # [B, T] credit-assigned process rewards (0 when no PRM)
    step_scores: torch.Tensor  # [B, S] P(Yes) (0 where not scored)
    step_mask: torch.Tensor  # [B, S] scored steps
    step_ends: torch.Tensor  # [B, S]
    response_mask: torch.Tensor  # [B, T]
    separator_mask: Optional[torch.Tensor]  # [B, T] or None (zero_separator_adv off)
    outcome: Optional[torch.Tensor]  # [B] verifiable reward, or None (disabled)
    index: list[int]  # group (prompt) id per response


LOCAL_ESTIMATORS: Registry[Callable[[CreditInputs, Any], torch.Tensor]] = Registry("local advantage estimator")


@LOCAL_ESTIMATORS.register("rprm_rloo")
def _adv_rprm_rloo(c: CreditInputs, cfg: Any) -> torch.Tensor:
    """PURE's RLOO: process rewards with a leave-one-out token baseline + RLOO outcome reward."""
    from rl_prm.credit import rloo_process_advantage

    adv, _ = rloo_process_advantage(
        c.token_rewards, c.response_mask, c.index, c.step_ends, c.step_mask,
        outcome=c.outcome, outcome_coef=cfg.reward.verifiable.coef,
        separator_mask=c.separator_mask, whiten=cfg.algorithm.whiten,
    )
    return adv


def _outcome_grpo(outcome: torch.Tensor, response_mask: torch.Tensor, index: list[int]) -> torch.Tensor:
    """Outcome GRPO (verl's grpo): (o - mean_group) / (std_group + eps) on every response token,
    as process GRPO with one step per response ending at its last token."""
    from rl_prm.credit import grpo_process_advantage
    from rl_prm.credit.encoding import last_token_index

    B = outcome.shape[0]
    ends = last_token_index(response_mask).reshape(B, 1)
    valid = (response_mask != 0).any(dim=1, keepdim=True)
    adv, _ = grpo_process_advantage(outcome.reshape(B, 1).float(), valid, ends, response_mask, index)
    return adv


@LOCAL_ESTIMATORS.register("rprm_grpo")
def _adv_rprm_grpo(c: CreditInputs, cfg: Any) -> torch.Tensor:
    """DeepSeekMath process-supervised GRPO on the mapped step scores (+ coef x outcome GRPO when
    the verifiable reward is on)."""
    from rl_prm.credit import grpo_process_advantage
    from rl_prm.credit.modes import prepare_step_rewards

    cr = cfg.reward.credit
    r, valid, ends = prepare_step_rewards(c.step_scores, c.step_mask, c.step_ends, c.response_mask,
                                          clip_eta=cr.clip_eta, delta=cr.delta, score_map=cr.score_map)
    adv, _ = grpo_process_advantage(r, valid, ends, c.response_mask, c.index, separator_mask=c.separator_mask)
    if c.outcome is not None:
        adv = adv + cfg.reward.verifiable.coef * _outcome_grpo(c.outcome, c.response_mask, c.index)
    if cfg.algorithm.whiten:
        from rl_prm.credit import masked_whiten

        keep = c.response_mask.bool() if c.separator_mask is None else c.response_mask.bool() & ~c.separator_mask
        adv = masked_whiten(adv, keep) * keep
    return adv


@LOCAL_ESTIMATORS.register("grpo")
def _adv_grpo(c: CreditInputs, cfg: Any) -> torch.Tensor:
    """Verifiable-reward-only outcome GRPO (the baseline; PRM scores are ignored)."""
    if c.outcome is None:
        raise ValueError("algorithm.estimator=grpo needs reward.verifiable.enabled=true")
    return _outcome_grpo(c.outcome, c.response_mask, c.index)


# ------------------------------------------------------------------------------------------------
# actors
# ------------------------------------------------------------------------------------------------


def resolve_model(spec: str, kind: str) -> str:
    """"tiny" -> the tiny model's dir (built/cached offline); a local dir as given; an HF id only
    if it is already in the local HF cache (nothing is downloaded at run time)."""
    if spec == "tiny":
        from rl_prm.tiny import judge_path, policy_path

        return str(policy_path() if kind == "policy" else judge_path())
    if spec == "world":
        if kind == "judge":
            from rl_prm.world.judge import judge_path as world_judge
            return str(world_judge())
        from rl_prm.world.policy import policy_path as world_policy
        return str(world_policy())
    if Path(spec).is_dir():
        if not (Path(spec) / "config.json").is_file():
            raise ValueError(f"model.{kind} {spec!r}: directory has no config.json (not an HF model dir)")
        return spec
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(spec, local_files_only=True)
    except Exception:  # noqa: BLE001 - any failure means: not available offline
        raise ValueError(f"model.{kind} {spec!r}: not a local model directory and not in the local HF cache "
                         "(rl-prm never downloads weights at run time; download it first)") from None


def _score_config_kwargs(cfg: Any) -> dict:
    p = cfg.reward.prm
    return dict(k=p.k, temperature=p.temperature, top_p=p.top_p, max_critique_tokens=p.max_critique_tokens,
                fallback_score=p.fallback_score, early_reject_threshold=p.early_reject_threshold,
                adaptive_k=p.adaptive_k, seed=cfg.run.seed)


class PRMClient:
    """The R-PRM worker actors (rl_prm.score.worker: restartable, retried, timeouts named) and
    scoring across them: items are split into contiguous shards, one per worker, scored concurrently."""

    def __init__(self, cfg: Any, judge_path: str, num_gpus: float):
        from rl_prm.score.scorer import ScoreConfig
        from rl_prm.score.worker import RPRMClient, start_rprm_worker

        p = cfg.reward.prm
        engine_kwargs = dict(max_model_len=p.max_model_len, kv_cache_gib=p.kv_cache_gib,
                             gpu_memory_utilization=p.gpu_memory_utilization, seed=cfg.run.seed)
        self.handles = [
            start_rprm_worker(judge_path, ScoreConfig(**_score_config_kwargs(cfg)), num_cpus=0,
                              num_gpus=num_gpus / p.num_workers, engine_kwargs=engine_kwargs,
                              ready_timeout=max(600.0, float(p.timeout_s)))
            for _ in range(p.num_workers)
        ]
        self.clients = [RPRMClient(h, timeout=float(p.timeout_s)) for h in self.handles]

    def score(self, items: list[dict]) -> list:
        if len(self.clients) == 1 or len(items) < 2:
            return self.clients[0].score(items)
        from concurrent.futures import ThreadPoolExecutor

        k = len(self.clients)
        size = -(-len(items) // k)
        shards = [items[i : i + size] for i in range(0, len(items), size)]
        with ThreadPoolExecutor(len(shards)) as pool:
            parts = list(pool.map(lambda cs: cs[0].score(cs[1]), zip(self.clients, shards)))
        return [r for part in parts for r in part]

    def set_seed(self, seed: int) -> None:
        """Critique seeds of the next run (the engine stays; only the content-derived seeds change)."""
        for c in self.clients:
            c.set_seed(seed)

    @property
    def retries(self) -> int:
        return sum(c.n_retries for c in self.clients)

    def shutdown(self) -> None:
        import ray

        for h in self.handles:
            try:
                ray.kill(h)
            except Exception:  # noqa: BLE001 - best effort at exit
                pass


# ------------------------------------------------------------------------------------------------
# the loop
# ------------------------------------------------------------------------------------------------


def _ray_init(cfg: Any) -> None:
    import ray

    if ray.is_initialized():
        return
    env = {k: os.environ[k] for k in ("WANDB_MODE", "RL_PRM_CACHE", "VLLM_CPU_KVCACHE_SPACE", "HF_HOME") if k in os.environ}
    env.update(VLLM_ALLOW_INSECURE_SERIALIZATION="1", TOKENIZERS_PARALLELISM="false",
               VLLM_LOGGING_LEVEL=os.environ.get("VLLM_LOGGING_LEVEL", "WARNING"))
    address = os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = dict(address=address, runtime_env={"env_vars": env}, log_to_driver=True,
                                  logging_level="ERROR")
    if address is None:
        kwargs.update(include_dashboard=False, num_cpus=max(2, os.cpu_count() or 2),
                      object_store_memory=256 * 1024**2)
    ray.init(**kwargs)


def _device_gpus(cfg: Any) -> int:
    if cfg.trainer.gpus_per_node:
        return int(cfg.trainer.gpus_per_node)
    return 1 if torch.cuda.is_available() and cfg.trainer.device != "cpu" else 0


def _verifiable(rows: list[dict], texts: list[str]) -> list[float]:
    from reward_fns.math_verify_reward import compute_score

    return [float(compute_score(r.get("source", "tiny_arith"), t, r["answer"])) for r, t in zip(rows, texts)]


def evaluate(rollout: Any, tokenizer: Any, rows: list[dict], cfg: Any) -> dict[str, float]:
    """Greedy (n=1) accuracy by the verifiable reward on held-out `rows`; with
    trainer.eval_samples = N > 0 also the mean accuracy of N samples per prompt at
    rollout.temperature (eval/sampled_accuracy, fixed seeds: the same draws at every eval)."""
    import ray
    from rl_prm.steps import split_steps

    ids = [prompt_ids(tokenizer, r, cfg.data.prompt_instruction) for r in rows]
    outs = ray.get(rollout.generate.remote(ids, n=1, temperature=0.0, top_p=1.0, max_tokens=cfg.rollout.max_tokens))
    acc = _verifiable(rows, [o.text for o in outs])
    lens = [len(o.response_ids) for o in outs]
    m = {"eval/accuracy": sum(acc) / len(acc), "eval/response_length": sum(lens) / len(lens),
         "eval/truncated_frac": sum(o.truncated for o in outs) / len(outs), "eval/n": float(len(outs)),
         "eval/steps_per_response": sum(len(split_steps(o.text)) for o in outs) / len(outs)}
    n = int(cfg.trainer.eval_samples)
    if n > 0:
        outs = ray.get(rollout.generate.remote(ids, n=n, temperature=cfg.rollout.temperature, top_p=cfg.rollout.top_p,
                                               max_tokens=cfg.rollout.max_tokens, seed=2**31 + int(cfg.run.seed)))
        sampled = _verifiable([rows[o.prompt_index] for o in outs], [o.text for o in outs])
        m["eval/sampled_accuracy"] = sum(sampled) / len(sampled)
        m["eval/sampled_steps_per_response"] = sum(len(split_steps(o.text)) for o in outs) / len(outs)
    return m


class Engines:
    """vLLM actors kept alive across several runs in one process (e.g. the arms of a comparison):
    each run gets the policy engine with its own starting weights pushed in, and shares an R-PRM
    worker when its judge and scoring settings are the same. Saves the engines' start-up per run.

        with Engines() as engines:
            for overrides in arms:
                train(load_recipe(path, overrides), engines=engines)
    """

    def __init__(self) -> None:
        self._rollouts: dict[tuple, Any] = {}
        self._prms: dict[tuple, PRMClient] = {}

    def rollout(self, cfg: Any, weights: str) -> Any:
        from rl_prm.generate import rollout_actor

        key = (cfg.data.max_prompt_tokens + cfg.rollout.max_tokens, cfg.rollout.kv_cache_gib,
               cfg.rollout.gpu_memory_utilization, _device_gpus(cfg))
        if key not in self._rollouts:
            self._rollouts[key] = rollout_actor(num_gpus=0.4 if key[-1] else 0).remote(
                weights, max_model_len=key[0], seed=cfg.run.seed, kv_cache_gib=key[1], gpu_memory_utilization=key[2])
        return self._rollouts[key]

    def prm(self, cfg: Any, judge_path: str) -> PRMClient:
        p = cfg.reward.prm
        scoring = {k: v for k, v in _score_config_kwargs(cfg).items() if k != "seed"}  # the seed is set per run
        key = (judge_path, tuple(sorted(scoring.items())), p.max_model_len, p.kv_cache_gib,
               p.gpu_memory_utilization, p.num_workers, _device_gpus(cfg))
        if key not in self._prms:
            self._prms[key] = PRMClient(cfg, judge_path, num_gpus=0.3 if key[-1] else 0)
        else:
            self._prms[key].set_seed(cfg.run.seed)
        return self._prms[key]

    def close(self) -> None:
        for prm in self._prms.values():
            prm.shutdown()
        for actor in self._rollouts.values():
            _kill(actor)
        self._prms, self._rollouts = {}, {}

    def __enter__(self) -> "Engines":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def train(cfg: Any, on_step: Optional[Callable[[int, dict], None]] = None,
          engines: Optional[Engines] = None) -> dict[str, Any]:
    """Run (or resume) the recipe `cfg` (rl_prm.config.load_recipe). Returns a summary dict.

    on_step(step, ctx): optional hook after each step's weight sync (tests use it to inspect the
    learner and the rollout actor: ctx = {"learner", "rollout", "metrics"}).
    engines: reuse the vLLM actors of an ``Engines`` (left running at the end); None = start
    this run's own and stop them at the end.
    """
    import ray

    from rl_prm import checkpoint as ckpt
    from rl_prm.config import run_dir_of, save_resolved, to_dict
    from rl_prm.credit import assign_credit
    from rl_prm.metrics import (SpikeDetector, hacking_monitors, prm_histograms, prm_metrics, prm_verdicts,
                                rl_metrics)
    from rl_prm.steps import batch_separator_mask, batch_step_token_ends
    from rl_prm.tracking import Tracker
    from rl_prm.update import Learner, LearnerConfig, make_batch

    t_start = time.time()
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")
    LOCAL_ESTIMATORS.get(cfg.algorithm.estimator)  # fail before starting anything
    random.seed(cfg.run.seed)
    torch.manual_seed(cfg.run.seed)

    # --- run dir, resume point ------------------------------------------------------------------
    run_dir = run_dir_of(cfg)
    ckpt_root = run_dir / "checkpoints"
    resume_from = ckpt.latest_checkpoint(ckpt_root) if cfg.trainer.resume else None
    start_step, run_id = 1, None
    if resume_from is not None:
        import json

        st = json.loads((resume_from / "state.json").read_text())
        start_step, run_id = int(st["step"]) + 1, st.get("run_id")
    if start_step > cfg.trainer.total_steps:
        print(f"run {run_dir} is already complete ({resume_from.name}); raise trainer.total_steps to continue, "
              "or pick a new run.name", flush=True)
        return {"run_dir": str(run_dir), "run_id": run_id, "start_step": start_step, "steps": [],
                "resumed_from": str(resume_from), "final_step": start_step - 1, "wall_s": time.time() - t_start,
                "checkpoint": str(resume_from)}
    save_resolved(cfg, run_dir)

    # --- data -----------------------------------------------------------------------------------
    train_rows = load_data(cfg.data.train, "train", cfg.data.train_limit, cfg.run.seed)
    test_rows = load_data(cfg.data.test, "test", cfg.data.test_limit, cfg.run.seed)

    # --- models and actors ----------------------------------------------------------------------
    policy_path = resolve_model(cfg.model.policy, "policy")
    ref_path = resolve_model(cfg.model.ref_policy, "ref_policy") if cfg.model.ref_policy else policy_path
    judge_path = resolve_model(cfg.model.judge, "judge") if cfg.reward.prm.enabled else None
    start_weights = str(resume_from / "model") if resume_from is not None else policy_path
    learner = Learner(start_weights, LearnerConfig(
        lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay, grad_clip=cfg.optim.grad_clip,
        micro_batch_size=cfg.optim.micro_batch_size, ppo_epochs=cfg.optim.ppo_epochs,
        warmup_steps=cfg.optim.warmup_steps, clip_ratio=cfg.algorithm.clip_ratio, kl_coef=cfg.algorithm.kl_coef,
        kl_type=cfg.algorithm.kl_type, entropy_coef=cfg.algorithm.entropy_coef,
        temperature=cfg.rollout.temperature, device=cfg.trainer.device, seed=cfg.run.seed,
    ), ref_policy=ref_path)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(policy_path)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if resume_from is not None:
        ckpt.load_checkpoint(resume_from, learner)

    tracker = Tracker(run_dir, project=cfg.trainer.project, name=cfg.run.name, config=to_dict(cfg),
                      loggers=list(cfg.trainer.logger), resume_id=run_id,
                      resume_step=start_step if run_id else None)
    where = (f"run dir {run_dir}  checkpoints {ckpt_root}  W&B run {tracker.run_id} "
             f"({os.environ.get('WANDB_MODE')}: {run_dir / 'wandb'})")
    print(("resuming at step %d from %s; " % (start_step, resume_from) if resume_from else "") + where, flush=True)

    startup = {"timing/startup_learner": time.time() - t_start}
    t0 = time.time()
    _ray_init(cfg)
    startup["timing/startup_ray"] = time.time() - t0
    own = engines is None
    engines = Engines() if own else engines
    rollout = engines.rollout(cfg, start_weights)
    prm = None
    try:
        t0 = time.time()
        ray.get(rollout.ready.remote())
        if not own:  # a shared engine holds the previous run's weights
            ray.get(rollout.load_weights.remote(list(learner.named_weights())))
        startup["timing/startup_rollout_engine"] = time.time() - t0
        if cfg.reward.prm.enabled:
            t0 = time.time()
            prm = engines.prm(cfg, judge_path)
            startup["timing/startup_prm_engine"] = time.time() - t0
        startup["timing/startup_total"] = time.time() - t_start
        print("startup: " + ", ".join(f"{k.split('_', 1)[1]} {v:.0f}s" for k, v in startup.items()), flush=True)

        # prompts: tokenise once, drop (and count) over-long ones
        train_ids = [prompt_ids(tokenizer, r, cfg.data.prompt_instruction) for r in train_rows]
        keep = [i for i, ids in enumerate(train_ids) if len(ids) <= cfg.data.max_prompt_tokens]
        if not keep:
            raise ValueError(f"every train prompt is longer than data.max_prompt_tokens={cfg.data.max_prompt_tokens}")
        n_long = len(train_ids) - len(keep)
        if n_long:
            tracker.warn(f"{n_long} train prompts longer than data.max_prompt_tokens were skipped", step=start_step)
        test_rows = [r for r in test_rows if len(prompt_ids(tokenizer, r, cfg.data.prompt_instruction)) <= cfg.data.max_prompt_tokens]

        if start_step == 1 and cfg.trainer.val_before_train:
            t0 = time.perf_counter()
            m0 = evaluate(rollout, tokenizer, test_rows, cfg)
            m0["timing/eval"] = time.perf_counter() - t0
            tracker.log(m0, step=0)
            print("eval before training: " + ", ".join(f"{k}={v:.3f}" for k, v in m0.items()), flush=True)

        spikes = SpikeDetector()
        summary: dict[str, Any] = {"run_dir": str(run_dir), "run_id": tracker.run_id, "start_step": start_step,
                                   "resumed_from": str(resume_from) if resume_from else None, "steps": []}
        from tqdm import tqdm

        bar = tqdm(range(start_step, cfg.trainer.total_steps + 1), initial=start_step - 1,
                   total=cfg.trainer.total_steps, desc="train", dynamic_ncols=True, file=sys.stderr)
        for step in bar:
            t_step = time.perf_counter()
            m: dict[str, Any] = {}
            # 1. generate ---------------------------------------------------------------------
            t0 = time.perf_counter()
            idx = [keep[i] for i in batch_indices(len(keep), step, cfg.rollout.prompts_per_step, cfg.run.seed)]
            rows = [train_rows[i] for i in idx]
            outs = ray.get(rollout.generate.remote(
                [train_ids[i] for i in idx], n=cfg.rollout.n, temperature=cfg.rollout.temperature,
                top_p=cfg.rollout.top_p, max_tokens=cfg.rollout.max_tokens, seed=rollout_seed(cfg, step)))
            m["timing/generate"] = time.perf_counter() - t0
            group = [o.prompt_index for o in outs]
            orow = [rows[o.prompt_index] for o in outs]
            responses = [o.response_ids for o in outs]
            texts = [o.text for o in outs]
            B = len(outs)
            T = max([len(r) for r in responses] + [1])
            response_mask = torch.zeros(B, T)
            for b, r in enumerate(responses):
                response_mask[b, : len(r)] = 1

            # 2. steps --------------------------------------------------------------------------
            t0 = time.perf_counter()
            step_ends, step_mask, spans = batch_step_token_ends(responses, tokenizer, [o.truncated for o in outs])
            S = step_ends.shape[1]

            # 3. R-PRM step scores (exactly the step texts credit uses) ---------------------------
            scores: list[list[Optional[float]]] = [[None] * sp.num_steps for sp in spans]
            if prm is not None:
                todo = [b for b in range(B) if spans[b].num_steps]
                results = prm.score([{"question": orow[b]["problem"], "steps": spans[b].texts} for b in todo]) if todo else []
                for b, res in zip(todo, results):
                    sc = list(res.step_scores)
                    scores[b] = (sc + [None] * spans[b].num_steps)[: spans[b].num_steps]
                m.update(_prm_stats(results))
                m["prm/worker_retries"] = float(prm.retries)
            m["timing/score"] = time.perf_counter() - t0

            # 4. verifiable reward --------------------------------------------------------------
            vr = _verifiable(orow, texts) if cfg.reward.verifiable.enabled else [0.0] * B

            # 5-6. credit and advantages --------------------------------------------------------
            t0 = time.perf_counter()
            step_scores = torch.zeros(B, S)
            scored = torch.zeros(B, S, dtype=torch.bool)
            for b, row in enumerate(scores):
                for k, s in enumerate(row):
                    if s is not None:
                        step_scores[b, k], scored[b, k] = float(s), True
            scored &= step_mask
            token_rewards = torch.zeros(B, T)
            if scored.any():
                cr = cfg.reward.credit
                token_rewards = assign_credit(step_scores, scored, step_ends, response_mask, mode=cr.mode,
                                              temperature=cr.temperature, clip_eta=cr.clip_eta, delta=cr.delta,
                                              score_map=cr.score_map)
            sep = batch_separator_mask(spans, T) if cfg.algorithm.zero_separator_adv else None
            outcome = torch.tensor(vr) if cfg.reward.verifiable.enabled else None
            adv = LOCAL_ESTIMATORS.get(cfg.algorithm.estimator)(
                CreditInputs(token_rewards, step_scores, scored, step_ends, response_mask, sep, outcome, group), cfg)
            m["timing/credit"] = time.perf_counter() - t0

            # 7. update ---------------------------------------------------------------------------
            t0 = time.perf_counter()
            batch = make_batch([o.prompt_ids for o in outs], responses, adv, pad_id)
            batch.rollout_logprobs = _pad([o.logprobs for o in outs], T)
            m.update(learner.update(batch))
            m["timing/update"] = time.perf_counter() - t0

            # 8. sync weights into the rollout engine ------------------------------------------
            t0 = time.perf_counter()
            ray.get(rollout.load_weights.remote(list(learner.named_weights())))
            m["timing/sync"] = time.perf_counter() - t0

            # 9. metrics, eval, checkpoint --------------------------------------------------------
            prm_return = (token_rewards * response_mask).sum(1)
            total = [float(prm_return[b]) + cfg.reward.verifiable.coef * vr[b] for b in range(B)]
            n_tokens = int(response_mask.sum().item())
            m.update(rl_metrics([len(r) for r in responses], cfg.rollout.max_tokens, total, group))
            m["reward/vr_mean"] = sum(vr) / B
            m["reward/prm_mean"] = float(prm_return.mean())
            m["critic/advantages_mean"] = float((adv * response_mask).sum() / max(1, n_tokens))
            m["critic/advantages_abs_max"] = float(adv.abs().max())
            m["response/truncated_frac"] = sum(o.truncated for o in outs) / B
            if prm is not None:
                m.update(prm_metrics(scores))
                m.update(prm_histograms(scores))
            m.update(hacking_monitors(texts, [sp.texts for sp in spans], prm_verdicts(scores) if prm else [None] * B, vr))
            if cfg.trainer.eval_every and (step % cfg.trainer.eval_every == 0 or step == cfg.trainer.total_steps):
                t0 = time.perf_counter()
                m.update(evaluate(rollout, tokenizer, test_rows, cfg))
                m["timing/eval"] = time.perf_counter() - t0
            if step == start_step:
                m.update(startup)
            m["timing/step"] = time.perf_counter() - t_step
            m["perf/throughput"] = n_tokens / max(1e-9, m["timing/generate"])
            m["perf/step_time"] = m["timing/step"]
            tracker.log(m, step=step)
            if step == start_step or step % max(1, cfg.trainer.eval_every or 1) == 0:
                tracker.log_rollouts(_rollout_rows(outs[: min(4, B)], orow, scores, vr), step=step)
            for w in spikes.update(m):
                tracker.warn(w, step=step)
            if on_step is not None:
                on_step(step, {"learner": learner, "rollout": rollout, "metrics": m})
            if (cfg.trainer.save_every and step % cfg.trainer.save_every == 0) or step == cfg.trainer.total_steps:
                ckpt.save_checkpoint(ckpt_root, step, learner, tokenizer, run_id=tracker.run_id,
                                     keep=cfg.trainer.keep_checkpoints)
            summary["steps"].append(step)
            bar.set_postfix(reward=f"{m.get('reward/mean', 0):.3f}", vr=f"{m['reward/vr_mean']:.2f}",
                            kl=f"{m.get('actor/kl', 0):.2e}", s=f"{m['timing/step']:.1f}")
        bar.close()
        summary["final_step"] = cfg.trainer.total_steps
        summary["wall_s"] = time.time() - t_start
        summary["checkpoint"] = str(ckpt.latest_checkpoint(ckpt_root))
        tracker.finish(0)
        return summary
    except BaseException:
        tracker.finish(1)
        raise
    finally:
        if own:
            engines.close()
            if not os.environ.get("RAY_ADDRESS"):
                ray.shutdown()


def _kill(actor: Any) -> None:
    import ray

    try:
        ray.get(actor.shutdown.remote(), timeout=30)
    except Exception:  # noqa: BLE001
        pass
    try:
        ray.kill(actor)
    except Exception:  # noqa: BLE001
        pass


def _pad(rows: list[list[float]], T: int) -> torch.Tensor:
    out = torch.full((len(rows), T), float("nan"))
    for b, r in enumerate(rows):
        if r:
            out[b, : len(r)] = torch.tensor(r[:T], dtype=torch.float32)
    return out


def _prm_stats(results: list) -> dict[str, float]:
    """Scorer cost and health: tokens, latency, verdict-parse fallbacks, failures, statuses."""
    if not results:
        return {}
    steps = [s for r in results for s in r.steps]
    gen = sum(r.generated_tokens for r in results)
    secs = sum(r.seconds for r in results)
    out = {
        "prm/generated_tokens": float(gen),
        "prm/prompt_tokens": float(sum(r.prompt_tokens for r in results)),
        "prm/seconds": float(secs),
        "prm/tokens_per_s": gen / secs if secs > 0 else 0.0,
        "prm/critiques": float(sum(s.n_samples for s in steps)),
        "prm/verdict_fallbacks": float(sum(s.n_fallback for s in steps)),
        "prm/verdict_failures": float(sum(getattr(s, "n_failed", 0) for s in steps)),
        "prm/steps_all_failed": float(sum(s.flag == "all_failed" for s in steps)),
        "prm/items_not_ok": float(sum(r.status != "ok" for r in results)),
    }
    n = sum(s.n_samples for s in steps)
    if n:  # fallback = critique without a verdict, scored by the fallback question (counted, documented)
        out["prm/verdict_fallback_rate"] = out["prm/verdict_fallbacks"] / n
        out["prm/verdict_failure_rate"] = out["prm/verdict_failures"] / n
    return out


def _rollout_rows(outs: list, rows: list[dict], scores: list, vr: list[float]) -> list[dict]:
    return [{"question": rows[i]["problem"], "answer": rows[i]["answer"], "response": o.text,
             "step_scores": scores[i], "vr": vr[i], "truncated": o.truncated} for i, o in enumerate(outs)]
