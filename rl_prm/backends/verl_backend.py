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
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable

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


def model_path(spec: str, which: str) -> str:
    if spec == "tiny":
        from rl_prm import tiny

        return str(tiny.policy_path() if which == "policy" else tiny.judge_path())
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
    else:
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
    """Run verl's trainer for a recipe; output is streamed; returns its exit code (non-zero on failure)."""
    from rl_prm.config import run_dir_of, save_resolved

    cmd = build_verl_command(cfg, python=sys.executable)
    save_resolved(cfg, run_dir_of(cfg))
    print("rl-prm verl backend:", shlex.join(cmd), flush=True)
    proc = subprocess.Popen(cmd, env=verl_env(), cwd=str(REPO_ROOT))
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        return proc.wait()


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
