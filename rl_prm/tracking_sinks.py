"""Where `rl_prm.tracking.Tracker` sends metrics besides the JSONL files: the console and W&B.

`trainer.logger` names entries of LOGGERS; a new sink is one registered class with log /
log_rollouts / warn / finish, built from the run's plain values as keywords (each takes what it needs):

    sink = LOGGERS.get("wandb")(run_dir=Path(...), project="rl-prm", name="gsm8k-minform", run_id="k3v9x2ab",
                                config={...}, console_keys=("reward/mean", ...))
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from rl_prm.registry import Registry

LOGGERS: Registry[Callable[..., "Sink"]] = Registry("logger")
HIST_BINS = 32


def json_default(o: Any) -> Any:
    """JSON for numpy and torch values (what json.dumps cannot write itself); anything else as str."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if hasattr(o, "tolist"):  # torch tensors
        return o.tolist()
    return str(o)


def _fmt(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
        return f"{v:.3e}"
    return f"{v:.4g}"


# ---------------------------------------------------------------------------------------------
# Sinks: console, wandb (optional, chosen by `loggers`); JSONL is always on (in Tracker itself)
# ---------------------------------------------------------------------------------------------


class Sink:
    """What Tracker calls besides writing the JSONL files (every method optional)."""

    def log(self, scalars: dict[str, float], hists: dict[str, np.ndarray], step: int) -> None: ...
    def log_rollouts(self, rows: list[dict], step: int) -> None: ...
    def warn(self, msg: str, step: int) -> None: ...
    def finish(self, exit_code: int = 0) -> None: ...


@LOGGERS.register("console")
class ConsoleSink(Sink):
    """One compact line per log() call: `step 12 | reward/mean 0.31 | actor/kl 2.1e-03 | ...`
    (``console_keys`` first, in their order)."""

    def __init__(self, *, console_keys: tuple[str, ...], max_items: int = 8, **_: Any):
        self.keys, self.max_items = tuple(console_keys), max_items

    def log(self, scalars, hists, step):
        shown = [k for k in self.keys if k in scalars]
        if not shown:  # e.g. an eval-only call: show what there is
            shown = sorted(scalars)
        shown = shown[: self.max_items]
        if not shown:
            return
        parts = [f"{k} {_fmt(scalars[k])}" for k in shown]
        print(f"step {step} | " + " | ".join(parts), flush=True)

    def log_rollouts(self, rows, step):
        pass

    def warn(self, msg, step):
        print(f"WARNING step {step}: {msg}", file=sys.stderr, flush=True)


@LOGGERS.register("wandb")
class WandbSink(Sink):
    """W&B run ``run_id`` in run_dir (offline unless the user configured an account)."""

    def __init__(self, *, run_dir: Path, project: str, name: str, run_id: str, config: dict, **_: Any):
        import wandb  # seconds to import: only when this logger is chosen

        if not os.environ.get("WANDB_API_KEY"):
            os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_SILENT", "true")
        self.wandb = wandb
        self.run = wandb.init(
            project=project,
            name=name,
            id=run_id,
            resume="allow",
            dir=str(run_dir),
            config=config,
        )
        self._warnings: list[list[Any]] = []

    def log(self, scalars, hists, step):
        data: dict[str, Any] = dict(scalars)
        for k, v in hists.items():
            if v.size:
                data[k] = self.wandb.Histogram(v.tolist(), num_bins=HIST_BINS)
        if data:
            self.run.log(data, step=step)

    def log_rollouts(self, rows, step):
        columns: list[str] = []
        for r in rows:
            columns += [c for c in r if c not in columns]
        data = [[_table_cell(r.get(c)) for c in columns] for r in rows]
        for j in range(len(columns)):  # W&B Tables need one type per column: mixed -> str
            kinds = {type(row[j]) for row in data if row[j] is not None}
            if len(kinds) > 1 and not kinds <= {int, float, bool}:
                for row in data:
                    row[j] = None if row[j] is None else str(row[j])
        self.run.log({"rollouts": self.wandb.Table(columns=["step"] + columns, data=[[step] + d for d in data])}, step=step)

    def warn(self, msg, step):
        self.wandb.termwarn(f"step {step}: {msg}")
        self._warnings.append([step, msg])
        self.run.log({"warnings": self.wandb.Table(columns=["step", "message"], data=list(self._warnings))}, step=step)
        if not self.run.offline:
            try:  # rate-limited by W&B itself (wait_duration)
                self.run.alert(title="rl-prm warning", text=f"step {step}: {msg}",
                               level=self.wandb.AlertLevel.WARN, wait_duration=300)
            except Exception:  # an alert is a nicety; never kill training over it
                pass

    def finish(self, exit_code=0):
        self.run.finish(exit_code=exit_code)


def _table_cell(v: Any) -> Any:
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return json.dumps(v, default=json_default)


