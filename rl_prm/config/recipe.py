"""The recipe's schema: one dataclass per section (TRL style), every knob declared once with its help.

    RecipeConfig            the whole recipe: run, model, data, rollout, reward, algorithm, optim, trainer, verl
    describe(RecipeConfig)  every key, its type, default and help (`help_config`, rl-prm train --help-config)

A knob (rl_prm.schema.knob) carries its own checks: type, `choices` (a tuple, or a registry's names
read when checked: estimator, credit mode, score map, KL type, dataset, gate, logger), numeric bounds
and the `backends` that honour it. Checks across keys are in rl_prm.config.rules; loading is
rl_prm.config.load.

Sections whose knobs a stage owns are declared there and composed here: reward.prm extends
rl_prm.score.types.ScoringOptions, reward.credit is rl_prm.credit.config.CreditConfig, optim is
rl_prm.update.OptimConfig and algorithm extends rl_prm.update.LossConfig. Both backends read the
same RecipeConfig; `verl` is a free-form mapping of extra hydra overrides (verl backend only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from omegaconf import MISSING

from rl_prm.credit.config import CreditConfig
from rl_prm.credit.estimators import ESTIMATORS
from rl_prm.schema import describe, knob
from rl_prm.score.gate import GATES
from rl_prm.score.types import ScoringOptions
from rl_prm.tasks import TASKS
from rl_prm.update import LossConfig, OptimConfig

BACKEND_NAMES = ("local", "verl")
VERL_ONLY_ESTIMATORS = ("gae",)  # verl's built-in per-token estimator (needs a critic); rl_prm's are in ESTIMATORS


def _estimators() -> list[str]:
    return ESTIMATORS.names() + list(VERL_ONLY_ESTIMATORS)


def _datasets() -> list[str]:
    return TASKS.names()


def is_parquet(v: Any) -> bool:
    return isinstance(v, str) and v.endswith(".parquet")


@dataclass
class RunConfig:
    """Run identity and where outputs go: <output_dir>/<name>/ holds config.yaml, checkpoints/, metrics, W&B."""

    name: str = knob(MISSING, "run name (required): also the W&B run name and the run dir name")
    output_dir: str = knob("runs", "parent directory of run dirs")
    seed: int = knob(0, "seeds prompt order, rollout sampling, the learner and the judge's critiques")


@dataclass
class ModelConfig:
    """Which models to load: a name built offline (tiny, world), a local HF model dir, or a hub id."""

    policy: str = knob("tiny", "policy: tiny (random plumbing model) | world (the miniature world's SFT policy) | "
                       "a local model dir | an HF hub id")
    judge: str = knob("tiny", "R-PRM judge: tiny | world | oracle (the train task's step checker as the step scorer: "
                      "P(Yes) 1 for a right step, 0 for a wrong one; a task with a checker such as world, local backend only) | a local model dir | "
                      "an HF hub id")
    ref_policy: Optional[str] = knob(None, "frozen KL reference; null = the initial policy weights", backends=("local",))


@dataclass
class DataConfig:
    """Training and held-out prompts."""

    train: str = knob("tiny_arith", "training problems: a dataset name or a path to a verl parquet file",
                      choices=_datasets, choices_help="| *.parquet",
                      accept=is_parquet)
    test: str = knob("tiny_arith", "held-out problems for eval (accuracy by the verifiable reward); same choices",
                     choices=_datasets, choices_help="| *.parquet",
                      accept=is_parquet)
    train_limit: Optional[int] = knob(None, "use at most this many train problems (null = all)", gt=0)
    test_limit: Optional[int] = knob(64, "evaluate on at most this many test problems (null = all)", gt=0)
    max_prompt_tokens: int = knob(512, "prompts longer than this after the chat template are skipped (counted)", gt=0)
    prompt_instruction: str = knob("Let's think step by step and output the final answer within \\boxed{}.",
                                   "appended to each question (verl reads prompts from parquet: `rl-prm data prep`)",
                                   backends=("local",))


@dataclass
class RolloutConfig:
    """Policy sampling (vLLM)."""

    n: int = knob(4, "samples per prompt (the group of the RLOO/GRPO baselines)", gt=0)
    temperature: float = knob(1.0, "sampling temperature", ge=0)
    top_p: float = knob(1.0, "nucleus sampling", gt=0, le=1)
    max_tokens: int = knob(256, "max response tokens; longer responses are truncated (flagged)", gt=0)
    prompts_per_step: int = knob(8, "prompts per training step (batch = prompts_per_step x n responses)", gt=0)
    kv_cache_gib: float = knob(1.0, "CPU: KV cache of the policy engine in GiB (fractions allowed; resident memory of its "
                                "worker process)", gt=0)
    gpu_memory_utilization: float = knob(0.4, "GPU: fraction of GPU memory for the policy engine", gt=0, le=1)


@dataclass
class PRMConfig(ScoringOptions):
    """The R-PRM step scorer (frozen generative judge; K critiques per step, P(Yes) averaged)."""

    enabled: bool = knob(True, "false = verifiable reward only (no judge engine is started)")
    timeout_s: int = knob(600, "seconds one scoring call may take; then it fails with a TimeoutError naming it", gt=0)
    num_workers: int = knob(1, "R-PRM worker actors, each with its own judge engine, scoring whole questions side by "
                            "side (on CPU each gets cores/num_workers threads); verl: the judge replicas are placed by "
                            "reward.reward_model.* in the verl: section", gt=0, backends=("local",))
    stream: bool = knob(False, "score each prompt's responses as soon as its n samples finish generating, while the "
                        "rest of the batch still generates (same scores as scoring the whole batch after it)",
                        backends=("local",))
    gate: str = knob("none", "which responses the judge sees: none (all) | answer_correct (only those whose "
                     "verifiable reward says right; every step of a wrong answer gets P(Yes) = 0, the score map's "
                     "floor, counted in prm/gated_responses; needs the verifiable reward and a min-like credit mode: "
                     "docs/protocols.md)", choices=lambda: GATES.names())
    kv_cache_gib: float = knob(1.0, "CPU: KV cache of the judge engine in GiB (fractions allowed)", gt=0)
    gpu_memory_utilization: float = knob(0.3, "GPU: fraction of GPU memory for the judge engine", gt=0, le=1)
    max_model_len: int = knob(4096, "judge context (prompt with all previous steps + critique)", gt=0)
    dtype: str = knob("auto", "judge engine dtype: auto (CPU: bfloat16 where the CPU computes it natively, AVX512-BF16 "
                      "or AMX, else float32; GPU: the model's own) | float32 | bfloat16 | float16",
                      choices=("auto", "float32", "bfloat16", "float16"))


@dataclass
class VerifiableConfig:
    """Outcome reward from the \\boxed{} answer (math-verify)."""

    enabled: bool = knob(True, "add the verifiable (outcome) reward")
    coef: float = knob(1.0, "its weight relative to the process reward (a multiple of 0.25 times the 0/1 reward "
                       "must stay within [-4, 4] on verl)")


@dataclass
class RewardConfig:
    """Rewards: R-PRM step scores (prm), their credit assignment (credit), the verifiable reward."""

    prm: PRMConfig = knob(factory=PRMConfig)
    credit: CreditConfig = knob(factory=CreditConfig)
    verifiable: VerifiableConfig = knob(factory=VerifiableConfig)


@dataclass
class AlgorithmConfig(LossConfig):
    """Advantage estimation (rl_prm.credit.estimators) and the policy loss."""

    estimator: str = knob("rprm_rloo", "rprm_rloo (PURE RLOO; with reward.prm.enabled=false the VR-only "
                          "baseline) | rprm_grpo (process GRPO) | outcome_grpo (GRPO on the verifiable reward) | "
                          "gae (verl only, with a critic)", choices=_estimators)
    whiten: bool = knob(True, "whiten advantages over the batch (separator and padding tokens excluded)")
    zero_separator_adv: bool = knob(True, "zero the advantages of step-separator tokens (PURE)")
    gamma: float = knob(1.0, "GAE discount", ge=0, le=1, backends=("verl",))
    lam: float = knob(1.0, "GAE lambda", ge=0, le=1, backends=("verl",))


@dataclass
class TrainerConfig:
    """Loop control, logging and placement."""

    backend: str = knob("local", "local (one node, Ray actors, CPU or 1 GPU) | verl", choices=BACKEND_NAMES)
    total_steps: int = knob(20, "training steps (one batch of rollouts each)", gt=0)
    eval_every: int = knob(5, "evaluate every N steps (and at the end); 0 = never", ge=0)
    val_before_train: bool = knob(False, "also evaluate the starting policy (logged at step 0), as verl's option")
    eval_samples: int = knob(0, "also sample N responses per test prompt at rollout.temperature: "
                             "eval/sampled_accuracy (mean@N)", ge=0)
    pipeline: bool = knob(False, "generate step t+1's rollouts while step t is scored and learned from (one step "
                          "of policy lag; the PPO ratio is taken against the engine's sampling log-probs)",
                          backends=("local",))
    save_every: int = knob(5, "checkpoint every N steps (and at the end); 0 = only at the end", ge=0)
    keep_checkpoints: int = knob(2, "keep the newest N checkpoints", gt=0)
    resume: bool = knob(True, "continue from the newest complete checkpoint in the run dir")
    logger: list[str] = knob(factory=lambda: ["console", "wandb"], help="console | wandb (offline by default); the run dir's JSONL "
                             "files (metrics.jsonl, ...) are always written", choices=("console", "wandb"))
    project: str = knob("rl-prm", "W&B project")
    nnodes: int = knob(1, "nodes", gt=0, backends=("verl",))
    gpus_per_node: int = knob(0, "GPUs per node (0 = CPU)", ge=0)
    device: str = knob("auto", "learner device: auto | cpu | cuda", choices=("auto", "cpu", "cuda"))


@dataclass
class RecipeConfig:
    run: RunConfig = knob(factory=RunConfig)
    model: ModelConfig = knob(factory=ModelConfig)
    data: DataConfig = knob(factory=DataConfig)
    rollout: RolloutConfig = knob(factory=RolloutConfig)
    reward: RewardConfig = knob(factory=RewardConfig)
    algorithm: AlgorithmConfig = knob(factory=AlgorithmConfig)
    optim: OptimConfig = knob(factory=OptimConfig)
    trainer: TrainerConfig = knob(factory=TrainerConfig)
    verl: dict[str, Any] = knob(factory=dict, help="free-form verl hydra overrides (verl backend only)")


def help_config() -> str:
    """Every recipe key with its type, default and help (`rl-prm train --help-config`)."""
    return describe(RecipeConfig)
