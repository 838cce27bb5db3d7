"""Atomic, verified, resumable checkpoints for the one-node backend.

Layout (run_dir/checkpoints/):
    step_000004/
        model/          HF model dir (config, safetensors, tokenizer): loadable by HF and vLLM,
                        so `rl-prm eval` and the rollout engine can start straight from it
        learner.pt      optimizer + LR scheduler state
        rng.pt          python / numpy / torch RNG states
        state.json      {"step", "run_id", "time", "files": {path: {"size", "sha256"}}, ...} (written last)

Writing: everything goes into a temp dir `.tmp-step_000004-<pid>`, each file and the dir are
fsynced, and the dir is renamed into place with os.replace, so a kill at any moment leaves either
no checkpoint for that step or a complete one. A write that fails (full disk, unwritable dir)
raises CheckpointError naming the step, the directory and the reason; the temp dir is removed and
the previous checkpoints are untouched. The newest `keep` are kept: an older one is renamed to
`.old-step_...` before it is deleted, so a kill in the middle of pruning never leaves a half-deleted
checkpoint among the listed ones (the next save removes what is left).

Reading: `resume_point` takes the newest checkpoint that verifies (state.json parses, every file
it lists has its size and sha256); one that does not (truncated, corrupt, half-copied) is renamed
to `.corrupt-step_...` with a warning on stderr, and the one before it is used.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from rl_prm.digest import sha256_file

_STEP_RE = re.compile(r"^step_(\d+)$")


class CheckpointError(OSError):
    """A checkpoint could not be written (the previous ones are kept)."""


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def list_checkpoints(root: str | os.PathLike) -> list[tuple[int, Path]]:
    """Renamed-into-place checkpoints under `root` (with a state.json), oldest first, as (step, path)."""
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


def _manifest(d: Path) -> dict[str, dict]:
    """{relative path: {"size", "sha256"}} of every file under `d`, each fsynced."""
    out = {}
    for p in sorted(d.rglob("*")):
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            out[p.relative_to(d).as_posix()] = {"size": p.stat().st_size, "sha256": sha256_file(p)}
    return out


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(root: str | os.PathLike, step: int, learner: Any, tokenizer: Any = None, *,
                    run_id: str | None = None, keep: int = 2, extra: dict | None = None) -> Path:
    """Write checkpoint `step` atomically; prune to the newest `keep`. Returns its path.

    Raises CheckpointError (the previous checkpoints kept, no temp dir left) when it cannot be written."""
    root = Path(root)
    final = root / f"step_{step:06d}"
    tmp = root / f".tmp-step_{step:06d}-{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        for stale in [*root.glob(".tmp-step_*"), *root.glob(".old-step_*")]:  # left by a run killed mid-save
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir()
        learner.save_model(tmp / "model", tokenizer)
        torch.save(learner.state_dict(), tmp / "learner.pt")
        torch.save(rng_state(), tmp / "rng.pt")
        state = {"step": int(step), "run_id": run_id, "time": time.time(), **(extra or {}), "files": _manifest(tmp)}
        with open(tmp / "state.json", "w") as f:
            f.write(json.dumps(state, indent=1))
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
        if final.exists():  # same step saved again (e.g. a replayed step): swap it out
            old = root / f".old-step_{step:06d}-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(root)
    except Exception as e:  # OSError, and torch / safetensors' own errors for a failed write
        shutil.rmtree(tmp, ignore_errors=True)
        prev = [p.name for _, p in list_checkpoints(root)]
        reason = e.strerror if isinstance(e, OSError) and e.strerror else f"{type(e).__name__}: {e}"
        if isinstance(e, OSError) and e.filename:
            reason += f" ({e.filename})"
        raise CheckpointError(f"checkpoint step {step} was not written to {root}: {reason}; "
                              f"kept: {', '.join(prev) or 'no earlier checkpoint'}") from e
    for _, p in list_checkpoints(root)[:-keep] if keep > 0 else []:
        gone = root / f".old-{p.name}-{os.getpid()}"  # renamed first: a kill mid-delete leaves no half checkpoint listed
        try:
            os.replace(p, gone)
        except OSError:  # pruning never fails a save: delete in place, as before the rename
            gone = p
        shutil.rmtree(gone, ignore_errors=True)
    return final


def verify_checkpoint(path: str | os.PathLike) -> Optional[str]:
    """None when checkpoint `path` is complete, else what is wrong with it (one line).

    Every file listed in state.json must have its size and sha256; a checkpoint written before
    manifests existed needs model/, learner.pt and a state.json with a step."""
    path = Path(path)
    try:
        state = json.loads((path / "state.json").read_text())
        int(state["step"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"state.json unreadable ({type(e).__name__}: {e})"
    files = state.get("files")
    if not isinstance(files, dict):
        missing = [n for n in ("model", "learner.pt") if not (path / n).exists()]
        return f"missing {', '.join(missing)}" if missing else None
    for rel, meta in files.items():
        p = path / rel
        if not p.is_file():
            return f"{rel} is missing"
        if p.stat().st_size != meta.get("size"):
            return f"{rel} has {p.stat().st_size} bytes, expected {meta.get('size')}"
        if sha256_file(p) != meta.get("sha256"):
            return f"{rel} does not match its sha256"
    return None


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


def latest_valid_checkpoint(root: str | os.PathLike) -> Optional[Path]:
    """The newest checkpoint that verifies; newer ones that do not are renamed `.corrupt-step_...`
    (kept for a look, never resumed from) with a warning on stderr."""
    for step, p in reversed(list_checkpoints(root)):
        problem = verify_checkpoint(p)
        if problem is None:
            return p
        aside = p.with_name(f".corrupt-{p.name}-{int(time.time())}")
        try:
            os.replace(p, aside)
            where = f"moved to {aside.name}"
        except OSError as e:
            where = f"left in place ({e.strerror or e})"
        print(f"WARNING: checkpoint {p} is incomplete or corrupt ({problem}); {where}; "
              "resuming from the one before it", file=sys.stderr, flush=True)
    return None


def resume_point(root: str | os.PathLike, resume: bool) -> tuple[int, Optional[str], Optional[Path]]:
    """(first step to run, W&B run id to continue, checkpoint to start from) for a run's checkpoint dir."""
    latest = latest_valid_checkpoint(root) if resume else None
    if latest is None:
        return 1, None, None
    state = json.loads((latest / "state.json").read_text())
    return int(state["step"]) + 1, state.get("run_id"), latest
