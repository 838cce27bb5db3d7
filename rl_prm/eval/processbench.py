"""ProcessBench evaluation of an R-PRM judge (docs/protocols.md, "ProcessBench metric").

    records = score_processbench(source, items)            # {id: {"p_yes", "step_scores", ...}}
    results = processbench_results(items, records, ks=[1, 2, 4], threshold=0.5)

Scored steps: for an item labelled L (first wrong step, 0-based) only steps[:L+1] are scored; for
label -1 all steps. This is what the R-PRM reference does, and it changes no prediction: the
prediction is the first step scoring under the threshold, and any step after L can only turn a
"miss" (no step <= L under the threshold) into another wrong answer (a later index or -1).
Several K from one scoring pass: score once with K_max samples per step and, for each k, average the
first k samples of each step (the same estimator as a separate K=k run with the same sample order).
"""

from __future__ import annotations

import os
import tempfile
from typing import Iterable, Sequence

from rl_prm.data import PROCESSBENCH_SPLITS, load_processbench
from rl_prm.eval.metrics import average_f1, predict_first_error, processbench_metrics, threshold_sweep
from rl_prm.eval.scoring import ScoreSource, score_in_batches, step_scores_at_k

SWEEP = tuple(round(0.1 * i, 1) for i in range(1, 10))  # 0.1 .. 0.9
SCORED_STEPS_NOTE = ("steps[:label+1] scored for erroneous items (label = first wrong step), all steps for "
                     "label -1; predictions are unaffected (first step under the threshold)")


def scored_prefix(steps: Sequence[str], label: int) -> list[str]:
    """The steps that need scoring for an item with first-error ``label`` (-1: all)."""
    return list(steps) if label < 0 else list(steps[: label + 1])


def processbench_items(splits: Iterable[str] = PROCESSBENCH_SPLITS, limit: int | None = None) -> list[dict]:
    """Items {"id", "split", "question", "steps" (the scored prefix), "n_steps", "label"}.

    ``limit`` N keeps, per split, the first N - N//2 erroneous and the first N//2 all-correct items
    (the files list erroneous items first, so a plain head would leave the correct accuracy undefined);
    file order is kept."""
    items = []
    for split in splits:
        rows = load_processbench(split)
        if limit:
            err_ids = [r["id"] for r in rows if r["label"] != -1][: limit - limit // 2]
            cor_ids = [r["id"] for r in rows if r["label"] == -1][: limit // 2]
            keep = set(err_ids) | set(cor_ids)
            rows = [r for r in rows if r["id"] in keep]
        for r in rows:
            items.append({"id": str(r["id"]), "split": split, "question": r["problem"],
                          "steps": scored_prefix(r["steps"], r["label"]), "n_steps": len(r["steps"]),
                          "label": int(r["label"])})
    return items


def score_processbench(source: ScoreSource, items: Sequence[dict], batch_size: int = 32,
                       progress: bool = True) -> dict[str, dict]:
    """Scores of every item, in batches (a tqdm bar over items)."""
    return score_in_batches(source, items, desc="ProcessBench scoring", batch_size=batch_size, progress=progress)


def processbench_results(items: Sequence[dict], records: dict[str, dict], ks: Sequence[int | None] = (None,),
                         threshold: float = 0.5, thresholds: Sequence[float] = SWEEP) -> dict:
    """Metrics per K and split at ``threshold`` plus a threshold sweep.

    Returns {"threshold", "ks", "scored_steps", "per_k": {str(k): {"splits": {split: metrics},
    "avg_f1", "sweep": {split: [...]}, "avg_sweep": [{"threshold", "avg_f1"}]}}, "predictions": {...},
    "status_counts"}. k=None means "the stored step scores as they are"."""
    splits = list(dict.fromkeys(it["split"] for it in items))
    per_k: dict[str, dict] = {}
    predictions: dict[str, dict[str, int]] = {}
    for k in ks:
        by_split: dict[str, dict] = {}
        sweeps: dict[str, list] = {}
        preds_k: dict[str, int] = {}
        for split in splits:
            its = [it for it in items if it["split"] == split]
            scores = [step_scores_at_k(records[it["id"]], k) for it in its]
            labels = [it["label"] for it in its]
            preds = [predict_first_error(s, threshold) for s in scores]
            preds_k.update({it["id"]: p for it, p in zip(its, preds)})
            by_split[split] = processbench_metrics(labels, preds)
            sweeps[split] = threshold_sweep(labels, scores, thresholds)
        avg_sweep = [{"threshold": float(t), "avg_f1": average_f1({s: sweeps[s][j] for s in splits})}
                     for j, t in enumerate(thresholds)]
        key = str(k) if k is not None else "stored"
        per_k[key] = {"splits": by_split, "avg_f1": average_f1(by_split), "sweep": sweeps, "avg_sweep": avg_sweep}
        predictions[key] = preds_k
    status: dict[str, int] = {}
    for it in items:
        s = records[it["id"]].get("status", "ok")
        status[s] = status.get(s, 0) + 1
    return {"threshold": threshold, "ks": [k for k in ks], "splits": splits, "scored_steps": SCORED_STEPS_NOTE,
            "per_k": per_k, "predictions": predictions, "status_counts": status, "n_items": len(items)}


def plot_f1_vs_k(results: dict, path) -> None:
    """PNG of F1 against K (per split and average), the inference-time-scaling curve."""
    import matplotlib  # ~0.5 s to import: only the plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = [k for k in results["per_k"] if k != "stored"]
    xs = [int(k) for k in ks]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for split in results["splits"]:
        ax.plot(xs, [results["per_k"][k]["splits"][split]["f1"] for k in ks], marker="o", label=split, alpha=0.7)
    ax.plot(xs, [results["per_k"][k]["avg_f1"] for k in ks], marker="s", color="black", lw=2, label="average")
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel("K (critiques per step)")
    ax.set_ylabel("ProcessBench F1 (%)")
    ax.set_title(f"F1 vs K (threshold {results['threshold']})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
