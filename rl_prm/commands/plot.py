"""`rl-prm plot RUN_DIR [--out DIR]`: the key panels of a local run as PNG files, no W&B needed.

Reads RUN_DIR/metrics.jsonl (written by rl_prm.tracking.Tracker; several lines of one step are
merged, a later value wins) and RUN_DIR/warnings.jsonl (drawn as red ticks on the reward panel),
and writes one PNG per panel to --out (default RUN_DIR/plots):

    reward.png        reward/* (mean bold with a +-std band, components thin), warnings
    judge_cost.png    the judge's work per step: judge prompts asked and judged (dedup), responses kept
                      from the judge (reward.prm.gate), critique tokens, prompt tokens computed, seconds,
                      and per response (rl_prm.metrics.judge_cost_metrics)
    eval.png          eval/* (held-out accuracy)
    process.png       world runs: trace accuracy, answer accuracy, miracle rate of the sampled
                      held-out solutions (eval/trace_accuracy, eval/answer_accuracy, eval/miracle_rate;
                      rl_prm.tasks.process_metrics) and their greedy counterparts
    judge_truth.png   a task with a step checker (the world): the judge's verdicts on the training rollouts
                      against the checker (judge/false_accept_rate, ...; rl_prm.metrics.judge) and the
                      rollouts' process rates (process/*)
    kl.png            actor/kl and other */kl* keys
    actor.png         actor/pg_loss, actor/entropy, actor/grad_norm, ...
    prm_by_step.png   PRM step score by step index: latest step (bars) and over time (lines)
    prm.png           PRM summaries: mean step score, responses with a wrong step, first error...
    hacking.png       hacking monitors: steps/response, step length, repetition, reflection
                      words, PRM-vs-verifier agreement, responses without separator
    length.png        response_length/*

Panels whose keys are absent are skipped and listed.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

from rl_prm.registry import Registry

PANELS: Registry = Registry("plot panel")
PANEL_ORDER: list[str] = []  # registration order = output order


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="run directory holding metrics.jsonl (written by the one-node trainer)")
    p.add_argument("--out", default=None, help="output folder for the PNG files (default: RUN_DIR/plots)")


def run(args: argparse.Namespace) -> int:
    try:
        written, skipped = render(args.run_dir, args.out)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"rl-prm plot: {e}") from None
    for path in written:
        print(f"wrote {path}")
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    return 0


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


class History:
    """metrics.jsonl merged by step: `series(key)` -> (steps, values) of the finite values."""

    def __init__(self, rows: dict[int, dict[str, float]], bad_lines: int = 0):
        self.rows = dict(sorted(rows.items()))
        self.bad_lines = bad_lines
        self.keys = sorted({k for r in self.rows.values() for k in r})

    def series(self, key: str) -> tuple[list[int], list[float]]:
        xs, ys = [], []
        for step, row in self.rows.items():
            v = row.get(key)
            if isinstance(v, (int, float)) and math.isfinite(v):
                xs.append(step)
                ys.append(float(v))
        return xs, ys

    def has(self, key: str) -> bool:
        return bool(self.series(key)[0])

    def matching(self, pattern: str) -> list[str]:
        rx = re.compile(pattern)
        return [k for k in self.keys if rx.search(k) and self.has(k)]


def load_history(path: str | Path) -> History:
    """Parse a metrics.jsonl; unparsable lines (e.g. a half-written last line) are counted."""
    rows: dict[int, dict[str, float]] = {}
    bad = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                step = int(obj.pop("step"))
            except (ValueError, KeyError, TypeError, AttributeError):
                bad += 1
                continue
            obj.pop("time", None)
            rows.setdefault(step, {}).update({k: v for k, v in obj.items() if isinstance(v, (int, float))})
    return History(rows, bad)


def _load_warning_steps(path: Path) -> list[int]:
    steps = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                steps.append(int(json.loads(line)["step"]))
            except (ValueError, KeyError, TypeError):
                pass
    return steps


def render(run_dir: str | Path, out: str | Path | None = None) -> tuple[list[Path], dict[str, str]]:
    """Write every panel that has data; returns (written PNG paths, {skipped panel: reason})."""
    import matplotlib  # about a second with pyplot: not for `--help` (rl_prm.cli imports this module first)

    matplotlib.use("Agg")
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.jsonl" if run_dir.is_dir() or not run_dir.suffix else run_dir
    if not metrics.exists():
        raise FileNotFoundError(
            f"{metrics} not found: RUN_DIR must be a run directory written by `rl-prm train` "
            "(the one-node trainer's Tracker writes RUN_DIR/metrics.jsonl)"
        )
    hist = load_history(metrics)
    if not hist.rows:
        raise ValueError(f"{metrics} holds no metrics ({hist.bad_lines} unparsable line(s))")
    if hist.bad_lines:
        print(f"note: skipped {hist.bad_lines} unparsable line(s) of {metrics}")
    base = metrics.parent
    out_dir = Path(out) if out is not None else base / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = {"warning_steps": _load_warning_steps(base / "warnings.jsonl"), "title": base.name}
    written: list[Path] = []
    skipped: dict[str, str] = {}
    import matplotlib.pyplot as plt  # after matplotlib.use("Agg")

    for name in PANEL_ORDER:
        fig = PANELS.get(name)(hist, ctx)
        if isinstance(fig, str):
            skipped[name] = fig
            continue
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written, skipped


# ---------------------------------------------------------------------------------------------
# Panels: each returns a matplotlib Figure, or a str saying why it was skipped
# ---------------------------------------------------------------------------------------------

def _panel(name: str):
    def deco(fn):
        PANELS.register(name)(fn)
        PANEL_ORDER.append(name)
        return fn

    return deco


def _grid(hist: History, title: str, groups: list[tuple[str, list[str]]], ncols: int = 3):
    """One subplot per group with data; a group's keys share an axis. None if nothing to draw."""
    import matplotlib.pyplot as plt  # imported by render() after matplotlib.use("Agg")

    groups = [(t, [k for k in keys if hist.has(k)]) for t, keys in groups]
    groups = [(t, keys) for t, keys in groups if keys]
    if not groups:
        return None
    ncols = min(ncols, len(groups))
    nrows = math.ceil(len(groups) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.2 * nrows), squeeze=False)
    for ax, (sub, keys) in zip(axes.flat, groups):
        for k in keys:
            ax.plot(*hist.series(k), label=k, lw=1.4, marker="." if len(hist.series(k)[0]) < 30 else None)
        ax.set_title(sub, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=7)
        else:
            ax.set_ylabel(keys[0], fontsize=8)
    for ax in list(axes.flat)[len(groups):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


@_panel("reward")
def _reward(hist: History, ctx: dict):
    import matplotlib.pyplot as plt  # imported by render() after matplotlib.use("Agg")

    keys = [k for k in hist.matching(r"^reward/") if not re.search(r"/(std|max|min|group_std_mean|frac_groups_zero_std)$", k)]
    if not keys:
        return "no reward/* keys"
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for k in keys:
        xs, ys = hist.series(k)
        main = k == "reward/mean"
        ax.plot(xs, ys, label=k, lw=2.2 if main else 1.1, color="black" if main else None, zorder=3 if main else 2)
    if hist.has("reward/mean") and hist.has("reward/std"):
        xs, m = hist.series("reward/mean")
        sd = dict(zip(*hist.series("reward/std")))
        pts = [(x, y, sd[x]) for x, y in zip(xs, m) if x in sd]
        if pts:
            ax.fill_between([p[0] for p in pts], [p[1] - p[2] for p in pts], [p[1] + p[2] for p in pts],
                            color="black", alpha=0.1, label="reward/mean +- std")
    ws = sorted(set(ctx["warning_steps"]))
    for i, w in enumerate(ws):
        ax.axvline(w, color="red", alpha=0.35, lw=0.8, label=f"warnings ({len(ctx['warning_steps'])})" if i == 0 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("reward")
    ax.set_title(f"{ctx['title']}: reward")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


PROCESS_KEYS = ("eval/trace_accuracy", "eval/answer_accuracy", "eval/miracle_rate", "eval/greedy_trace_accuracy",
                "eval/greedy_miracle_rate")


@_panel("judge_cost")
def _judge_cost(hist: History, ctx: dict):
    return _grid(hist, f"{ctx['title']}: the judge's work per step (beside the reward)", [
        ("judge prompts: asked / judged", ["prm/judge_prompts", "prm/judge_prompts_distinct"]),
        ("shared judge prompts (dedup)", ["prm/dedup_frac"]),
        ("responses kept from the judge (gate)", ["prm/gated_responses"]),
        ("critique tokens generated", ["prm/critique_tokens"]),
        ("judge prompt tokens computed (after prefix cache)", ["prm/prompt_tokens_computed"]),
        ("seconds", ["timing/score", "prm/judge_seconds"]),
        ("per response: critique tokens", ["prm/critique_tokens_per_response"]),
        ("per response: critiques", ["prm/critiques_per_response"]),
    ]) or "no prm/* judge-work keys"


@_panel("eval")
def _eval(hist: History, ctx: dict):
    keys = [k for k in hist.matching(r"^eval/") if k not in PROCESS_KEYS]
    return _grid(hist, f"{ctx['title']}: held-out evaluation", [("eval/accuracy", [k for k in keys if "acc" in k]),
                 ("other eval metrics", [k for k in keys if "acc" not in k])], ncols=2) or "no eval/* keys"


@_panel("process")
def _process(hist: History, ctx: dict):
    if not any(hist.has(k) for k in PROCESS_KEYS):
        return "no eval/trace_accuracy keys (world data only)"
    return _grid(hist, f"{ctx['title']}: right reasoning vs right answers (held-out, every step recomputed)", [
        ("sampled: trace / answer accuracy, miracle rate", list(PROCESS_KEYS[:3])),
        ("greedy: accuracy, trace accuracy, miracle rate", ["eval/accuracy", *PROCESS_KEYS[3:]]),
    ], ncols=2)


@_panel("judge_truth")
def _judge_truth(hist: History, ctx: dict):
    if not hist.has("process/trace_rate"):
        return "no process/* keys (a task with a step checker only)"
    return _grid(hist, f"{ctx['title']}: the judge on the training rollouts against the task's step checker", [
        ("first wrong steps the judge passed", ["judge/false_accept_rate"]),
        ("responses with a wrong step passed whole", ["judge/flawed_passed_rate", "judge/miracles_passed_rate"]),
        ("right steps the judge flagged", ["judge/false_reject_rate"]),
        ("training rollouts: trace / answer / miracle", ["process/trace_rate", "process/answer_rate",
                                                         "process/miracle_rate"]),
    ], ncols=2)


@_panel("kl")
def _kl(hist: History, ctx: dict):
    keys = hist.matching(r"(^|/)kl")
    return _grid(hist, f"{ctx['title']}: KL", [("KL", keys)], ncols=1) or "no */kl* keys"


@_panel("actor")
def _actor(hist: History, ctx: dict):
    keys = [k for k in hist.matching(r"^actor/") if not re.search(r"(^|/)kl", k)]
    return _grid(hist, f"{ctx['title']}: actor", [(k, [k]) for k in keys]) or "no actor/* keys besides KL"


def _step_index_keys(hist: History) -> list[tuple[int, str]]:
    out = []
    for k in hist.keys:
        m = re.fullmatch(r"prm/step_score_mean@(\d+)", k)
        if m and hist.has(k):
            out.append((int(m.group(1)), k))
    return sorted(out)


@_panel("prm_by_step")
def _prm_by_step(hist: History, ctx: dict):
    import matplotlib.pyplot as plt  # imported by render() after matplotlib.use("Agg")

    idx = _step_index_keys(hist)
    if not idx:
        return "no prm/step_score_mean@k keys"
    latest = max(s for s, row in hist.rows.items() if any(k in row for _, k in idx))
    row = hist.rows[latest]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.2))
    ks = [i for i, k in idx if k in row and math.isfinite(row[k])]
    a1.bar(ks, [row[f"prm/step_score_mean@{i}"] for i in ks], color="tab:blue")
    a1.set_xlabel("step index k (1 = first step)")
    a1.set_ylabel("mean P(Yes)")
    a1.set_ylim(0, 1.02)
    a1.set_xticks(ks)
    a1.set_title(f"step score by step index, step {latest}")
    a1.grid(alpha=0.3, axis="y")
    cmap = plt.get_cmap("viridis", max(len(idx), 2))
    for j, (i, k) in enumerate(idx):
        a2.plot(*hist.series(k), color=cmap(j), lw=1.1, label=f"@{i}")
    if hist.has("prm/step_score_mean"):
        a2.plot(*hist.series("prm/step_score_mean"), color="black", lw=2.2, label="all steps")
    a2.set_xlabel("step")
    a2.set_ylabel("mean P(Yes)")
    a2.set_ylim(0, 1.02)
    a2.set_title("step score by step index over training")
    a2.grid(alpha=0.3)
    a2.legend(fontsize=7, ncol=2 if len(idx) > 8 else 1)
    fig.suptitle(f"{ctx['title']}: PRM step scores")
    fig.tight_layout()
    return fig


@_panel("prm")
def _prm(hist: History, ctx: dict):
    return _grid(hist, f"{ctx['title']}: PRM", [
        ("step score (P(Yes))", ["prm/step_score_mean", "prm/response_min_score_mean", "prm/step_score_last_mean"]),
        ("responses with a wrong step", ["prm/frac_responses_with_wrong_step"]),
        ("first wrong step (1-based)", ["prm/first_error_step_mean"]),
        ("not scored", ["prm/not_scored_frac", "prm/frac_responses_unscored"]),
    ], ncols=2) or "no prm/* summary keys"


@_panel("hacking")
def _hacking(hist: History, ctx: dict):
    return _grid(hist, f"{ctx['title']}: reward-hacking monitors", [
        ("steps per response", ["hack/steps_per_response"]),
        ("step length (chars)", ["hack/mean_step_chars"]),
        ("repetition", ["hack/repetition", "hack/dup_step_frac"]),
        ("reflection / filler words per response", ["hack/reflection_words", "hack/thanks_per_response"]),
        ("PRM verdict vs verifiable reward", ["hack/prm_vr_agreement", "hack/prm_ok_vr_wrong", "hack/prm_wrong_vr_ok"]),
        ("wrong answers the PRM passes whole (warned on)", ["hack/prm_ok_given_vr_wrong"]),
        ("responses without a step separator", ["hack/frac_no_separator"]),
    ]) or "no hack/* keys"


@_panel("length")
def _length(hist: History, ctx: dict):
    keys = hist.matching(r"^response_length/")
    return _grid(hist, f"{ctx['title']}: response length", [
        ("tokens", [k for k in keys if not k.endswith("clip_ratio")]),
        ("clipped at max length", [k for k in keys if k.endswith("clip_ratio")]),
    ], ncols=2) or "no response_length/* keys"
