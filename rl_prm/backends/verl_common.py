"""What the verl backend modules share: recipe values as Hydra override values, model paths
verl loads, and the environment every verl run gets (rl_prm.verl_plugin imported everywhere)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterable

from rl_prm.models import BUILT, is_hub_id, resolve_model

REPO_ROOT = Path(__file__).resolve().parents[2]
CRITIC_ESTIMATORS = ("gae",)  # estimators that need verl's critic
PREPPED = ("gsm8k", "math")  # data specs read from `rl-prm data prep` parquet files on verl (others: generated)


def model_path(spec: str, which: str, fetch: bool = False) -> str:
    """What verl loads for a recipe model spec: tiny / world -> the dir built here (rl_prm.models, as the
    local backend); a hub id -> the id (verl's workers resolve it on each node, as transformers does), or
    with `fetch` its snapshot dir in this machine's HF cache (downloaded on first use); a local dir as given."""
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
    if s and _PLAIN.match(s) and s.lower() not in ("null", "true", "false") and not is_number(s):
        return s
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def is_number(s: str) -> bool:
    """True if `s` parses as a float."""
    try:
        float(s)
        return True
    except ValueError:
        return False


def flatten_keys(d: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    """(dotted key, leaf value) pairs of a nested dict."""
    if isinstance(d, dict) and d:
        for k, v in d.items():
            yield from flatten_keys(v, f"{prefix}.{k}" if prefix else str(k))
    elif prefix:  # (an empty `verl:` block yields nothing, not a bare '={}' override)
        yield prefix, d


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


def hydra_str(v: str) -> str:
    """A string that stays a string in hydra (quoted when it would parse as a number/bool/null)."""
    out = hydra_value(v)
    return out if out.startswith("'") or not is_number(v) else "'" + v + "'"
