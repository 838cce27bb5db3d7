"""Scorer bookkeeping with a scripted engine (no vLLM): verdict reading, fallbacks, flags,
early rejection, adaptive K, bad inputs, failure isolation. The real-engine paths are in
test_score_vllm.py."""

from __future__ import annotations

import math
import re

import pytest

from rl_prm.score.engines import JudgeEngine, Sample, SampleList, p_yes, verdict_token_ids
from rl_prm.score.prompt import VERDICT_PHRASE
from rl_prm.score.scorer import FALLBACK_QUESTION, ItemScore, RPRMScorer, ScoreConfig

NOW_RE = re.compile(r"Now Step: Step (\d+): (.*)\n")


def _logit_pair(p: float) -> tuple[float, float]:
    """Logprobs (full-vocab-like, unnormalised pair) whose two-way softmax is p."""
    a = math.log(p) - 2.0
    return a, math.log(1 - p) - 2.0


class ScriptedEngine:
    """JudgeEngine whose critiques are scripted per (step text, sample index).

    script(step_text, k, j) -> ("yes", p) a critique with the verdict and P(Yes)=p at the verdict
    position; ("none", _) a critique without the verdict question. Asked for no logprobs (the scorer's
    second-pass mode) a "yes" critique ends at the verdict question and the one-token pass over it
    answers p; `second(step_text) -> p | None` answers every other one-token (second-pass) prompt.
    """

    def __init__(self, tokenizer, script, second=lambda text: 0.25, max_model_len=4096, fail_on=None):
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len
        self.yes_id, self.no_id = verdict_token_ids(tokenizer)
        self.script, self.second, self.fail_on = script, second, fail_on
        self.generate_calls: list[list[tuple[int, str, int]]] = []
        self.second_prompts: list[str] = []
        self.verdict_p: dict[tuple[str, int], float] = {}  # (step text, sample index) -> scripted P(Yes)

    def _now(self, ids):
        m = NOW_RE.search(self.tokenizer.decode(ids))
        return int(m.group(1)), m.group(2)

    def generate(self, prompts, n, seeds, params):
        calls = []
        out = []
        for ids, k in zip(prompts, n):
            step, text = self._now(ids)
            if self.fail_on and self.fail_on in self.tokenizer.decode(ids):
                raise RuntimeError("engine exploded on this prompt")
            calls.append((step, text, k))
            done = sum(c[2] for calls_ in self.generate_calls for c in calls_ if c[1] == text)
            samples = SampleList()
            for j in range(k):
                kind, p = self.script(text, step, done + j)
                body = f"Analysis: step {step} sample {done + j}.\nConclusion: fine.\n"
                if kind == "yes":
                    self.verdict_p[(text, done + j)] = p
                    crit = body + VERDICT_PHRASE + ((" Yes" if p >= 0.5 else " No") if params.logprobs else "")
                else:
                    crit = body + "I cannot decide"
                tids = self.tokenizer.encode(crit, add_special_tokens=False)
                pairs = [(None, None)] * len(tids)
                if kind == "yes" and params.logprobs:
                    pairs[-1] = _logit_pair(p)  # the position right after "(Yes/No)?"
                samples.append(Sample(tids, pairs, crit, "stop"))
            out.append(samples)
        self.generate_calls.append(calls)
        return out

    def score_next(self, prompts):
        res = []
        for ids in prompts:
            text = self.tokenizer.decode(ids)
            self.second_prompts.append(text)
            m = re.search(r"sample (\d+)\.\nConclusion: fine\.\n" + re.escape(VERDICT_PHRASE) + "$", text)
            p = self.verdict_p[(self._now(ids)[1], int(m.group(1)))] if m else self.second(self._now(ids)[1])
            res.append((None, None) if p is None else _logit_pair(p))
        return res


Q = "Ann has 2 pens and buys 3 more. How many pens?"
GOOD = {"question": Q, "steps": ["Ann has 2 pens.", "She buys 3, so 2 + 3 = 5.", "The answer is 5."]}


def _scorer(tok, script, cfg=None, **kw):
    eng = ScriptedEngine(tok, script, **kw)
    assert isinstance(eng, JudgeEngine)
    return RPRMScorer(eng, cfg or ScoreConfig(k=3)), eng


def test_p_yes_is_two_way_softmax():
    assert p_yes((math.log(0.3), math.log(0.1))) == pytest.approx(0.75)
    assert p_yes((-50.0, -50.0)) == pytest.approx(0.5)
    assert p_yes((None, -1.0)) is None and p_yes((-1.0, None)) is None
    assert p_yes((-math.inf, -1.0)) == 0.0 and p_yes((-1.0, -math.inf)) == 1.0


def test_verdict_token_ids_come_from_tokenizer(judge_tokenizer):
    yes, no = verdict_token_ids(judge_tokenizer)
    assert judge_tokenizer.decode([yes]) == " Yes" and judge_tokenizer.decode([no]) == " No"


def test_single_pass_reads_verdict_position_and_means_over_k(judge_tokenizer):
    ps = {0: 0.9, 1: 0.6, 2: 0.3}
    sc, eng = _scorer(judge_tokenizer, lambda text, step, j: ("yes", ps[j]), cfg=ScoreConfig(k=3, single_pass=True))
    [r] = sc.score([GOOD])
    assert r.status == "ok" and r.error is None
    for st in r.steps:
        assert st.p_yes == pytest.approx([0.9, 0.6, 0.3])
        assert st.score == pytest.approx(0.6)
        assert (st.n_samples, st.n_fallback, st.n_second_pass, st.flag) == (3, 0, 0, None)
        assert len(st.critiques) == 1
    assert eng.second_prompts == []
    assert r.generated_tokens > 0 and r.prompt_tokens > 0 and r.seconds >= 0
    # all steps in one engine call, successive steps of the item adjacent (prefix reuse)
    assert len(eng.generate_calls) == 1 and [c[0] for c in eng.generate_calls[0]] == [1, 2, 3]


def test_second_pass_by_default_reads_the_token_after_the_verdict_question(judge_tokenizer):
    """The default: critiques stop at the verdict question, generated without logprobs; a one-token pass over
    prompt + critique gives P(Yes) (the same numbers as the single pass above)."""
    ps = {0: 0.9, 1: 0.6, 2: 0.3}
    sc, eng = _scorer(judge_tokenizer, lambda text, step, j: ("yes", ps[j]))
    params = sc._params()
    assert not params.logprobs and params.stop == ["Is the step correct (Yes/No)?"]
    [r] = sc.score([GOOD])
    for st in r.steps:
        assert st.p_yes == pytest.approx([0.9, 0.6, 0.3]) and st.score == pytest.approx(0.6)
        assert (st.n_samples, st.n_fallback, st.n_second_pass, st.flag) == (3, 0, 3, None)
    assert len(eng.second_prompts) == 9 and all(p.endswith(VERDICT_PHRASE) for p in eng.second_prompts)


def test_critique_without_verdict_uses_reference_fallback_question(judge_tokenizer):
    script = lambda text, step, j: ("none", 0) if (step == 2 and j == 0) else ("yes", 0.8)  # noqa: E731
    sc, eng = _scorer(judge_tokenizer, script, cfg=ScoreConfig(k=3, single_pass=True), second=lambda text: 0.2)
    [r] = sc.score([GOOD])
    st = r.steps[1]
    assert st.n_fallback == 1 and st.n_second_pass == 1 and st.flag is None
    assert sorted(st.p_yes) == pytest.approx([0.2, 0.8, 0.8])
    assert st.score == pytest.approx(0.6)
    [prompt] = eng.second_prompts
    assert prompt.endswith("I cannot decide" + FALLBACK_QUESTION)
    assert r.steps[0].n_fallback == 0 and r.steps[2].n_fallback == 0


def test_every_sample_failing_gives_flagged_fallback_score(judge_tokenizer):
    script = lambda text, step, j: ("none", 0) if step == 3 else ("yes", 0.9)  # noqa: E731
    sc, _ = _scorer(judge_tokenizer, script, cfg=ScoreConfig(k=2, fallback_score=0.37), second=lambda text: None)
    [r] = sc.score([GOOD])
    assert r.status == "ok"
    assert r.steps[2].score == 0.37 and r.steps[2].flag == "all_failed" and r.steps[2].p_yes == []
    assert r.steps[2].n_failed == 2 and r.steps[2].n_fallback == 2
    assert r.steps[0].flag is None and r.steps[0].score == pytest.approx(0.9)


def test_early_rejection_stops_after_a_low_step(judge_tokenizer):
    bad_item = {"question": Q, "steps": ["Ann has 2 pens.", "She buys 3, so 2 + 3 = 6.", "The answer is 6."]}
    script = lambda text, step, j: ("yes", 0.1 if "= 6" in text else 0.9)  # noqa: E731
    sc, eng = _scorer(judge_tokenizer, script, cfg=ScoreConfig(k=2, early_reject_threshold=0.5))
    good, bad = sc.score([GOOD, bad_item])
    assert good.step_scores == pytest.approx([0.9, 0.9, 0.9])
    assert bad.step_scores[:2] == pytest.approx([0.9, 0.1]) and bad.step_scores[2] is None
    assert bad.steps[2].flag == "not_scored" and bad.steps[2].n_samples == 0
    assert bad.filled_step_scores() == pytest.approx([0.9, 0.1, 0.1])
    judged = [c[1] for calls in eng.generate_calls for c in calls]
    assert "The answer is 6." not in judged  # never sent to the engine
    assert len(eng.generate_calls) == 3  # one engine call per step depth, batched across items


@pytest.mark.parametrize("lookahead", [1, 2, 5])
def test_early_rejection_lookahead_keeps_scores_and_takes_fewer_rounds(judge_tokenizer, lookahead):
    steps = ["Ann has 2 pens.", "She buys 3, so 2 + 3 = 6.", "She has 6.", "Still 6.", "The answer is 6."]
    items = [GOOD, {"question": Q, "steps": steps}]
    script = lambda text, step, j: ("yes", 0.1 if "2 + 3 = 6" in text else 0.9)  # noqa: E731
    plain, eng0 = _scorer(judge_tokenizer, script, cfg=ScoreConfig(k=2, early_reject_threshold=0.5))
    ahead, eng1 = _scorer(judge_tokenizer, script, cfg=ScoreConfig(k=2, early_reject_threshold=0.5,
                                                                   early_reject_lookahead=lookahead))
    want, got = plain.score(items), ahead.score(items)
    assert [r.to_dict()["steps"] for r in got] == [r.to_dict()["steps"] for r in want]
    assert [s.flag for s in got[1].steps] == [None, None, "not_scored", "not_scored", "not_scored"]
    assert len(eng1.generate_calls) == -(-3 // (1 + lookahead)) < len(eng0.generate_calls) == 3
    judged = {c[1] for calls in eng1.generate_calls for c in calls}
    assert ("She has 6." in judged) == (lookahead >= 2) and ("Still 6." in judged) == (lookahead >= 3)
    assert got[1].generated_tokens >= want[1].generated_tokens  # scored ahead: paid for, then dropped


def test_adaptive_k_samples_more_only_when_first_verdicts_disagree(judge_tokenizer):
    def script(text, step, j):
        if step == 2:
            return ("yes", [0.9, 0.2, 0.7, 0.6][j])
        return ("yes", 0.8)

    sc, eng = _scorer(judge_tokenizer, script, cfg=ScoreConfig(k=4, adaptive_k=True, adaptive_min_k=2))
    [r] = sc.score([GOOD])
    assert [st.n_samples for st in r.steps] == [2, 4, 2]
    assert r.steps[1].p_yes == pytest.approx([0.9, 0.2, 0.7, 0.6])
    assert r.steps[0].score == pytest.approx(0.8)
    assert [(c[0], c[2]) for c in eng.generate_calls[1]] == [(2, 2)]


def test_adaptive_k_confirm_no_checks_rejections_only(judge_tokenizer):
    # step 2 is rejected by its first critique and accepted by the second: confirm_no samples it again and
    # averages; a step every first critique accepts is not sampled again
    script = lambda text, step, j: ("yes", [0.1, 0.9][j] if step == 2 else 0.8)  # noqa: E731
    sc, eng = _scorer(judge_tokenizer, script, cfg=ScoreConfig(k=2, adaptive_k=True, adaptive_min_k=1,
                                                               adaptive_rule="confirm_no"))
    [r] = sc.score([GOOD])
    assert [st.n_samples for st in r.steps] == [1, 2, 1]
    assert r.steps[1].score == pytest.approx(0.5)
    plain, _ = _scorer(judge_tokenizer, lambda text, step, j: ("yes", 0.1), cfg=ScoreConfig(
        k=3, adaptive_k=True, adaptive_min_k=1, adaptive_rule="disagree"))
    assert [st.n_samples for st in plain.score([GOOD])[0].steps] == [1, 1, 1]  # one rejection: agrees with itself
    with pytest.raises(ValueError, match="adaptive_rule"):
        ScoreConfig(adaptive_rule="sometimes")


def test_bad_items_get_statuses_and_never_fail_the_batch(judge_tokenizer):
    sc, _ = _scorer(judge_tokenizer, lambda text, step, j: ("yes", 0.7), cfg=ScoreConfig(k=1))
    items = [
        GOOD,
        {"question": Q, "steps": []},
        {"question": Q, "steps": ["ok", "   "]},
        {"question": "", "steps": ["a"]},
        {"question": Q},
        {"question": Q, "steps": ["a", 3]},
        "not a mapping",
        {"question": Q, "response": "Ann has 2 pens.\n\nShe has 5."},
        {"problem": Q, "steps": ["Ann has 2 pens."]},  # ProcessBench field name
        {"question": Q, "response": "\n\n  \n"},
    ]
    res = sc.score(items)
    assert [r.status for r in res] == ["ok", "no_steps", "empty_step", "bad_input", "bad_input", "bad_input",
                                       "bad_input", "ok", "ok", "no_steps"]
    assert "step 2" in res[2].error and "step 2" in res[5].error
    assert res[0].step_scores == pytest.approx([0.7] * 3)
    assert res[7].step_scores == pytest.approx([0.7, 0.7]) and res[8].step_scores == pytest.approx([0.7])
    assert all(r.steps == [] for r in res[1:7])


def test_prompt_longer_than_context_is_too_long(judge_tokenizer):
    long_step = "x = 1 + 1 = 2. " * 40
    item = {"question": Q, "steps": ["Ann has 2 pens.", long_step, "The answer is 5."]}
    sc, eng = _scorer(judge_tokenizer, lambda text, step, j: ("yes", 0.7), cfg=ScoreConfig(k=1))
    n_first = len(judge_tokenizer.encode(
        __import__("rl_prm.score.prompt", fromlist=["judge_prompt"]).judge_prompt(judge_tokenizer, Q, item["steps"], 0),
        add_special_tokens=False))
    sc.config = ScoreConfig(k=1, max_prompt_tokens=n_first + 20)
    good, r = sc.score([GOOD, item])
    assert good.status == "ok"
    assert r.status == "too_long" and "step 2" in r.error and str(n_first + 20) in r.error
    assert r.steps[0].score == pytest.approx(0.7)
    assert [s.flag for s in r.steps[1:]] == ["too_long", "too_long"] and r.step_scores[1:] == [None, None]


def test_engine_failure_is_isolated_to_the_failing_item(judge_tokenizer):
    boom = {"question": "BOOM " + Q, "steps": ["a = 1."]}
    sc, _ = _scorer(judge_tokenizer, lambda text, step, j: ("yes", 0.7), cfg=ScoreConfig(k=1), fail_on="BOOM")
    good, bad = sc.score([GOOD, boom])
    assert good.status == "ok" and good.step_scores == pytest.approx([0.7] * 3)
    assert bad.status == "error" and "engine exploded" in bad.error


def test_item_score_serialises_with_step_scores(judge_tokenizer):
    sc, _ = _scorer(judge_tokenizer, lambda text, step, j: ("yes", 0.7), cfg=ScoreConfig(k=1))
    [r] = sc.score([GOOD])
    d = r.to_dict()
    assert d["step_scores"] == pytest.approx([0.7] * 3) and d["status"] == "ok"
    assert isinstance(r, ItemScore) and len(d["steps"]) == 3


def test_config_validation():
    with pytest.raises(ValueError, match="k must be"):
        ScoreConfig(k=0)
    with pytest.raises(ValueError, match="adaptive_min_k"):
        ScoreConfig(k=2, adaptive_k=True, adaptive_min_k=3)


# ------------------------------------------------------------------------- judge prompts shared by responses

BRANCH = {"question": Q, "steps": ["Ann has 2 pens.", "She buys 3, so 2 + 3 = 6.", "The answer is 6."]}


def _prompts_sent(eng) -> list[str]:
    return [c[1] for calls in eng.generate_calls for c in calls]


@pytest.mark.parametrize("k", [1, 3])
def test_a_judge_prompt_two_responses_share_is_judged_once_with_the_same_score(judge_tokenizer, k):
    """GOOD twice and a response sharing its first step: 3 + 3 + 3 judge prompts, 5 distinct; every response
    gets the scores it gets when scored alone, and the work is counted once, on the response that did it."""
    script = lambda text, step, j: ("yes", 0.2 if "= 6" in text else 0.9)  # noqa: E731
    alone = [_scorer(judge_tokenizer, script, cfg=ScoreConfig(k=k))[0].score([it])[0] for it in (GOOD, GOOD, BRANCH)]
    sc, eng = _scorer(judge_tokenizer, script, cfg=ScoreConfig(k=k))
    got = sc.score([GOOD, GOOD, BRANCH])
    assert sorted(_prompts_sent(eng)) == sorted(set(GOOD["steps"] + BRANCH["steps"]))  # 5 prompts, each once
    for g, a in zip(got, alone):
        assert g.step_scores == pytest.approx(a.step_scores)
    assert [(r.judged_steps, r.shared_steps) for r in got] == [(3, 0), (0, 3), (2, 1)]
    assert got[1].generated_tokens == 0 and got[1].judge_cost()["judge_critiques"] == 0
    assert got[0].judge_cost()["judge_critiques"] == 3 * k and all(s.shared for s in got[1].steps)
    from rl_prm.metrics import judge_cost_metrics

    m = judge_cost_metrics([r.judge_cost() for r in got])
    assert (m["prm/judge_prompts"], m["prm/judge_prompts_distinct"]) == (9, 5)
    assert m["prm/dedup_frac"] == pytest.approx(4 / 9) and m["prm/critiques"] == 5 * k
    assert m["prm/critique_tokens"] == sum(r.generated_tokens for r in got) < sum(r.generated_tokens for r in alone)


def test_calls_sharing_a_memo_judge_each_prompt_once_even_in_flight(judge_tokenizer):
    """verl scores each response in its own thread: with one JudgeMemo, 8 concurrent calls of the same two
    responses send each distinct judge prompt to the engine once, and every call gets the same scores."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from rl_prm.score.memo import JudgeMemo

    gate = threading.Barrier(8)
    script = lambda text, step, j: ("yes", 0.2 if "= 6" in text else 0.9)  # noqa: E731
    eng = ScriptedEngine(judge_tokenizer, script)
    lock, generate = threading.Lock(), eng.generate

    def slow_generate(*a, **kw):  # one call at a time, as one engine; slow enough for the others to pile up
        import time

        time.sleep(0.05)
        with lock:
            return generate(*a, **kw)

    eng.generate = slow_generate
    sc = RPRMScorer(eng, ScoreConfig(k=2), memo=JudgeMemo())

    def call(i):
        gate.wait()
        return sc.score([GOOD if i % 2 else BRANCH])[0]

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(call, range(8)))
    assert sorted(_prompts_sent(eng)) == sorted(set(GOOD["steps"] + BRANCH["steps"]))
    assert {tuple(r.step_scores) for r in got[1::2]} == {tuple(got[1].step_scores)}
    assert {tuple(r.step_scores) for r in got[0::2]} == {tuple(got[0].step_scores)}
    assert sum(r.judged_steps for r in got) == 5 and sum(r.shared_steps for r in got) == 8 * 3 - 5


def test_a_failed_judgement_is_not_kept_for_later_calls(judge_tokenizer):
    from rl_prm.score.memo import JudgeMemo

    script = lambda text, step, j: ("yes", 0.9)  # noqa: E731
    eng = ScriptedEngine(judge_tokenizer, script, fail_on="2 + 3 = 6")
    sc = RPRMScorer(eng, ScoreConfig(k=1), memo=JudgeMemo())
    assert sc.score([BRANCH])[0].status == "error"
    eng.fail_on = None  # the engine recovered: the same response is judged again, not served the failure
    again = sc.score([BRANCH])[0]
    assert again.status == "ok" and again.step_scores == pytest.approx([0.9, 0.9, 0.9])


@pytest.mark.parametrize("lookahead", [0, 1])
def test_early_rejection_on_shared_steps_gives_the_scores_of_scoring_alone(judge_tokenizer, lookahead):
    """A response whose rejecting step was judged for another one is cut there too."""
    script = lambda text, step, j: ("yes", 0.1 if "= 6" in text else 0.9)  # noqa: E731
    cfg = lambda: ScoreConfig(k=1, early_reject_threshold=0.5, early_reject_lookahead=lookahead)  # noqa: E731
    longer = {"question": Q, "steps": BRANCH["steps"][:2] + ["She has 6.", "The answer is 6."]}
    alone = [_scorer(judge_tokenizer, script, cfg=cfg())[0].score([it])[0] for it in (BRANCH, longer)]
    got = _scorer(judge_tokenizer, script, cfg=cfg())[0].score([BRANCH, longer])
    for g, a in zip(got, alone):
        assert g.step_scores == a.step_scores and [s.flag for s in g.steps] == [s.flag for s in a.steps]
    assert [s.flag for s in got[1].steps] == [None, None, "not_scored", "not_scored"]


def test_judge_workers_get_whole_questions():
    """num_workers > 1: a question's responses go to one worker, so the judge prompts they share meet there."""
    from rl_prm.score.pool import question_shards

    qs = ["a", "a", "b", "b", "b", "c", "a", "d"]
    shards = question_shards(qs, 3)
    assert sorted(j for s in shards for j in s) == list(range(len(qs)))
    for q in set(qs):
        assert sum(any(qs[j] == q for j in s) for s in shards) == 1, q
    assert max(map(len, shards)) - min(map(len, shards)) <= 2 and all(s == sorted(s) for s in shards)


def test_judge_workers_get_even_judge_work_not_even_item_counts():
    """Four rollouts that agree on every step are three judge prompts, not twelve: shards are evened out on the
    distinct judge prompts each worker will judge."""
    from rl_prm.score.pool import distinct_judge_prompts, question_shards

    same = {"question": "A", "steps": ["a1", "a2", "a3"]}
    items = [same] * 4 + [{"question": "B", "steps": [f"b{i}{k}" for k in range(3)]} for i in range(2)] + \
        [{"question": "C", "steps": ["c1", "c2"]}]
    work = distinct_judge_prompts(items)
    assert work == {"A": 3, "B": 6, "C": 2}
    shards = question_shards([it["question"] for it in items], 2, work)
    load = [sum(work[q] for q in {items[j]["question"] for j in s}) for s in shards]
    assert sorted(load) == [5, 6]  # by item count it would be A (4 items, 3 prompts) against B + C (8 prompts)
