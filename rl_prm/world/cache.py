"""Atomic build cache of the miniature world: $RL_PRM_CACHE/tiny/world/<name>-<hash>."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from rl_prm.tiny.build import _cached, tiny_cache_dir

WORLD_VERSION = "3"  # 3: ordinal-anchored task text, small numbers, judge fine-tuned from the policy


def world_cache_dir() -> Path:
    return tiny_cache_dir() / "world"


def cached(name: str, key_parts: tuple, build: Callable[[Path], dict | None]) -> Path:
    """world_cache_dir()/<name>-<key>, built atomically if missing (rl_prm.tiny.build._cached);
    ``build(tmp)`` may return a dict of facts, stored with the build time in ``build.json``."""
    from rl_prm.world.tasks import PROBLEM_SPEC

    return _cached(name, ("world", WORLD_VERSION, PROBLEM_SPEC, *key_parts), build, root=world_cache_dir())


def set_build_threads() -> None:
    """Builds run alone: let torch use the machine's cores (at most 4; small matrices)."""
    import os

    import torch

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))


def build_facts(path: Path) -> dict:
    """What the build of ``path`` recorded (build_s, measured accuracy, ...)."""
    f = Path(path) / "build.json"
    return json.loads(f.read_text()) if f.exists() else {}


def loaded_tokenizer(d: Path):
    """rl_prm.tiny's tokenizer as every loader sees it once saved (build_tokenizer already returns
    the AutoTokenizer reload: transformers 5 reloads it as Qwen2Tokenizer, which splits digits),
    saved into ``d``."""
    from rl_prm.tiny.build import build_tokenizer

    return build_tokenizer(d)
