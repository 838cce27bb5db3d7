"""Atomic, resumable checkpoints for the one-node backend.

Layout (run_dir/checkpoints/):
    step_000004/
        model/          HF model dir (config, safetensors, tokenizer): loadable by HF and vLLM,
                        so `rl-prm eval` and the rollout engine can start straight from it
        learner.pt      optimizer + LR scheduler state
        rng.pt          python / numpy / torch RNG states
        state.json      {"step", "run_id", "time", ...} (written last inside the temp dir)

A checkpoint is written to a temp dir `.tmp-step_000004-<pid>` and renamed into place with
os.replace, so a kill at any moment leaves either no checkpoint for that step or a complete one;
`latest_checkpoint` only considers renamed dirs that have state.json. The newest `keep` are kept.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import time
from pathlib import Path
from typing import Any, Optional

import torch

_STEP_RE = re.compile(r"^step_(\d+)$")


def rng_state() -> dict[str, Any]:
    import numpy as np

    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def list_checkpoints(root: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints under `root`, oldest first, as (step, path)."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        m = _STEP_RE.match(p.name)
        if m and p.is_dir() and (p / "state.json").is_file():
            out.append((int(m.group(1)), p))
    return sorted(out)


def latest_checkpoint(root: str | os.PathLike) -> Optional[Path]:
    ckpts = list_checkpoints(root)
    return ckpts[-1][1] if ckpts else None


def save_checkpoint(root: str | os.PathLike, step: int, learner: Any, tokenizer: Any = None, *,
                    run_id: str | None = None, keep: int = 2, extra: dict | None = None) -> Path:
    """Write checkpoint `step` atomically; prune to the newest `keep`. Returns its path."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".tmp-step_*"):  # left by a run killed mid-save
        shutil.rmtree(stale, ignore_errors=True)
    final = root / f"step_{step:06d}"
    tmp = root / f".tmp-step_{step:06d}-{os.getpid()}"
    tmp.mkdir()
    learner.save_model(tmp / "model", tokenizer)
    torch.save(learner.state_dict(), tmp / "learner.pt")
    torch.save(rng_state(), tmp / "rng.pt")
    state = {"step": int(step), "run_id": run_id, "time": time.time(), **(extra or {})}
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    if final.exists():  # same step saved again (e.g. a replayed step): swap it out
        old = root / f".old-step_{step:06d}-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    for _, p in list_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(p, ignore_errors=True)
    return final


def load_checkpoint(path: str | os.PathLike, learner: Any = None, restore_rng: bool = True) -> dict[str, Any]:
    """Read state.json; restore the learner's optimizer/scheduler (its weights are loaded from
    path/model by the caller, usually by building the learner from that dir) and the RNGs."""
    path = Path(path)
    state = json.loads((path / "state.json").read_text())
    if learner is not None:
        learner.load_state_dict(torch.load(path / "learner.pt", map_location="cpu", weights_only=False))
    if restore_rng and (path / "rng.pt").is_file():
        set_rng_state(torch.load(path / "rng.pt", map_location="cpu", weights_only=False))
    return state


def resume_point(root: str | os.PathLike, resume: bool) -> tuple[int, Optional[str], Optional[Path]]:
    """(first step to run, W&B run id to continue, checkpoint to start from) for a run's checkpoint dir."""
    latest = latest_checkpoint(root) if resume else None
    if latest is None:
        return 1, None, None
    state = json.loads((latest / "state.json").read_text())
    return int(state["step"]) + 1, state.get("run_id"), latest
