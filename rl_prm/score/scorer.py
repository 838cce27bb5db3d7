"""R-PRM step scoring core (pure: no trainer/verl imports; vLLM only through an engine).

For every step k of every item: the exact R-PRM prompt (rl_prm.score.prompt) judging step k
given steps[:k]; K critiques sampled (temperature 0.95, top_p 0.95); for each critique
P(Yes) = softmax over the " Yes"/" No" next-token logits right after the first
"Is the step correct (Yes/No)?" in it; step score = mean P(Yes) over the K critiques.

Second pass (the default, as the reference protocol): critiques are generated up to the verdict
question, without logprobs, and P(Yes) is read from a one-token pass over prompt + critique (the
prompt and most of the critique come from the engine's prefix cache). Single pass (`single_pass`):
the engine reports the verdict tokens' raw logprobs at every generated position, so P(Yes) is read
at the verdict position of the generation itself (the same number; the per-position logprobs cost
more than the second pass on vLLM, docs/performance.md). Either way a sample takes the fallback
route, or in single-pass mode a second pass, when
  * the critique has no verdict question (length cap, garbage): the reference evaluation's
    fallback, append FALLBACK_QUESTION to the critique and score the next token
    (counted in StepScore.n_fallback);
  * the verdict question does not end on a token boundary of the generated tokens, the
    critique stopped right after it, the engine did not report both tokens there, or
    (exact_tokenization) the generated tokens differ from the tokenization of
    prompt + critique prefix that the reference's second pass would see
    (counted in StepScore.n_second_pass).
A sample whose every route failed has no P(Yes); a step whose every sample failed gets
`fallback_score` and flag "all_failed".

Work saved without changing verdicts: a judge prompt that two responses share (same question, same
steps up to the judged one) is judged once and its StepScore given to both (rl_prm.score.memo: within a
call, or across calls with a shared `JudgeMemo`); steps are ordered so successive steps of an item share
their prompt prefix (prefix caching in the engine); generation stops at the verdict. Optional,
changing what is computed: early rejection (`early_reject_threshold`: steps scored in order;
after a step scored below it, later steps get score None, flag "not_scored") and adaptive K
(`adaptive_k`: sample `adaptive_min_k` first, then the remaining k - adaptive_min_k only where
`adaptive_rule` asks: "disagree" unless all P(Yes) >= 0.5 or all < 0.5; "confirm_no"
unless all P(Yes) >= 0.5, so a rejection is checked by more critiques and an acceptance is not).

Not-scored steps and training: both backends turn an ItemScore into one score per step with
`ItemScore.training_scores` (early-rejected steps get the rejecting step's score, which leaves
min/future-min credit unchanged and keeps sum credit pessimistic; unscorable steps get
`fallback_score`, counted).
"""

from __future__ import annotations

import copy
import time
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

from rl_prm.score.engines import GenParams, JudgeEngine, Sample, VLLMJudgeEngine, p_yes
from rl_prm.score.memo import JudgeMemo, unit_key
from rl_prm.score.prompt import NO, VERDICT_QUESTION, YES, judge_prompt
from rl_prm.score.schedule import Flow, Gen, Next, run
from rl_prm.score.types import ItemScore, ScoreConfig, StepScore
from rl_prm.steps import split_steps

__all__ = ["FALLBACK_QUESTION", "ItemScore", "RPRMScorer", "STATUSES", "ScoreConfig", "StepScore"]

# The reference evaluation's text appended to a critique that has no verdict question
# (NJUNLP/R-PRM src/evaluate/GenPRM/evaluate-PRM-CoT.py); the next token is then scored.
FALLBACK_QUESTION = "\nBased on your analysis. Is the answer correct (Yes/No)?"
STATUSES = ("ok", "no_steps", "empty_step", "too_long", "bad_input", "error")


def needs_more(samples: Sequence[float | None], rule: str, margin: float) -> bool:
    """Adaptive K: whether a step whose first samples have these P(Yes) (None = failed) gets the rest.
    A failed sample always asks for more; "disagree": unless all >= 0.5+margin or all < 0.5-margin;
    "confirm_no": unless all >= 0.5+margin."""
    if not samples or any(p is None for p in samples):
        return True
    yes = all(p >= 0.5 + margin for p in samples)
    no = all(p < 0.5 - margin for p in samples)
    return not (yes or (no and rule == "disagree"))


# ---------------------------------------------------------------------------------------------


@dataclass
class _Unit:
    """One step of one item to score."""

    step: int
    prompt_text: str
    prompt_ids: list[int]
    seed: int | None
    samples: list[float | None] = field(default_factory=list)
    n_fallback: int = 0
    n_second_pass: int = 0
    critiques: list[str] = field(default_factory=list)


@dataclass
class _Pending:
    """A sample waiting for its second (one-token) pass."""

    unit: _Unit
    ids: list[int]
    fallback: bool


class RPRMScorer:
    """Scores solution steps with an R-PRM judge through a `JudgeEngine`."""

    def __init__(self, engine: JudgeEngine, config: ScoreConfig = ScoreConfig(), memo: JudgeMemo | None = None):
        """memo: verdicts shared across `score` calls (e.g. verl's per-response calls); None = each call
        shares the verdicts of its own duplicate judge prompts only."""
        self.engine = engine
        self.config = config
        self.memo = memo
        self.tokenizer = engine.tokenizer
        self.yes_id, self.no_id = engine.yes_id, engine.no_id

    @classmethod
    def from_path(cls, judge_path, config: ScoreConfig = ScoreConfig(), **engine_kwargs) -> "RPRMScorer":
        """An in-process vLLM engine for `judge_path` (kwargs go to rl_prm.vllm_engine.make_llm)."""
        return cls(VLLMJudgeEngine.from_path(str(judge_path), **engine_kwargs), config)

    @property
    def max_prompt_tokens(self) -> int:
        if self.config.max_prompt_tokens is not None:
            return self.config.max_prompt_tokens
        return self.engine.max_model_len - self.config.max_critique_tokens

    # -- public ---------------------------------------------------------------------------------

    def score(self, items: Sequence[Mapping]) -> list[ItemScore]:
        """Score every step of every item. One bad item never fails the batch: it gets a status.
        A judge prompt already judged (or being judged) for another item is judged once (module doc)."""
        t0 = time.perf_counter()
        results: list[ItemScore] = []
        units: list[list[_Unit]] = []
        for item in items:
            res, us = self._prepare(item)
            results.append(res)
            units.append(us)
        memo = self.memo if self.memo is not None else JudgeMemo()
        tag = repr(sorted((k, v) for k, v in asdict(self.config).items() if k != "seed"))
        own: list[list[_Unit]] = []  # per item, the steps this call judges
        claimed, waits = [], []  # (item, unit, key, future) this call resolves; (item, unit, future) it reads
        for i, us in enumerate(units):
            own.append([])
            for u in us:
                key = unit_key(u.prompt_text, u.seed, tag)
                mine, fut = memo.claim(key)
                if mine:
                    own[i].append(u)
                    claimed.append((i, u, key, fut))
                else:
                    waits.append((i, u, fut))
        stats = {i: [0, 0, 0] for i in range(len(items))}  # generated, prompt, cached
        flows = {i: self._item_flow(units[i], results[i], stats[i], {u.step for u in us})
                 for i, us in enumerate(own) if us}
        try:
            run(self.engine, flows, self._params(), lambda i, e: self._fail(results[i], e))
        finally:  # before waiting on others: a call never waits while holding steps others wait for
            for i, u, key, fut in claimed:
                memo.resolve(key, fut, results[i].steps[u.step])
        for i, u, fut in waits:
            st = copy.deepcopy(fut.result())
            st.shared = True
            results[i].steps[u.step] = st
        if waits and self.config.early_reject_threshold is not None:
            for i in {i for i, _, _ in waits}:
                _reject_after_first_low(results[i], self.config.early_reject_threshold)
        dt = time.perf_counter() - t0
        for i, r in enumerate(results):
            r.generated_tokens, r.prompt_tokens, r.cached_prompt_tokens = stats[i]
            r.judged_steps, r.shared_steps = len(own[i]), len(units[i]) - len(own[i])
            r.seconds = dt / max(1, len(results))
        return results

    # -- preparation ----------------------------------------------------------------------------

    def _prepare(self, item: Any) -> tuple[ItemScore, list[_Unit]]:
        def bad(status: str, msg: str) -> tuple[ItemScore, list[_Unit]]:
            return ItemScore(status, [], msg, 0, 0, 0.0), []

        if not isinstance(item, Mapping):
            return bad("bad_input", f"item must be a mapping with 'question' and 'steps'/'response', got {type(item).__name__}")
        question = item.get("question", item.get("problem"))
        if not isinstance(question, str) or not question.strip():
            return bad("bad_input", "item has no non-empty 'question' string")
        steps = item.get("steps")
        if steps is None:
            response = item.get("response")
            if response is None:
                return bad("bad_input", "item has neither 'steps' nor 'response'")
            if not isinstance(response, str):
                return bad("bad_input", f"'response' must be a string, got {type(response).__name__}")
            steps = split_steps(response)
        if isinstance(steps, str) or not isinstance(steps, Sequence):
            return bad("bad_input", f"'steps' must be a list of strings, got {type(steps).__name__}")
        if len(steps) == 0:
            return bad("no_steps", "item has no steps")
        for j, s in enumerate(steps):
            if not isinstance(s, str):
                return bad("bad_input", f"step {j + 1} is not a string ({type(s).__name__})")
            if not s.strip():
                return bad("empty_step", f"step {j + 1} is empty")
        steps = list(steps)
        res = ItemScore("ok", [], None, 0, 0, 0.0)
        units = []
        limit = self.max_prompt_tokens
        for k in range(len(steps)):
            text = judge_prompt(self.tokenizer, question, steps, k)
            ids = self.tokenizer.encode(text, add_special_tokens=False)
            if len(ids) > limit:
                res.status = "too_long"
                res.error = (f"judge prompt for step {k + 1} has {len(ids)} tokens > max_prompt_tokens={limit} "
                             f"(context {self.engine.max_model_len} - {self.config.max_critique_tokens} critique tokens); "
                             f"steps {k + 1}..{len(steps)} not scored")
                for _ in range(k, len(steps)):
                    res.steps.append(StepScore(None, [], 0, 0, "too_long", []))
                break
            res.steps.append(StepScore(None, [], 0, 0, None, []))
            units.append(_Unit(k, text, ids, self._seed(question, steps[: k + 1])))
        return res, units

    def _seed(self, question: str, steps: Sequence[str]) -> int | None:
        """Content-derived seed: the same step gets the same critiques whatever batch it is in."""
        if self.config.seed is None:
            return None
        h = zlib.crc32("\x00".join([question, *steps]).encode("utf-8"))
        return (self.config.seed * 1_000_003 + h) % (2**31 - 1)

    # -- scoring --------------------------------------------------------------------------------

    def _params(self) -> GenParams:
        """Single pass: stop after the verdict token, with the verdict logprobs at every position; second
        pass: stop at the verdict question (the second pass reads the next token), no logprobs."""
        c = self.config
        verdicts = [VERDICT_QUESTION + YES, VERDICT_QUESTION + NO] if c.single_pass else [VERDICT_QUESTION]
        return GenParams(c.temperature, c.top_p, c.max_critique_tokens, verdicts if c.stop_at_verdict else [],
                         logprobs=c.single_pass)

    def _item_flow(self, units: list[_Unit], res: ItemScore, stats: list[int], own: set[int]) -> Flow:
        """The engine work for one item (rl_prm.score.schedule): its steps in `own` (the others are judged
        for another item) every one at once, or with early rejection in order, 1 + early_reject_lookahead
        steps at a time, until one scores below the threshold (the steps after it are flagged not_scored,
        also those already scored ahead)."""
        thr = self.config.early_reject_threshold
        if thr is None:
            yield from self._score_units([u for u in units if u.step in own], res, stats)
            return
        width = 1 + self.config.early_reject_lookahead
        for d in range(0, len(units), width):
            yield from self._score_units([u for u in units[d:d + width] if u.step in own], res, stats)
            for j, u in enumerate(units[d:d + width], start=d):
                st = res.steps[u.step]
                if u.step in own and st.score is not None and st.score < thr:
                    for v in units[j + 1:]:
                        res.steps[v.step] = StepScore(None, [], 0, 0, "not_scored", [])
                    return

    def _score_units(self, units: list[_Unit], res: ItemScore, stats: list[int]) -> Flow:
        c = self.config
        first_n = c.adaptive_min_k if c.adaptive_k else c.k
        yield from self._sample(units, first_n, 0, stats)
        if c.adaptive_k and c.k > first_n:
            more = [u for u in units if needs_more(u.samples, c.adaptive_rule, c.adaptive_margin)]
            yield from self._sample(more, c.k - first_n, first_n, stats)
        for u in units:
            st = res.steps[u.step]
            ps = [p for p in u.samples if p is not None]
            st.p_yes = ps
            st.n_samples = len(u.samples)
            st.n_fallback = u.n_fallback
            st.n_second_pass = u.n_second_pass
            st.n_failed = len(u.samples) - len(ps)
            st.critiques = u.critiques[: c.keep_critiques]
            if ps:
                st.score = sum(ps) / len(ps)
            else:
                st.score, st.flag = c.fallback_score, "all_failed"

    def _sample(self, units: list[_Unit], n: int, seed_offset: int, stats: list[int]) -> Flow:
        """Draw n more critiques for each unit, read P(Yes) (single pass, else a one-token second pass)."""
        if not units or n <= 0:
            return
        outs = yield [Gen(u.prompt_ids, n, None if u.seed is None else u.seed + seed_offset) for u in units]
        pending: list[tuple[_Pending, int]] = []
        for u, samples in zip(units, outs):
            stats[1] += len(u.prompt_ids) * len(samples)
            stats[2] += min(getattr(samples, "cached_tokens", 0), len(u.prompt_ids) * len(samples))
            for s in samples:
                stats[0] += len(s.token_ids)
                if len(u.critiques) < self.config.keep_critiques:
                    u.critiques.append(s.text)
                p, pend = self._read_verdict(u, s)
                u.samples.append(p)
                if pend is not None:
                    pending.append((pend, len(u.samples) - 1))
                    u.n_fallback += pend.fallback
                    u.n_second_pass += 1
        todo = [(pd, idx) for pd, idx in pending if len(pd.ids) <= self.engine.max_model_len - 1]
        if todo:
            pairs = yield [Next(pd.ids) for pd, _ in todo]
            for (pd, idx), pair in zip(todo, pairs):
                stats[1] += len(pd.ids)
                pd.unit.samples[idx] = p_yes(pair)

    @staticmethod
    def _fail(res: ItemScore, e: BaseException) -> None:
        res.status = "error"
        res.error = f"judge engine failed: {type(e).__name__}: {e}"
        for st in res.steps:
            if st.flag is None and st.score is None:
                st.flag = "all_failed"

    def _read_verdict(self, u: _Unit, s: Sample) -> tuple[float | None, _Pending | None]:
        """P(Yes) of one critique from its own generation, or what to score in a second pass."""
        tok = self.tokenizer
        cut = s.text.find(VERDICT_QUESTION)
        if cut < 0:
            ids = tok.encode(u.prompt_text + s.text + FALLBACK_QUESTION, add_special_tokens=False)
            return None, _Pending(u, ids, True)
        cut += len(VERDICT_QUESTION)
        prefix = s.text[:cut]
        ref_ids = None
        p = _boundary(tok, s.token_ids, prefix) if self.config.single_pass else None
        if p is not None and p + 1 < len(s.token_ids):
            if self.config.exact_tokenization:
                ref_ids = tok.encode(u.prompt_text + prefix, add_special_tokens=False)
                same = ref_ids == u.prompt_ids + list(s.token_ids[: p + 1])
            else:
                same = True
            if same:
                val = p_yes(s.verdict_logprobs[p + 1])
                if val is not None:
                    return val, None
        if ref_ids is None:
            ref_ids = tok.encode(u.prompt_text + prefix, add_special_tokens=False)
        return None, _Pending(u, ref_ids, False)


def _reject_after_first_low(res: ItemScore, threshold: float) -> None:
    """Early rejection on an item some of whose steps came from the memo: every step after the first one
    scored below `threshold` is not scored (what the item's own in-order flow would have left)."""
    low = False
    for j, st in enumerate(res.steps):
        if low and st.flag != "too_long":
            res.steps[j] = StepScore(None, [], 0, 0, "not_scored", [])
        elif st.score is not None and st.flag is None and st.score < threshold:
            low = True


def _boundary(tok: Any, ids: Sequence[int], prefix: str) -> int | None:
    """Index p such that decode(ids[:p+1]) == prefix exactly, or None (binary search on length)."""
    n = len(prefix)
    lo, hi = 0, len(ids) - 1
    dec = lambda j: tok.decode(list(ids[: j + 1]), skip_special_tokens=True)  # noqa: E731
    while lo < hi:
        mid = (lo + hi) // 2
        if len(dec(mid)) >= n:
            hi = mid
        else:
            lo = mid + 1
    if ids and dec(lo) == prefix:
        return lo
    return None
