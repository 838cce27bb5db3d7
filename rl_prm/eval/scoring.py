"""Where step scores come from: a live R-PRM scorer or a precomputed JSONL file.

Both sources answer ``source.score(items) -> {id: {"p_yes": [[float|None]*K]*S | None,
"step_scores": [float|None]*S, "status": str}}`` for items ``{"id", "question", "steps"}``, so every
evaluator runs the same code with or without a model.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

from tqdm.auto import tqdm

from rl_prm.eval.io import read_scores
from rl_prm.eval.metrics import mean_first_k
from rl_prm.score.scorer import RPRMScorer, ScoreConfig


class ScoreSource(Protocol):
    name: str

    def score(self, items: Sequence[dict]) -> dict[str, dict]: ...


def score_in_batches(source: ScoreSource, items: Sequence[dict], *, desc: str, batch_size: int = 32,
                     progress: bool = True) -> dict[str, dict]:
    """Scores of every item ({id: record}), `batch_size` items per source call, with a tqdm bar."""
    out: dict[str, dict] = {}
    bar = tqdm(total=len(items), desc=desc, unit="item", disable=not progress)
    for i in range(0, len(items), batch_size):
        batch = list(items[i: i + batch_size])
        out.update(source.score(batch))
        bar.update(len(batch))
    bar.close()
    return out


def record_from_item_score(s: Any, n_steps: int | None = None) -> dict:
    """Plain-dict form of an ``rl_prm.score.scorer.ItemScore`` (what scores.jsonl stores):
    {"status", "step_scores", "p_yes" (per step, the per-sample P(Yes) values; failed samples are
    left out by the scorer), "flags", "generated_tokens", "error"}.

    An item the scorer could not score (status "empty_step", "bad_input", "error", ...) has no step
    entries; with ``n_steps`` it is padded with None scores (unscored steps, counted by the
    evaluators), so one bad item never hides the rest."""
    steps = list(getattr(s, "steps", None) or [])
    rec = {"status": getattr(s, "status", "ok"),
           "step_scores": [getattr(st, "score", None) for st in steps],
           "p_yes": [list(getattr(st, "p_yes", None) or []) for st in steps],
           "flags": [getattr(st, "flag", None) for st in steps],
           "generated_tokens": getattr(s, "generated_tokens", None), "error": getattr(s, "error", None)}
    if n_steps is not None and len(steps) < n_steps:
        pad = n_steps - len(steps)
        rec["step_scores"] += [None] * pad
        rec["p_yes"] += [[]] * pad
        rec["flags"] += ["unscored"] * pad
    return rec


class ScorerSource:
    """A live scorer (``RPRMScorer`` or anything with ``score(list[{"question","steps"}]) -> list[ItemScore]``)."""

    def __init__(self, scorer: Any, name: str = "scorer"):
        self.scorer = scorer
        self.name = name

    def score(self, items: Sequence[dict]) -> dict[str, dict]:
        if not items:
            return {}
        res = self.scorer.score([{"question": it["question"], "steps": list(it["steps"])} for it in items])
        if len(res) != len(items):
            raise RuntimeError(f"scorer returned {len(res)} results for {len(items)} items")
        return {it["id"]: record_from_item_score(r, len(it["steps"])) for it, r in zip(items, res)}

    def score_last(self, items: Sequence[dict]) -> list[float | None]:
        """Score of only the LAST step of each item (guided search: the prefix was scored before).

        Uses the RPRMScorer's step units directly when it has them (``_prepare`` / ``_score_units``),
        so the kept prefix is not re-judged each round; otherwise scores every step and keeps the last."""
        sc = self.scorer
        if not items:
            return []
        if not (hasattr(sc, "_prepare") and hasattr(sc, "_score_units")):
            recs = self.score(items)
            return [(recs[it["id"]]["step_scores"] or [None])[-1] for it in items]
        results, last_units = [], []
        for i, it in enumerate(items):
            res, units = sc._prepare({"question": it["question"], "steps": list(it["steps"])})
            results.append(res)
            if units and units[-1].step == len(it["steps"]) - 1:
                units[-1].item = i
                last_units.append(units[-1])
        sc._score_units(last_units, results, {i: [0, 0, 0] for i in range(len(items))})
        out = []
        for it, res in zip(items, results):
            ok = res.status == "ok" and len(res.steps) == len(it["steps"])
            out.append(res.steps[-1].score if ok else None)
        return out


class PrecomputedSource:
    """Scores read from a JSONL file (format: ``rl_prm.eval.io.read_scores``). Items missing from the
    file are an error naming how many and the first few ids; a file whose step count differs from the
    item's scored steps is an error too (the file was made for other items)."""

    def __init__(self, path: str):
        self.path = str(path)
        self.name = f"precomputed:{path}"
        self.rows = read_scores(path)

    def score(self, items: Sequence[dict]) -> dict[str, dict]:
        missing = [it["id"] for it in items if it["id"] not in self.rows]
        if missing:
            raise KeyError(f"{self.path}: no scores for {len(missing)} of {len(items)} items "
                           f"(first: {', '.join(map(str, missing[:5]))})")
        out = {}
        for it in items:
            row = self.rows[it["id"]]
            n = len(row["p_yes"]) if row.get("p_yes") is not None else len(row.get("step_scores") or [])
            if n != len(it["steps"]):
                raise ValueError(f"{self.path}: id {it['id']!r} has scores for {n} steps, expected {len(it['steps'])}")
            out[it["id"]] = {"status": row.get("status", "ok"), "p_yes": row.get("p_yes"),
                             "step_scores": row.get("step_scores"), "generated_tokens": row.get("generated_tokens")}
        return out


def step_scores_at_k(rec: dict, k: int | None) -> list[float | None]:
    """Per-step scores of a record for K=k: the mean of the first k per-sample P(Yes) values when
    they are stored (the scorer leaves failed samples out, so these are the first k that produced a
    verdict), else the stored step score (also for a step with no sample values: the scorer's
    fallback score for an all-failed step, None for an unscored one). k=None: the stored scores."""
    p_yes = rec.get("p_yes")
    stored = list(rec.get("step_scores") or [])
    if p_yes is None or k is None:
        return stored if stored or p_yes is None else [mean_first_k(x, max(len(x), 1)) if x else None for x in p_yes]
    out = []
    for i, samples in enumerate(p_yes):
        out.append(mean_first_k(samples, k) if samples else (stored[i] if i < len(stored) else None))
    return out


def max_samples(records: dict[str, dict]) -> int | None:
    """Largest per-step sample count in the records (the scorer's K), None without sample values."""
    counts = [len(s) for r in records.values() if r.get("p_yes") for s in r["p_yes"] if s]
    return max(counts) if counts else None


def make_scorer(judge: str, k: int, *, temperature: float = 0.95, top_p: float = 0.95,
                max_critique_tokens: int = 1024, seed: int = 0, kv_cache_gib: float = 1,
                max_model_len: int = 4096, **config: Any):
    """An in-process ``RPRMScorer`` for the judge at ``judge`` (vLLM is imported only here)."""
    cfg = ScoreConfig(k=k, temperature=temperature, top_p=top_p, max_critique_tokens=max_critique_tokens,
                      seed=seed, **config)
    return RPRMScorer.from_path(judge, cfg, kv_cache_gib=kv_cache_gib, max_model_len=max_model_len)
