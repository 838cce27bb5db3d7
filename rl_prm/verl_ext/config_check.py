"""Check hydra overrides against verl 0.9.1's trainer config without starting verl (CPU-only).

    cfg = compose(overrides)     # verl's full ppo_trainer config with the overrides applied
    validate(cfg)                # verl's own checks (main_ppo's validate_config) + dataclass configs

`compose` uses hydra's compose API on verl's config dir (`verl/trainer/config`, `ppo_trainer`) when
hydra-core >= 1.3 is importable (both stacks install it: pyproject pins omegaconf<2.4 for it).
Otherwise (an environment where pip resolved an old hydra-core) it applies hydra's override rules to verl's pre-composed
`_generated_ppo_trainer.yaml` (verl's CI keeps that file equal to the composition of
ppo_trainer.yaml): `key=v` needs an existing key (struct config), `+key=v` adds a key that must not
exist, `++key=v` sets or adds; values parse as YAML (null, true, 1e-6, [a,b], 'quoted'). Both raise
ValueError naming the bad override.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf

# verl and hydra are imported inside the functions: verl takes seconds (and loads its plugins, rl_prm's among
# them) and the verl backend's driver imports this module to check a command; hydra-core is optional (module doc).

_SENTINEL = object()


def verl_config_dir() -> Path:
    import verl  # seconds to import (module comment)

    return Path(verl.__file__).parent / "trainer" / "config"


def hydra_usable() -> bool:
    try:  # optional: an old or missing hydra-core (module doc)
        import hydra  # noqa: F401
        from hydra import compose as _c  # noqa: F401  (hydra >= 1.1)
    except Exception:  # noqa: BLE001 - old/broken hydra
        return False
    return True


def _parse_value(raw: str) -> Any:
    return OmegaConf.from_dotlist([f"v={raw}"])["v"] if raw != "" else ""


def apply_overrides(base: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """Hydra's override rules on a composed config (see the module doc)."""
    cfg = base.copy()
    OmegaConf.set_struct(cfg, True)
    for ov in overrides:
        if "=" not in ov:
            raise ValueError(f"override {ov!r}: expected key=value")
        key, raw = ov.split("=", 1)
        force = key.startswith("++")
        append = key.startswith("+") and not force
        key = key.lstrip("+")
        exists = OmegaConf.select(cfg, key, default=_SENTINEL, throw_on_missing=False) is not _SENTINEL
        if not exists:
            exists = _leaf_exists(cfg, key)
        if append and exists:
            raise ValueError(f"override {ov!r}: could not append, key {key!r} already exists (drop the '+')")
        if not (append or force) and not exists:
            raise ValueError(f"override {ov!r}: key {key!r} is not in verl's config (use '+{key}=...' to add it)")
        value = _parse_value(raw)
        OmegaConf.update(cfg, key, value, merge=False, force_add=append or force)
    return cfg


def _leaf_exists(cfg: DictConfig, key: str) -> bool:
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
    return isinstance(node, DictConfig) and leaf in list(node.keys())  # `in` is False for ??? values


def compose(overrides: Sequence[str], use_hydra: bool | None = None) -> DictConfig:
    """verl's `ppo_trainer` config with `overrides` applied (resolved); ValueError on a bad override.
    `hydra.*` overrides configure hydra itself (e.g. hydra.run.dir), not verl: left out here."""
    overrides = [o for o in overrides if not o.startswith("hydra.")]
    if use_hydra is None:
        use_hydra = hydra_usable()
    if use_hydra:  # hydra-core is optional (module doc)
        from hydra import compose as hydra_compose
        from hydra import initialize_config_dir

        with initialize_config_dir(config_dir=str(verl_config_dir()), version_base=None):
            try:
                cfg = hydra_compose(config_name="ppo_trainer", overrides=list(overrides))
            except Exception as e:  # hydra's override/config errors
                raise ValueError(str(e)) from e
    else:
        base = OmegaConf.load(verl_config_dir() / "_generated_ppo_trainer.yaml")
        cfg = apply_overrides(base, overrides)
    OmegaConf.resolve(cfg)
    return cfg


def instantiate(node: Any) -> Any:
    """Recursive `_target_` instantiation as hydra's `instantiate(node, _convert_="partial")` does it.

    Builds verl's config dataclasses (their __post_init__ checks run); used when hydra is unusable.
    """
    if isinstance(node, (DictConfig, ListConfig)):
        node = OmegaConf.to_container(node, resolve=True)
    if isinstance(node, dict):
        kwargs = {k: instantiate(v) for k, v in node.items() if k != "_target_"}
        if "_target_" not in node:
            return kwargs
        mod, _, name = str(node["_target_"]).rpartition(".")
        obj = importlib.import_module(mod)
        for part in name.split("."):
            obj = getattr(obj, part)
        try:
            return obj(**kwargs)
        except TypeError as e:
            raise ValueError(f"{node['_target_']}: {e}") from e
    if isinstance(node, list):
        return [instantiate(v) for v in node]
    return node


def validate(cfg: DictConfig) -> dict[str, Any]:
    """Run verl's main_ppo checks on a composed config; returns the instantiated dataclass configs.

    verl.utils.config.validate_config (what main_ppo runs first) plus the dataclass configs verl
    builds from this config (actor, rollout, critic when used, the judge's rollout, algorithm
    without our `rprm` block), the reward manager class and the custom reward function.
    """
    import verl.utils.config as vcfg  # seconds to import (module comment)
    from verl.trainer.ppo.utils import need_critic, need_reference_policy

    orig = vcfg.omega_conf_to_dataclass

    def _o2d(config, dataclass_type=None):
        if dataclass_type is None and isinstance(config, (DictConfig, dict)) and "_target_" in config and not hydra_usable():
            return instantiate(config)
        return orig(config, dataclass_type)

    vcfg.omega_conf_to_dataclass = _o2d
    try:
        vcfg.validate_config(cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    finally:
        vcfg.omega_conf_to_dataclass = orig
    out = {
        "actor": instantiate(cfg.actor_rollout_ref.actor),
        "rollout": instantiate(cfg.actor_rollout_ref.rollout),
    }
    # verl keeps cfg.reward a DictConfig (RewardConfig is never instantiated); check what it resolves:
    from verl.trainer.ppo.reward import get_custom_reward_fn, resolve_reward_manager_cls  # verl: module comment

    out["reward_manager"] = resolve_reward_manager_cls(cfg)
    out["custom_reward_fn"] = get_custom_reward_fn(cfg)
    if cfg.reward.reward_model.enable:
        out["reward_model_rollout"] = instantiate(cfg.reward.reward_model.rollout)
    algo = _without(cfg.algorithm, "rprm")
    out["algorithm"] = instantiate(algo)
    if need_critic(cfg):
        out["critic"] = instantiate(cfg.critic)
    return out


def _without(node: DictConfig, *keys: str) -> DictConfig:
    d = OmegaConf.to_container(node, resolve=True)
    for k in keys:
        d.pop(k, None)
    return OmegaConf.create(d)


__all__ = ["apply_overrides", "compose", "hydra_usable", "instantiate", "validate", "verl_config_dir", "ListConfig"]
