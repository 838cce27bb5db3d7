"""PRMBench evaluation of an R-PRM judge (docs/protocols.md, "PRMBench metric").

Items follow the reference harness (PRMBench mr_eval, task prmtest_classified): one item per distinct
(classification, idx) built from modified_question / modified_process / error_steps, plus one
all-correct item per distinct idx of the "redundency" class built from original_question /
original_process (classification "correct", no error steps). Ids are "<classification>_<idx>"
("correct_<idx>"), as in the harness, and are what a precomputed-scores file must use.

Every step is a binary case: positive = a correct step, negative = a step in error_steps (1-based);
predicted correct when its score >= threshold (harness: 0.5; R-PRM's own script used 0.61).
Reported per class and overall: precision/recall/F1 on positives and on negatives and
PRMScore = (F1 + negative F1) / 2 (equal weights recalled from the paper, not confirmed against its
README). As in the harness, the overall numbers EXCLUDE the added "correct" items (they appear as
their own class); "overall_with_correct" includes them, for reference.
"""

from __future__ import annotations

import ast
from typing import Sequence

from rl_prm.data import load_prmbench
from rl_prm.eval.metrics import Confusion, prf, prmbench_counts
from rl_prm.eval.scoring import ScoreSource, score_in_batches, step_scores_at_k

CORRECT_SOURCE_CLASS = "redundency"  # sic: the dataset's spelling


def _as_list(x) -> list:
    if isinstance(x, str):  # a few fields are stored as their Python repr
        x = ast.literal_eval(x) if x.strip() else []
    return list(x or [])


def prmbench_items(split: str | None = None, limit: int | None = None) -> list[dict]:
    """Items {"id", "classification", "question", "steps", "error_steps" (1-based)}; ``limit`` keeps
    the first N items of each classification (after adding the "correct" items)."""
    out: list[dict] = []
    seen: set[str] = set()
    for r in load_prmbench(split):
        cls = r["classification"]
        if cls == CORRECT_SOURCE_CLASS:
            cid = f"correct_{r['idx']}"
            if cid not in seen:
                seen.add(cid)
                out.append({"id": cid, "classification": "correct", "question": r["original_question"],
                            "steps": [str(s) for s in _as_list(r["original_process"])], "error_steps": []})
        rid = f"{cls}_{r['idx']}"
        if rid not in seen:
            seen.add(rid)
            out.append({"id": rid, "classification": cls, "question": r["modified_question"],
                        "steps": [str(s) for s in _as_list(r["modified_process"])],
                        "error_steps": [int(e) for e in _as_list(r["error_steps"])]})
    if limit:
        counts: dict[str, int] = {}
        kept = []
        for it in out:
            if counts.get(it["classification"], 0) < limit:
                counts[it["classification"]] = counts.get(it["classification"], 0) + 1
                kept.append(it)
        out = kept
    return out


def score_prmbench(source: ScoreSource, items: Sequence[dict], batch_size: int = 32,
                   progress: bool = True) -> dict[str, dict]:
    """Scores of every item, in batches (a tqdm bar over items)."""
    return score_in_batches(source, items, desc="PRMBench scoring", batch_size=batch_size, progress=progress)


def prmbench_results(items: Sequence[dict], records: dict[str, dict], threshold: float = 0.5,
                     k: int | None = None) -> dict:
    """{"threshold", "classes": {cls: prf}, "overall": prf (without "correct"), "overall_with_correct",
    "n_items", "n_steps", "unscored_steps", "status_counts"}. An unscored step (None: e.g. every step of
    an item the scorer refused, such as the 15 items holding an empty step, status "empty_step")
    counts as predicted correct and is counted in "unscored_steps"."""
    per_cls: dict[str, Confusion] = {}
    overall, with_correct = Confusion(), Confusion()
    unscored = 0
    for it in items:
        scores = step_scores_at_k(records[it["id"]], k)
        if len(scores) != len(it["steps"]):
            raise ValueError(f"item {it['id']}: {len(scores)} scores for {len(it['steps'])} steps")
        unscored += sum(s is None for s in scores)
        c = prmbench_counts(it["error_steps"], scores, threshold)
        per_cls.setdefault(it["classification"], Confusion())
        per_cls[it["classification"]] += c
        with_correct += c
        if it["classification"] != "correct":
            overall += c
    status: dict[str, int] = {}
    for it in items:
        st = records[it["id"]].get("status", "ok")
        status[st] = status.get(st, 0) + 1
    return {"threshold": threshold, "k": k, "status_counts": status, "classes": {cls: prf(c) for cls, c in sorted(per_cls.items())},
            "overall": prf(overall), "overall_with_correct": prf(with_correct), "n_items": len(items),
            "n_steps": sum(len(it["steps"]) for it in items), "unscored_steps": unscored,
            "note": "overall excludes the added 'correct' items, as the PRMBench harness does; "
                    "prmscore = (f1 + negative_f1) / 2 (recalled weights)"}
