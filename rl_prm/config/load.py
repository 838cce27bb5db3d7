"""Loading a recipe: schema defaults <- YAML file <- `key=value` overrides, checked before anything starts.

    cfg = load_recipe("recipes/tiny_cpu.yaml", ["rollout.n=8", "trainer.total_steps=50"])
    cfg.rollout.n            # 8 (typed attribute access; an OmegaConf DictConfig in struct mode)
    save_resolved(cfg, run_dir)   # writes run_dir/config.yaml (what actually ran)
    run_dir_of(cfg)               # <run.output_dir>/<run.name>
    to_dict(cfg)                  # a plain dict (W&B config, JSON)

`load_recipe` fails with one message naming the problem: a YAML syntax error (file, line, column), an
unknown or mistyped key, a value outside its choices or range (the knobs of rl_prm.config.recipe), a key
the chosen backend cannot honour or a combination of keys that does not work (rl_prm.config.rules), and
a key set in the recipe that has no effect given the rest of it (e.g. `reward.prm.k` with
`reward.prm.enabled: false`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from rl_prm.config.recipe import RecipeConfig
from rl_prm.config.rules import backend_rules, check_data, check_inactive
from rl_prm.schema import check_values


def _key_of(err: OmegaConfBaseException) -> str:
    full = getattr(err, "full_key", None)
    if full:
        return str(full)
    key = getattr(err, "key", None)
    return str(key) if key is not None else "?"


def _leaves(node: Any, prefix: str = "") -> list[str]:
    """Dotted keys of the leaves of a mapping (the `verl` section counts as one key)."""
    if isinstance(node, (DictConfig, dict)) and prefix != "verl":
        out = []
        for k in node.keys():
            out += _leaves(node[k] if isinstance(node, dict) else node._get_node(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    return [prefix]


def _load_yaml(path: str | os.PathLike, src: str) -> DictConfig:
    if not Path(path).is_file():
        raise ValueError(f"recipe {src}: file not found")
    try:
        file_cfg = OmegaConf.load(path)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ValueError(f"recipe {src}: YAML syntax error{where}: {problem}") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"recipe {src}: not UTF-8 text (byte {e.start})") from None
    if not isinstance(file_cfg, DictConfig):
        raise ValueError(f"recipe {src}: top level must be a mapping of sections")
    return file_cfg


def load_recipe(path: str | os.PathLike | None, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Schema <- YAML file <- `key=value` overrides; returns a typed, struct-mode DictConfig.

    Every problem raises ValueError with one line naming it (see the module doc). `path` None =
    schema defaults only (run.name must then come from an override).
    """
    src = str(path) if path is not None else "(defaults)"
    schema = OmegaConf.structured(RecipeConfig)
    explicit: set[str] = set()
    try:
        layers = [schema]
        if path is not None:
            file_cfg = _load_yaml(path, src)
            explicit.update(_leaves(file_cfg))
            layers.append(file_cfg)
        merged = OmegaConf.merge(*layers)
        for ov in overrides:
            if "=" not in ov:
                raise ValueError(f"override {ov!r}: expected key=value")
            key = ov.split("=", 1)[0].strip().lstrip("+")
            if key.split(".")[0] != "verl" and not _has_key(merged, key):
                raise ValueError(f"recipe {src}: unknown key {key!r} (override {ov!r})")
            explicit.add(key if key.split(".")[0] != "verl" else "verl")
        if overrides:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist([o.lstrip("+") for o in overrides]))
    except (ConfigKeyError, ConfigAttributeError) as e:
        raise ValueError(f"recipe {src}: unknown key {_key_of(e)!r}") from None
    except ValidationError as e:
        raise ValueError(f"recipe {src}: bad value for key {_key_of(e)!r}: {str(getattr(e, 'msg', e)).splitlines()[0]}") from None
    except OmegaConfBaseException as e:  # pragma: no cover - other omegaconf errors
        raise ValueError(f"recipe {src}: {str(e).splitlines()[0]}") from None
    if OmegaConf.is_missing(merged.run, "name"):
        raise ValueError(f"recipe {src}: run.name is required (set it in the recipe or pass run.name=...)")
    OmegaConf.set_struct(merged, True)
    try:
        check_values(merged, RecipeConfig)
        check_data(merged)
        check_inactive(merged, explicit)
        backend_rules(merged)
    except ValueError as e:
        raise ValueError(f"recipe {src}: {e}") from None
    return merged


def _has_key(cfg: DictConfig, key: str) -> bool:
    """`key` (dotted) exists in cfg, whatever its value (None and ??? included)."""
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, DictConfig) or part not in node.keys():
            return False
        node = node._get_node(part)
    return True


def to_dict(cfg: DictConfig) -> dict:
    """Plain dict (for W&B config / JSON)."""
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def run_dir_of(cfg: DictConfig) -> Path:
    return Path(cfg.run.output_dir) / cfg.run.name


def save_resolved(cfg: DictConfig, run_dir: str | os.PathLike) -> Path:
    """Write the resolved recipe to run_dir/config.yaml (atomically) and return its path."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    out = run_dir / "config.yaml"
    tmp = out.with_suffix(".yaml.tmp")
    tmp.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    os.replace(tmp, out)
    return out
