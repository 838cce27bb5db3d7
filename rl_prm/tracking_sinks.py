"""Where `rl_prm.tracking.Tracker` sends metrics besides the JSONL files: the console and W&B.

`trainer.logger` names entries of LOGGERS; a new sink is one registered class with log /
log_rollouts / warn / finish.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from rl_prm.registry import Registry

if TYPE_CHECKING:
    from rl_prm.tracking import Tracker

LOGGERS: Registry[Callable[..., "_Sink"]] = Registry("logger")
HIST_BINS = 32


def _json_default(o: Any) -> Any:
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


class _Sink:
    def log(self, scalars: dict[str, float], hists: dict[str, np.ndarray], step: int) -> None: ...
    def log_rollouts(self, rows: list[dict], step: int) -> None: ...
    def warn(self, msg: str, step: int) -> None: ...
    def finish(self, exit_code: int = 0) -> None: ...


@LOGGERS.register("console")
class ConsoleSink(_Sink):
    """One compact line per log() call: `step 12 | reward/mean 0.31 | actor/kl 2.1e-03 | ...`."""

    def __init__(self, tracker: "Tracker", max_items: int = 8):
        self.keys, self.max_items = tracker.console_keys, max_items

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
class WandbSink(_Sink):
    """W&B run in run_dir (offline unless the user configured an account)."""

    def __init__(self, tracker: "Tracker"):
        import wandb

        if not os.environ.get("WANDB_API_KEY"):
            os.environ.setdefault("WANDB_MODE", "offline")
        os.environ.setdefault("WANDB_SILENT", "true")
        self.wandb = wandb
        self.run = wandb.init(
            project=tracker.project,
            name=tracker.name,
            id=tracker.run_id,
            resume="allow",
            dir=str(tracker.run_dir),
            config=tracker.config,
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
    return json.dumps(v, default=_json_default)


