"""Atomic build cache of the miniature world: $RL_PRM_CACHE/tiny/world/<name>-<hash>."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

from rl_prm.tiny.build import _key, tiny_cache_dir

WORLD_VERSION = "2"  # 2: models trained with the tokenizer as AutoTokenizer reloads it


def world_cache_dir() -> Path:
    return tiny_cache_dir() / "world"


def cached(name: str, key_parts: tuple, build: Callable[[Path], dict | None]) -> Path:
    """cache/<name>-<key>, built atomically (temp dir + rename) if missing. ``build(tmp)`` may return
    a dict of facts (measured accuracy, ...); it is stored with the build time in ``build.json``."""
    root = world_cache_dir()
    final = root / f"{name}-{_key('world', WORLD_VERSION, name, *key_parts)}"
    if (final / "READY").exists():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        t0 = time.perf_counter()
        facts = build(tmp) or {}
        facts = {"name": name, "build_s": round(time.perf_counter() - t0, 1), **facts}
        (tmp / "build.json").write_text(json.dumps(facts, indent=1) + "\n")
        (tmp / "READY").write_text("ok\n")
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished first
            if not (final / "READY").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def build_facts(path: Path) -> dict:
    """What the build of ``path`` recorded (build_s, measured accuracy, ...)."""
    f = Path(path) / "build.json"
    return json.loads(f.read_text()) if f.exists() else {}


def loaded_tokenizer(d: Path):
    """rl_prm.tiny's tokenizer as every loader sees it once saved: saved into ``d``, then reloaded with
    AutoTokenizer. (transformers 5 reloads it as Qwen2Tokenizer, whose pre-tokenizer splits digits;
    training on build_tokenizer()'s in-memory object would mismatch HF/vLLM inference.)"""
    from transformers import AutoTokenizer

    from rl_prm.tiny.build import build_tokenizer

    build_tokenizer(d)
    if not (d / "config.json").exists():  # the model type decides which class AutoTokenizer picks
        (d / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    tok = AutoTokenizer.from_pretrained(d)
    yes, no = tok.encode(" Yes", add_special_tokens=False), tok.encode(" No", add_special_tokens=False)
    if yes[0] == no[0]:
        raise RuntimeError(f"reloaded tokenizer maps ' Yes' and ' No' to the same first token ({yes} vs {no})")
    return tok
