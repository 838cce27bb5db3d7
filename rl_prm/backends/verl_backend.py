"""verl backend (`trainer.backend: verl`): a recipe -> `python3 -m verl.trainer.main_ppo key=value ...`.

    cmd = build_verl_command(cfg)        # list[str], hydra overrides for verl 0.9.1's ppo_trainer
    result = train(cfg)                  # runs it (output streamed); result.exit_code is verl's
    python -m rl_prm.backends.verl_backend --recipe R [overrides] --print    # the command, shell-quoted

What the recipe turns into (verl keys in brackets):
  * data: parquet files from `rl-prm data prep` [data.train_files/val_files]: "gsm8k"/"math" ->
    $RL_PRM_DATA_DIR/{name}_{train,test}.parquet (default data/verl), or a path to a .parquet.
  * policy sampling [actor_rollout_ref.rollout.*], learner [actor_rollout_ref.actor.*] (AdamW lr,
    KL loss, entropy, clip ratio), estimator [algorithm.adv_estimator]: rl_prm's estimators
    (rl_prm.credit.ESTIMATORS, the very functions the local backend calls) read the recipe's credit
    and estimator knobs [+algorithm.rprm.*] (rl_prm.credit.EstimatorOptions).
  * R-PRM judge: served by verl as reward-model replicas (vLLM, generative) on their OWN resource
    pool [reward.reward_model.enable=True, enable_resource_pool=True, n_gpus_per_node, nnodes,
    model_path]; verl starts the replicas and a router, and hands the router address to our
    `rprm` reward manager [reward.reward_manager.name=rprm], which sends the R-PRM prompts there
    (rl_prm.score over HTTP) with the recipe's reward.prm knobs [+reward.rprm.*]
    (rl_prm.verl_ext.reward_manager.RewardManagerOptions). The verifiable reward is our
    reward_fns/math_verify_reward.py [reward.custom_reward_function].
  * rm_scores: each response's StepBatch row (rl_prm.credit.batch), encoded for rl_prm's estimators
    or as plain token rewards for verl's gae. With the judge on its own pool verl computes rewards
    while rolling out and keeps one scalar per response; our agent loop manager keeps the token
    rows [+actor_rollout_ref.rollout.agent.agent_loop_manager_class].
  * reward.prm.enabled=false: the same manager without a judge (the outcome only).
  * eval [trainer.val_before_train, trainer.test_freq; trainer.eval_samples -> val_kwargs n samples
    at the rollout temperature], data limits [data.train_max_samples / val_max_samples].
  * run dir, logging, checkpoints [trainer.*]; the recipe's free-form `verl:` mapping goes last
    (a key not in verl's schema needs a leading '+').

On GPUs, run the command on a GPU cluster (`ray job submit ... -- bash launch/grpo_rprm.sh RECIPE`).
A `trainer.device: cpu` recipe runs the same verl trainer on CPU through our verl platform "cpu"
(rl_prm.verl_ext.cpu_platform, selected with VERL_PLATFORM=cpu): the CPU keys and env come from
rl_prm.backends.verl_cpu, the run from rl_prm.backends.verl_run.run_cpu (docs/verl_cpu.md).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from rl_prm.backends.verl_common import (CRITIC_ESTIMATORS, PREPPED, REPO_ROOT, flatten_keys,  # noqa: F401
                                         hydra_value, model_path, verl_env)
from rl_prm.backends.verl_cpu import (cpu_overrides, generated_data_file, logical_gpus, on_cpu,  # noqa: F401
                                      wandb_run_id, with_generated_data, write_generated_data)
from rl_prm.backends.verl_run import check_cpu_stack, check_model, die_with_parent, preflight, run_cpu  # noqa: F401
from rl_prm.backends import RunResult
from rl_prm.config import load_recipe, run_dir_of, save_resolved
from rl_prm.credit import ESTIMATORS, EstimatorOptions

MATH_VERIFY_REWARD = REPO_ROOT / "reward_fns" / "math_verify_reward.py"
AGENT_LOOP_MANAGER = "rl_prm.verl_ext.agent_loop.RPRMAgentLoopManager"
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


def verl_overrides(cfg: Any) -> list[str]:
    """Hydra overrides (`key=value`, `+key=value` for keys verl's schema lacks) for a recipe."""
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
    add("data.train_max_samples", cfg.data.train_limit if cfg.data.train_limit else -1)
    add("data.val_max_samples", cfg.data.test_limit if cfg.data.test_limit else -1)
    # policy model, sampling, learner
    add("actor_rollout_ref.model.path", policy)
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
    # advantage estimation: our estimators read +algorithm.rprm.* (EstimatorOptions from the recipe)
    add("algorithm.adv_estimator", est)
    add("algorithm.use_kl_in_reward", False)  # KL goes in the actor loss (the encoding forbids in-reward KL)
    if est in ESTIMATORS:  # rl_prm's (and plugins'): they decode rl_prm's rm_scores encoding

        for k, v in flatten_keys(EstimatorOptions.from_recipe(cfg).to_dict()):
            add(f"+algorithm.rprm.{k}", v)
    if est in CRITIC_ESTIMATORS:
        add("algorithm.gamma", a.gamma)
        add("algorithm.lam", a.lam)
        add("critic.model.path", policy)
        add("critic.optim.lr", o.lr)
        add("critic.ppo_micro_batch_size_per_gpu", o.micro_batch_size)
    # rewards: our `rprm` manager writes every response's StepBatch row; options from the recipe
    from rl_prm.verl_ext.reward_manager import RewardManagerOptions  # imports verl (seconds, and its plugins)

    add("reward.custom_reward_function.path", str(MATH_VERIFY_REWARD))
    add("reward.custom_reward_function.name", "compute_score")
    add("reward.reward_manager.name", "rprm")
    for k, v in flatten_keys(RewardManagerOptions.from_recipe(cfg).to_dict()):
        add(f"+reward.rprm.{k}", v)
    if prm.enabled:
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
        if prm.dtype != "auto":  # auto: verl's default on GPUs; on CPU, cpu_overrides resolves it
            add("reward.reward_model.rollout.dtype", prm.dtype)
    add("+actor_rollout_ref.rollout.agent.agent_loop_manager_class", AGENT_LOOP_MANAGER)
    # evaluation
    add("trainer.val_before_train", t.val_before_train)
    if t.eval_samples > 0:  # verl evaluates one way: N samples at the rollout temperature (mean@N)
        add("actor_rollout_ref.rollout.val_kwargs.n", t.eval_samples)
        add("actor_rollout_ref.rollout.val_kwargs.do_sample", True)
        add("actor_rollout_ref.rollout.val_kwargs.temperature", r.temperature)
        add("actor_rollout_ref.rollout.val_kwargs.top_p", r.top_p)
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
    add("hydra.run.dir", str(run_dir / "hydra"))  # hydra's own files (else outputs/<date>/<time>/ in the cwd)

    out = [f"{k}={hydra_value(v)}" for k, v in ov]
    if on_cpu(cfg):  # issue #13: what verl needs on CPU (cpu_overrides); the recipe's verl block stays last
        out += cpu_overrides(cfg)
    extra = OmegaConf.to_container(cfg.verl, resolve=True) if cfg.get("verl") else {}
    for k, v in flatten_keys(extra):
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
        raise ValueError("verl backend: trainer.gpus_per_node must be >= 1 (actor ranks per node; on CPU, logical GPUs)")
    cfg = with_generated_data(cfg)  # issue #13: a task in data.train/test (world) -> parquet files in the run dir
    return [python, "-m", "verl.trainer.main_ppo", *verl_overrides(cfg)]


def train(cfg: Any) -> RunResult:
    """Run verl's trainer for a recipe; output is streamed; the result's exit_code is verl's (non-zero on failure).

    A recipe verl cannot run (unknown verl key, missing model, CPU recipe without the CPU stack)
    fails here with one line and exit code 2, before any process starts.
    """
    t0, run_dir = time.time(), run_dir_of(cfg)
    try:  # issue #13: checks before any worker starts
        if on_cpu(cfg) and "wandb" in cfg.trainer.logger:
            wandb_run_id(run_dir.resolve(), create=True)
        cmd = build_verl_command(cfg, python=sys.executable)
        preflight(cfg, cmd)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return RunResult(str(run_dir), exit_code=2)
    save_resolved(cfg, run_dir)
    if on_cpu(cfg):  # issue #13: CPU run (env, generated data, shm cleanup, quiet console)
        rc = run_cpu(cfg, cmd)
    else:
        print("rl-prm verl backend:", shlex.join(cmd), flush=True)
        proc = subprocess.Popen(cmd, env=verl_env(), cwd=str(REPO_ROOT), preexec_fn=die_with_parent)
        try:
            rc = proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            rc = proc.wait()
    steps = sorted(run_dir.glob("checkpoints/global_step_*"), key=lambda p: int(p.name.rsplit("_", 1)[1]))
    return RunResult(str(run_dir), exit_code=rc, run_id=wandb_run_id(run_dir.resolve()) if on_cpu(cfg) else None,
                     final_step=int(steps[-1].name.rsplit("_", 1)[1]) if steps and rc == 0 else None,
                     wall_s=time.time() - t0, checkpoint=str(steps[-1]) if steps else None)


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
    return train(cfg).exit_code


if __name__ == "__main__":
    raise SystemExit(main())
