"""Experiment tracking for the one-node loop: console + W&B (offline by default) + local JSONL.

    tracker = Tracker(run_dir, project="rl-prm", name="gsm8k-minform", config=cfg)
    tracker.log({"reward/mean": 0.31, "actor/kl": 0.002}, step=1)
    tracker.log({"prm/step_scores_hist": [0.9, 0.2, ...]}, step=1)   # list -> wandb.Histogram
    tracker.log_rollouts(rows, step=1)                                # W&B Table + rollouts.jsonl
    tracker.warn("actor/kl spiked", step=1)                           # console + W&B + warnings.jsonl
    tracker.finish()

What always lands in run_dir (whatever `loggers` says), one JSON object per line, flushed:
    metrics.jsonl    {"step": s, "time": t, key: value, ...}  scalars only, one line per log() call
    histograms.jsonl {"step": s, "key": k, "counts": [...], "edges": [...], "n": n} (32 bins)
    rollouts.jsonl   {"step": s, **row}
    warnings.jsonl   {"step": s, "time": t, "message": msg}
    tracker.json     {"run_id", "project", "name"}: pass `Tracker.saved_run_id(run_dir)` as
                     resume_id to continue the same W&B run after a restart.

W&B: `WANDB_MODE` defaults to "offline" unless the user configured an account (WANDB_MODE or
WANDB_API_KEY set), so a run never needs network or an account; the offline run is written to
run_dir/wandb/offline-run-*/ (`wandb sync` it later). If wandb.init fails (e.g. online with no
network), the run goes on with console + JSONL and the failure is recorded in warnings.jsonl.

Resume: Tracker(..., resume_id=ID) reopens W&B run ID (resume="allow") and keeps every JSONL
line with step < resume_step (given, or else the step of the first log call after resume); later
lines, written by the killed run after its last checkpoint, are dropped, so the resumed history
has no duplicate steps. (W&B itself ignores steps below the run's last logged step.)

Use one Tracker per run, in the driver process only.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import string
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from rl_prm.tracking_sinks import HIST_BINS, LOGGERS, ConsoleSink, Sink, json_default

# Keys shown on the console line, in this order, when present (others are in metrics.jsonl/W&B).
CONSOLE_KEYS: tuple[str, ...] = (
    "reward/mean",
    "reward/prm_mean",
    "reward/vr_mean",
    "eval/accuracy",
    "actor/kl",
    "actor/pg_loss",
    "actor/entropy",
    "prm/step_score_mean",
    "hack/steps_per_response",
    "response_length/mean",
    "perf/throughput",
    "perf/step_time",
)

_JSONL_FILES = ("metrics.jsonl", "histograms.jsonl", "rollouts.jsonl", "warnings.jsonl")


def _to_float(key: str, v: Any) -> float:
    if isinstance(v, bool):
        return float(v)
    try:
        return float(v)  # int, float, numpy scalar, 0-d / 1-element tensor
    except (TypeError, ValueError):
        raise TypeError(
            f"Tracker.log: metric {key!r} has a value of type {type(v).__name__} ({v!r:.80}); "
            "pass a number, or a list/array of numbers for a histogram"
        ) from None


def _split_values(metrics: dict[str, Any]) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Scalars vs histogram values (lists, tuples, arrays with more than one element)."""
    scalars: dict[str, float] = {}
    hists: dict[str, np.ndarray] = {}
    for k, v in metrics.items():
        if not isinstance(k, str):
            raise TypeError(f"Tracker.log: metric names must be str, got {k!r}")
        if isinstance(v, (list, tuple)) or (hasattr(v, "shape") and getattr(v, "ndim", 0) > 0 and getattr(v, "size", 1) != 1):
            arr = np.asarray([_to_float(k, x) for x in np.asarray(v, dtype=object).ravel()], dtype=float)
            hists[k] = arr[np.isfinite(arr)]
        else:
            scalars[k] = _to_float(k, v)
    return scalars, hists


# ---------------------------------------------------------------------------------------------
# Tracker
# ---------------------------------------------------------------------------------------------


class Tracker:
    """Console + W&B + JSONL experiment tracker (see module docstring)."""

    def __init__(
        self,
        run_dir: str | os.PathLike,
        project: str,
        name: str,
        config: dict | None = None,
        loggers: tuple[str, ...] | list[str] = ("console", "wandb"),
        resume_id: str | None = None,
        resume_step: int | None = None,
        console_keys: tuple[str, ...] = CONSOLE_KEYS,
    ):
        if isinstance(loggers, str):
            loggers = (loggers,)
        for lg in loggers:
            LOGGERS.get(lg)  # clear error naming an unknown logger
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.project, self.name = project, name
        self.console_keys = tuple(console_keys)
        self.config = _plain_config(config or {})
        self.resumed = resume_id is not None
        self.run_id = resume_id if resume_id is not None else _new_run_id()
        self._pending_truncate = self.resumed
        self._finished = False
        self._files: dict[str, Any] = {}
        self.dropped_lines = 0  # JSONL lines dropped on resume (duplicates of replayed steps)

        # bytes of each JSONL file written before this Tracker (the only lines a resume may drop)
        self._old_sizes = {f: (self.run_dir / f).stat().st_size for f in _JSONL_FILES if (self.run_dir / f).exists()}
        if not self.resumed:
            self._set_aside_old_files()
        elif resume_step is not None:
            self._truncate(int(resume_step))
        self._write_meta()

        self._sinks: list[Sink] = []
        for lg in loggers:
            try:
                sink = LOGGERS.get(lg)(run_dir=self.run_dir, project=project, name=name, run_id=self.run_id,
                                       config=self.config, console_keys=self.console_keys)
            except Exception as e:  # documented fallback: keep training with console + JSONL
                msg = f"logger {lg!r} failed to start ({type(e).__name__}: {e}); continuing without it"
                self._append("warnings.jsonl", {"step": int(resume_step or 0), "time": time.time(), "message": msg})
                print(f"WARNING: {msg}", file=sys.stderr, flush=True)
                continue
            self._sinks.append(sink)

    # --- public API ---------------------------------------------------------------------------

    @staticmethod
    def saved_run_id(run_dir: str | os.PathLike) -> str | None:
        """The run id recorded in run_dir/tracker.json (None if there is none)."""
        p = Path(run_dir) / "tracker.json"
        try:
            return json.loads(p.read_text())["run_id"]
        except (FileNotFoundError, KeyError, json.JSONDecodeError):
            return None

    @staticmethod
    def offline_runs(run_dir: str | os.PathLike) -> list[tuple[Path, str]]:
        """(directory, W&B run id) of each offline run under run_dir/wandb, oldest first. The id is read from
        the run's `run-<id>.wandb` file, not the directory name: W&B names the directory
        offline-run-<second>-<id> and appends -1, -2 when a second run starts within the same second."""
        files = sorted((Path(run_dir) / "wandb").glob("offline-run-*/run-*.wandb"))
        return [(f.parent, f.name[len("run-"):-len(".wandb")]) for f in files]

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Log scalars (to console, W&B, metrics.jsonl) and list/array values (as W&B histograms
        and histograms.jsonl)."""
        step = self._check_step(step)
        scalars, hists = _split_values(metrics)
        if scalars:
            self._append("metrics.jsonl", {"step": step, "time": time.time(), **scalars})
        for k, v in hists.items():
            if v.size:
                counts, edges = np.histogram(v, bins=HIST_BINS)
                self._append("histograms.jsonl", {"step": step, "key": k, "n": int(v.size),
                                                  "counts": counts.tolist(), "edges": edges.tolist()})
        for s in self._sinks:
            s.log(scalars, hists, step)

    def log_rollouts(self, rows: list[dict], step: int) -> None:
        """Sample rollouts (prompt, response, step_scores, critique, vr, ...: any JSON-able
        fields) as a W&B Table "rollouts" and lines of rollouts.jsonl."""
        step = self._check_step(step)
        if not isinstance(rows, (list, tuple)) or not all(isinstance(r, dict) for r in rows):
            raise TypeError("Tracker.log_rollouts expects a list of dicts (one per rollout)")
        if not rows:
            return
        for r in rows:
            self._append("rollouts.jsonl", {"step": step, **r})
        for s in self._sinks:
            try:
                s.log_rollouts(list(rows), step)
            except Exception as e:  # sample tables are a nicety: never stop training over one
                msg = f"{type(s).__name__}.log_rollouts failed ({type(e).__name__}: {e}); rows are in rollouts.jsonl"
                self._append("warnings.jsonl", {"step": step, "time": time.time(), "message": msg})
                print(f"WARNING step {step}: {msg}", file=sys.stderr, flush=True)

    def warn(self, msg: str, step: int) -> None:
        """A warning for a human: console (stderr), W&B ("warnings" table; an alert when online),
        warnings.jsonl."""
        step = self._check_step(step)
        self._append("warnings.jsonl", {"step": step, "time": time.time(), "message": str(msg)})
        if not any(isinstance(s, ConsoleSink) for s in self._sinks):
            print(f"WARNING step {step}: {msg}", file=sys.stderr, flush=True)
        for s in self._sinks:
            s.warn(str(msg), step)

    def finish(self, exit_code: int = 0) -> None:
        """Close W&B and the files. Idempotent."""
        if self._finished:
            return
        self._finished = True
        for s in self._sinks:
            try:
                s.finish(exit_code)
            except Exception as e:
                print(f"WARNING: {type(s).__name__}.finish failed: {e}", file=sys.stderr)
        for f in self._files.values():
            f.close()
        self._files.clear()

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.finish(exit_code=0 if exc_type is None else 1)

    # --- internals ----------------------------------------------------------------------------

    def _check_step(self, step: int) -> int:
        if self._finished:
            raise RuntimeError("Tracker is finished; create a new one (resume_id=...) to log more")
        if isinstance(step, bool) or not float(step).is_integer() or step < 0:
            raise ValueError(f"step must be a non-negative integer, got {step!r}")
        step = int(step)
        if self._pending_truncate:
            self._pending_truncate = False
            self._truncate(step)
        return step

    def _append(self, fname: str, obj: dict) -> None:
        f = self._files.get(fname)
        if f is None:
            path = self.run_dir / fname
            f = self._files[fname] = open(path, "a", encoding="utf-8")
            if path.stat().st_size and not _ends_with_newline(path):
                f.write("\n")  # a killed run's half-written line stays a line of its own
        f.write(json.dumps(obj, default=json_default) + "\n")
        f.flush()

    def _truncate(self, resume_step: int) -> None:
        """Drop the lines with step >= resume_step that earlier runs wrote to the JSONL files
        (atomic rewrite); lines this Tracker wrote are kept."""
        self._pending_truncate = False
        for fname, old_size in self._old_sizes.items():
            path = self.run_dir / fname
            if not path.exists():
                continue
            f = self._files.pop(fname, None)
            if f is not None:
                f.close()
            raw = path.read_bytes()
            old, new = raw[:old_size].decode("utf-8", errors="replace"), raw[old_size:].decode("utf-8")
            kept, dropped = [], 0
            for line in old.splitlines(keepends=True):
                try:
                    keep = int(json.loads(line)["step"]) < resume_step
                except (ValueError, KeyError, TypeError):
                    keep = False  # a partial last line from a killed run
                if keep:
                    kept.append(line if line.endswith("\n") else line + "\n")
                elif line.strip():
                    dropped += 1
            if dropped:
                tmp = path.with_suffix(path.suffix + ".tmp")
                tmp.write_text("".join(kept) + new, encoding="utf-8")
                os.replace(tmp, path)
                self.dropped_lines += dropped
                print(f"Tracker: resume at step {resume_step}: dropped {dropped} line(s) of {fname} "
                      "written after the checkpoint", file=sys.stderr, flush=True)

    def _set_aside_old_files(self) -> None:
        """A new (not resumed) run in a dir that holds an older run's JSONL: rename those files
        to <name>.<old_run_id>.jsonl so the new history starts empty and nothing is lost."""
        old = self.saved_run_id(self.run_dir) or time.strftime("%Y%m%d-%H%M%S")
        for fname in _JSONL_FILES:
            path = self.run_dir / fname
            if path.exists() and path.stat().st_size:
                dest = self.run_dir / f"{path.stem}.{old}.jsonl"
                os.replace(path, dest)
                print(f"Tracker: {path} belongs to an earlier run; moved to {dest.name}", file=sys.stderr)

    def _write_meta(self) -> None:
        meta = {"run_id": self.run_id, "project": self.project, "name": self.name}
        (self.run_dir / "tracker.json").write_text(json.dumps(meta, indent=1) + "\n")


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


def _new_run_id() -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


def _plain_config(config: Any) -> dict:
    """Recipe dataclasses / OmegaConf / dicts -> plain dict for W&B config."""
    if isinstance(config, DictConfig):
        return OmegaConf.to_container(config, resolve=True)  # type: ignore[return-value]
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    if isinstance(config, dict):
        return dict(config)
    raise TypeError(f"Tracker config must be a dict, dataclass or OmegaConf config, got {type(config).__name__}")
