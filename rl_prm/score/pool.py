"""The R-PRM workers of a run: one or more Ray actors (rl_prm.score.worker), scored across.

    pool = RPRMPool.from_recipe(cfg, judge_path, num_gpus=0)
    judged = judged_mask(cfg.reward.prm.gate, vr, len(spans))       # rl_prm.score.gate
    scores, metrics = pool.score_responses(questions, spans, judged)   # one training score per step (see below)

Items are split into shards, one per worker, scored concurrently; a question's responses stay in one
shard, so a judge prompt they share is judged once (rl_prm.score.scorer). A worker that dies, whose
engine dies or whose call runs past reward.prm.timeout_s is restarted and the call retried
(rl_prm.score.worker.RPRMClient); a shard whose every try timed out gets the fallback score for
each of its steps. All of it is counted (prm/worker_restarts, prm/timeouts, prm/steps_fallback)
and described by `pop_events()`. Responses the gate keeps from the judge get `gated_scores`.
Quiet sessions give worker i the log file LOGDIR/judge<i>.log.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Mapping, Optional, Sequence

from rl_prm.logs import log_file
from rl_prm.metrics import judge_cost_metrics, no_judge_cost
from rl_prm.score.gate import gated_scores
from rl_prm.score.types import ItemScore, ScoreConfig
from rl_prm.score.worker import RPRMClient, start_rprm_worker


def engine_kwargs(prm: Any, seed: int) -> dict:
    """The judge engine's VLLMJudgeEngine.from_path arguments from reward.prm."""
    return dict(max_model_len=prm.max_model_len, kv_cache_gib=prm.kv_cache_gib,
                gpu_memory_utilization=prm.gpu_memory_utilization, seed=seed, dtype=prm.dtype)


class RPRMPool:
    def __init__(self, judge_path: str, config: ScoreConfig, *, num_workers: int = 1, timeout_s: float = 600.0,
                 num_gpus: float = 0.0, engine_kwargs: dict | None = None):
        self.config = config
        import ray  # ray: about a second to import (see shutdown)

        ready_timeout = max(600.0, float(timeout_s))
        self.handles = [  # the engines start side by side; workers on CPU split the cores (they score together)
            start_rprm_worker(judge_path, config, num_cpus=0, num_gpus=num_gpus / num_workers,
                              engine_kwargs=engine_kwargs or {}, ready_timeout=ready_timeout, wait_ready=False,
                              log_file=log_file(f"judge{i}"), share=num_workers)
            for i in range(num_workers)
        ]
        ray.get([h.ready.remote() for h in self.handles], timeout=ready_timeout)
        self.clients = [RPRMClient(h, timeout=float(timeout_s)) for h in self.handles]

    @classmethod
    def from_recipe(cls, cfg: Any, judge_path: str, num_gpus: float = 0.0) -> "RPRMPool":
        p = cfg.reward.prm
        return cls(judge_path, ScoreConfig.from_options(p, seed=cfg.run.seed), num_workers=p.num_workers,
                   timeout_s=p.timeout_s, num_gpus=num_gpus, engine_kwargs=engine_kwargs(p, cfg.run.seed))

    def score(self, items: list[dict]) -> list[ItemScore]:
        if len(self.clients) == 1 or len(items) < 2:
            return self.clients[0].score(items)
        work = distinct_judge_prompts(items)  # shards even in judge work, a question's items in one of them
        shards = [s for s in question_shards([it["question"] for it in items], len(self.clients), work) if s]
        with ThreadPoolExecutor(len(shards)) as pool:
            parts = list(pool.map(lambda cs: cs[0].score([items[j] for j in cs[1]]), zip(self.clients, shards)))
        out: list[Optional[ItemScore]] = [None] * len(items)
        for shard, part in zip(shards, parts):
            for j, r in zip(shard, part):
                out[j] = r
        return out  # type: ignore[return-value]

    def score_responses(self, questions: Sequence[str], spans: Sequence[Any],
                        judged: Optional[Sequence[bool]] = None) -> tuple[list[list[float]], dict]:
        """Training scores of every step of every response (`ItemScore.training_scores`: one per step,
        fallback_score where the judge could not score, counted; `gated_scores` where `judged` is False)
        and the prm/* metrics."""
        return self.assemble(spans, self.score_spans(questions, spans, judged), judged)

    def score_spans(self, questions: Sequence[str], spans: Sequence[Any],
                    judged: Optional[Sequence[bool]] = None) -> list[Optional[ItemScore]]:
        """The judge's ItemScore of each response's steps (None for a response with no steps or not judged)."""
        return score_spans(self.score, questions, spans, judged)

    def assemble(self, spans: Sequence[Any], results: Sequence[Optional[ItemScore]],
                 judged: Optional[Sequence[bool]] = None) -> tuple[list[list[float]], dict]:
        """`score_responses`' (scores, metrics) from `score_spans`' results (one per response, in order)."""
        scores, m = assemble(spans, results, judged, self.config.fallback_score)
        m["prm/worker_retries"] = float(self.retries)
        m["prm/worker_restarts"] = float(sum(c.restarts for c in self.clients))
        m["prm/timeouts"] = float(sum(c.timeouts for c in self.clients))
        return scores, m

    def pop_events(self) -> list[str]:
        """What went wrong (and was survived) since the last call, one line per fault."""
        return [e for c in self.clients for e in c.pop_events()]

    def set_seed(self, seed: int) -> None:
        """Critique seeds of the next run (the engine stays; only the content-derived seeds change)."""
        self.config.seed = seed
        for c in self.clients:
            c.set_seed(seed)

    @property
    def retries(self) -> int:
        return sum(c.n_retries for c in self.clients)

    def shutdown(self) -> None:
        import ray  # ray: about a second to import; importing this module (rl_prm.score.oracle does) must not need it

        for h in self.handles:
            try:
                ray.kill(h)
            except Exception:  # noqa: BLE001 - best effort at exit
                pass


def question_shards(questions: Sequence[str], n: int, work: Optional[Mapping[str, int]] = None) -> list[list[int]]:
    """Item indices in `n` shards: a question's items together (they share judge prompts), the shards'
    work as even as whole questions allow (`work`: question -> its work, e.g. its distinct judge prompts;
    default its number of items), each shard in item order."""
    groups: dict[str, list[int]] = {}
    for j, q in enumerate(questions):
        groups.setdefault(q, []).append(j)
    weight = work if work is not None else {q: len(g) for q, g in groups.items()}
    shards: list[list[int]] = [[] for _ in range(n)]
    load = [0] * n
    for q in sorted(groups, key=lambda q: (weight[q], len(groups[q])), reverse=True):
        k = min(range(n), key=lambda i: (load[i], len(shards[i])))
        shards[k].extend(groups[q])
        load[k] += weight[q]
    return [sorted(s) for s in shards]


def distinct_judge_prompts(items: Sequence[dict]) -> dict[str, int]:
    """Per question, the judge prompts of its items the scorer judges: a step prefix two of them share counts
    once (rl_prm.score.memo)."""
    seen: dict[str, set] = {}
    for it in items:
        steps = it.get("steps") or ()
        seen.setdefault(it["question"], set()).update(tuple(steps[: k + 1]) for k in range(len(steps)))
    return {q: len(v) for q, v in seen.items()}


def score_spans(score: Callable[[list[dict]], list[ItemScore]], questions: Sequence[str], spans: Sequence[Any],
                judged: Optional[Sequence[bool]] = None) -> list[Optional[ItemScore]]:
    """`score` (a scorer's `score(items)`) of each response's steps; None for a response with no steps
    or not judged."""
    todo = [b for b, sp in enumerate(spans) if sp.num_steps and (judged is None or judged[b])]
    results = score([{"question": questions[b], "steps": list(spans[b].texts)} for b in todo]) if todo else []
    out: list[Optional[ItemScore]] = [None] * len(spans)
    for b, res in zip(todo, results):
        out[b] = res
    return out


def assemble(spans: Sequence[Any], results: Sequence[Optional[ItemScore]], judged: Optional[Sequence[bool]],
             fallback: float) -> tuple[list[list[float]], dict]:
    """(training scores per response, prm/* metrics) from the judge's results (None: no steps, or not
    judged where `judged` says False: then `gated_scores`). Every scorer of the local backend ends here."""
    scores: list[list[float]] = [[] for _ in spans]
    rows: list[dict] = []
    n_fallback = 0
    for b, res in enumerate(results):
        if judged is not None and not judged[b]:
            scores[b] = gated_scores(spans[b].num_steps)
            rows.append(no_judge_cost(True))
        elif res is not None:
            scores[b], n = res.training_scores(spans[b].num_steps, fallback)
            n_fallback += n
            rows.append(res.judge_cost())
        else:
            rows.append(no_judge_cost(False))
    m = scorer_metrics([r for r in results if r is not None])
    m.update(judge_cost_metrics(rows))
    m["prm/steps_fallback"] = float(n_fallback)
    return scores, m


def scorer_metrics(results: Sequence[ItemScore]) -> dict[str, float]:
    """Scorer speed and health: tokens per second, verdict-parse fallbacks, failures, statuses (the judge's
    work itself: rl_prm.metrics.judge_cost_metrics)."""
    if not results:
        return {}
    steps = [s for r in results for s in r.steps if not s.shared]
    gen = sum(r.generated_tokens for r in results)
    secs = sum(r.seconds for r in results)
    out = {
        "prm/prompt_tokens": float(sum(r.prompt_tokens for r in results)),
        "prm/tokens_per_s": gen / secs if secs > 0 else 0.0,
        "prm/verdict_fallbacks": float(sum(s.n_fallback for s in steps)),
        "prm/verdict_failures": float(sum(s.n_failed for s in steps)),
        "prm/steps_all_failed": float(sum(s.flag == "all_failed" for s in steps)),
        "prm/items_not_ok": float(sum(r.status != "ok" for r in results)),
    }
    n = sum(s.n_samples for s in steps)
    if n:  # a critique without a verdict is scored by the fallback question (counted, documented)
        out["prm/verdict_fallback_rate"] = out["prm/verdict_fallbacks"] / n
        out["prm/verdict_failure_rate"] = out["prm/verdict_failures"] / n
    return out
