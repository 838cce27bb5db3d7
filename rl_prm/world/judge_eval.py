"""Mini-ProcessBench evaluation of the world judge with rl_prm.eval (F1 per K, step-by-step accuracy).

    from rl_prm.world.judge_eval import evaluate_judge
    r = evaluate_judge(judge_dir, n=100, ks=(1, 2, 4, 8))   # r["f1_per_k"], r["greedy"], r["step_accuracy"], ...
"""

from __future__ import annotations

import dataclasses
import time

from rl_prm.eval.processbench import processbench_results, score_processbench
from rl_prm.eval.scoring import ScorerSource, step_scores_at_k
from rl_prm.progress import heartbeat
from rl_prm.score.scorer import RPRMScorer, ScoreConfig
from rl_prm.world.tasks import eval_items, processbench

# The world judge's critique temperature where K critiques per step are sampled (its F1-against-K curve,
# DPO's samples): at 1.0 most of the tiny judge's sampled critiques miscompute (docs/world.md).
SAMPLED_TEMPERATURE = 0.6


def evaluate_judge(path, n: int = 60, ks=(1, 2, 4, 8), seed: int = 0, threshold: float = 0.5,
                   temperature: float = SAMPLED_TEMPERATURE, max_critique_tokens: int = 224, kv_cache_gib: float = 1,
                   dtype: str = "auto") -> dict:
    """Mini-ProcessBench ("test" split, n items) F1 per K with rl_prm.eval.processbench: one scoring
    pass at K = max(ks) (critiques sampled at ``temperature``, engine ``dtype`` as reward.prm.dtype), each K
    averages the first K samples of each step; then one greedy critique per step (``r["greedy"]``: F1,
    step_accuracy). The engine is stopped before returning."""
    items = eval_items(processbench("test", n, seed=seed))
    t0 = time.perf_counter()
    cfg = ScoreConfig(k=max(ks), temperature=temperature, top_p=1.0, max_critique_tokens=max_critique_tokens, seed=seed)
    with heartbeat("[world judge eval] starting the judge engine"):
        scorer = RPRMScorer.from_path(path, cfg, max_model_len=2048, kv_cache_gib=kv_cache_gib, dtype=dtype)
    greedy = RPRMScorer(scorer.engine, dataclasses.replace(cfg, k=1, temperature=0.0))
    try:
        t1 = time.perf_counter()
        with heartbeat(f"[world judge eval] {max(ks)} sampled critiques per step of {len(items)} items"):
            records = score_processbench(ScorerSource(scorer, "world-judge"), items, batch_size=max(1, n),
                                         progress=False)  # one batch: a bar would jump from 0 to 100%
        t2 = time.perf_counter()
        with heartbeat(f"[world judge eval] one greedy critique per step of {len(items)} items"):
            greedy_records = score_processbench(ScorerSource(greedy, "world-judge-greedy"), items,
                                                batch_size=max(1, n), progress=False)
        t3 = time.perf_counter()
    finally:
        scorer.engine.shutdown()
    res = processbench_results(items, records, ks=list(ks), threshold=threshold)
    res["timing_s"] = {"engine_start": round(t1 - t0, 1), "scoring": round(t2 - t1, 1), "greedy": round(t3 - t2, 1)}
    res["f1_per_k"] = {k: round(res["per_k"][str(k)]["avg_f1"], 1) for k in ks}
    res["step_accuracy"] = {k: step_accuracy(items, records, k, threshold) for k in ks}
    g = processbench_results(items, greedy_records, ks=[1], threshold=threshold)["per_k"]["1"]
    res["greedy"] = {"f1": round(g["avg_f1"], 1), "splits": g["splits"],
                     "step_accuracy": step_accuracy(items, greedy_records, 1, threshold)}
    return res


def eval_summary(r: dict, temperature: float, dtype: str) -> dict:
    """What a report or a build card keeps of ``evaluate_judge``'s result ``r`` (sampled at
    ``temperature``, engine ``dtype``): F1 per K and greedy, step accuracy, per-K splits, timing."""
    return {"f1_per_k": r["f1_per_k"], "timing_s": r["timing_s"], "step_accuracy": r["step_accuracy"],
            "greedy": r["greedy"], "temperature": temperature, "dtype": dtype,
            "per_k": {k: v["splits"] for k, v in r["per_k"].items()}, "status_counts": r.get("status_counts"),
            "n_items": r["n_items"]}


def step_accuracy(items: list[dict], records: dict[str, dict], k: int, threshold: float = 0.5) -> dict:
    """What an RL reward sees, step by step: the share of correct steps (before the first error)
    scored above ``threshold`` and the share of first-error steps scored at or below it, using the
    first ``k`` critiques of each step; with their counts."""
    ok = bad = n_ok = n_bad = 0
    for it in items:
        scores = step_scores_at_k(records[it["id"]], k)
        for i, s in enumerate(scores):
            if it["label"] == -1 or i < it["label"]:
                n_ok += 1
                ok += s is not None and s > threshold  # unscored counts as missed
            elif i == it["label"]:
                n_bad += 1
                bad += s is not None and s <= threshold
    return {"correct_steps_yes": round(100 * ok / max(1, n_ok), 1), "n_correct_steps": n_ok,
            "error_steps_no": round(100 * bad / max(1, n_bad), 1), "n_error_steps": n_bad}
