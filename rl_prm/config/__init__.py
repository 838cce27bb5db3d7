"""Recipes: what a run is told to do, as a typed config checked before anything starts.

    from rl_prm.config import load_recipe, save_resolved, RecipeConfig
    cfg = load_recipe("recipes/tiny_cpu.yaml", ["rollout.n=8"])   # a typed, struct-mode DictConfig
    print(help_config())                                          # every key (rl-prm train --help-config)

Three layers, each importing only the ones above it:

    rl_prm.config.recipe   the schema: RecipeConfig, one dataclass per section, every key declared once with
                           its default, help and own checks (rl_prm.schema.knob: choices, bounds, backends)
    rl_prm.config.rules    the checks across keys: data files, keys switched off by others, what a backend
                           cannot honour
    rl_prm.config.load     load_recipe (schema <- YAML <- overrides, then the checks), save_resolved,
                           run_dir_of, to_dict

rl_prm.schema (knob, describe, check_values) is the knob machinery below all of them: the stages that own
a section (rl_prm.credit.config, rl_prm.update, rl_prm.score.types) declare their knobs with it without
importing this package.
"""

from rl_prm.config.load import load_recipe, run_dir_of, save_resolved, to_dict
from rl_prm.config.recipe import (
    BACKEND_NAMES,
    VERL_ONLY_ESTIMATORS,
    AlgorithmConfig,
    DataConfig,
    ModelConfig,
    PRMConfig,
    RecipeConfig,
    RewardConfig,
    RolloutConfig,
    RunConfig,
    TrainerConfig,
    VerifiableConfig,
    help_config,
    is_parquet,
)
from rl_prm.config.rules import backend_rules, check_data, check_inactive, gate_rules, verl_value

__all__ = [
    "BACKEND_NAMES",
    "VERL_ONLY_ESTIMATORS",
    "AlgorithmConfig",
    "DataConfig",
    "ModelConfig",
    "PRMConfig",
    "RecipeConfig",
    "RewardConfig",
    "RolloutConfig",
    "RunConfig",
    "TrainerConfig",
    "VerifiableConfig",
    "backend_rules",
    "check_data",
    "check_inactive",
    "gate_rules",
    "help_config",
    "is_parquet",
    "load_recipe",
    "run_dir_of",
    "save_resolved",
    "to_dict",
    "verl_value",
]
