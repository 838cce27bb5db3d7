"""How the scorer's requests reach a judge engine: in rounds of batched calls, or streamed.

The scorer describes the work for each item as a flow (a generator): it yields a list of requests
(`Gen`: n critiques of one prompt; `Next`: a one-token pass) and is sent their answers in the same
order (a SampleList per Gen, a Pair per Next), until it returns. Two drivers run flows:

  run_rounds     any JudgeEngine: each round, the waiting requests of every flow go in one `generate`
                 call and one `score_next` call; a round lasts as long as its longest critique.
  run_streaming  an engine that `can_stream` (in-process vLLM): a flow's next requests join the
                 running batch as soon as its previous ones finish, so an item's next step starts
                 while other items' critiques are still decoding.

Both send each item the same requests with the same seeds; only the batching differs.
Failures: a `generate` failure fails the items in that call (isolated by retrying item by item);
a one-token pass that fails answers (None, None). When the engine raises mid-stream, the streaming
driver aborts what is in flight and hands the waiting flows to run_rounds, so the same rules apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generator

from rl_prm.score.engines import GenParams


@dataclass
class Gen:
    """Sample `n` critiques of `prompt` (token ids) with `seed`."""

    prompt: list[int]
    n: int
    seed: int | None


@dataclass
class Next:
    """Score the next token after `prompt` (the one-token second pass)."""

    prompt: list[int]


Request = Gen | Next
Flow = Generator[list[Request], list[Any], None]
OnFail = Callable[[int, BaseException], None]  # (item, error): the item's flow was closed


def run(engine: Any, flows: dict[int, Flow], params: GenParams, on_fail: OnFail) -> None:
    """Run every flow to its end: streamed where the engine can, else in rounds."""
    driver = run_streaming if getattr(engine, "can_stream", False) else run_rounds
    driver(engine, flows, params, on_fail)


def _advance(flow: Flow, answers: list[Any] | None) -> list[Request] | None:
    """The flow's next requests (None: it returned). A flow that yields [] is sent [] at once."""
    try:
        reqs = next(flow) if answers is None else flow.send(answers)
        while not reqs:
            reqs = flow.send([])
        return reqs
    except StopIteration:
        return None


def _generate(engine: Any, gens: list[tuple[int, int, Gen]], params: GenParams) -> tuple[dict, dict]:
    """One `generate` call for (item, index, Gen) triples -> ({(item, index): samples}, {item: error})."""
    if not gens:
        return {}, {}
    try:
        outs = engine.generate([g.prompt for _, _, g in gens], [g.n for _, _, g in gens],
                               [g.seed for _, _, g in gens], params)
        return {(i, j): o for (i, j, _), o in zip(gens, outs)}, {}
    except Exception as e:  # isolate the failing item(s): retry item by item
        items = sorted({i for i, _, _ in gens})
        if len(items) == 1:
            return {}, {items[0]: e}
        got, failed = {}, {}
        for it in items:
            g, f = _generate(engine, [x for x in gens if x[0] == it], params)
            got.update(g)
            failed.update(f)
        return got, failed


def _score_next(engine: Any, nexts: list[tuple[int, int, Next]]) -> dict:
    """One `score_next` call -> {(item, index): pair}; a prompt that fails alone answers (None, None)."""
    if not nexts:
        return {}
    try:
        pairs = engine.score_next([q.prompt for _, _, q in nexts])
    except Exception:
        pairs = []
        for _, _, q in nexts:
            try:
                pairs.extend(engine.score_next([q.prompt]))
            except Exception:
                pairs.append((None, None))
    return {(i, j): p for (i, j, _), p in zip(nexts, pairs)}


def run_rounds(engine: Any, flows: dict[int, Flow], params: GenParams, on_fail: OnFail,
               waiting: dict[int, list[Request]] | None = None) -> None:
    """Rounds of one generate + one score_next call. `waiting`: flows already started, with the requests
    they wait on (the streaming driver's hand-over); None starts every flow."""
    if waiting is None:
        waiting = {}
        for i, flow in flows.items():
            reqs = _advance(flow, None)
            if reqs:
                waiting[i] = reqs
    while waiting:
        tagged = [(i, j, q) for i, reqs in waiting.items() for j, q in enumerate(reqs)]
        got, failed = _generate(engine, [t for t in tagged if isinstance(t[2], Gen)], params)
        got.update(_score_next(engine, [t for t in tagged if isinstance(t[2], Next)]))
        for i, e in failed.items():
            flows[i].close()
            on_fail(i, e)
            del waiting[i]
        for i in list(waiting):
            reqs = _advance(flows[i], [got[(i, j)] for j in range(len(waiting[i]))])
            if reqs:
                waiting[i] = reqs
            else:
                del waiting[i]


def run_streaming(engine: Any, flows: dict[int, Flow], params: GenParams, on_fail: OnFail) -> None:
    """Each flow's requests are submitted as soon as it yields them; the engine is stepped and each
    finished group of answers is sent back to its flow at once."""
    inflight: dict[str, tuple[int, int]] = {}  # request id -> (item, index in its group)
    groups: dict[int, list] = {}  # item -> [requests, answers, requests still in flight]

    def feed(i: int, answers: list[Any] | None) -> None:
        while True:
            reqs = _advance(flows[i], answers)
            if reqs is None:
                return
            answers, ids = [None] * len(reqs), []
            try:
                for j, q in enumerate(reqs):
                    if isinstance(q, Gen):
                        rid = engine.submit(q.prompt, q.n, q.seed, params)
                    else:
                        try:
                            rid = engine.submit(q.prompt, None, None, None)
                        except Exception:
                            answers[j] = (None, None)
                            continue
                    inflight[rid] = (i, j)
                    ids.append(rid)
            except Exception as e:  # e.g. a prompt the engine refuses: this item fails, the others go on
                engine.abort(ids)
                for rid in ids:
                    inflight.pop(rid, None)
                flows[i].close()
                on_fail(i, e)
                return
            if ids:
                groups[i] = [reqs, answers, len(ids)]
                return

    for i in list(flows):
        feed(i, None)
    while inflight:
        try:
            done = engine.poll()
        except Exception:
            engine.abort(list(inflight))
            inflight.clear()
            waiting = {i: g[0] for i, g in groups.items()}
            run_rounds(engine, {i: flows[i] for i in waiting}, params, on_fail, waiting=waiting)
            return
        for rid, answer in done:
            i, j = inflight.pop(rid)
            group = groups[i]
            group[1][j] = answer
            group[2] -= 1
            if group[2] == 0:
                del groups[i]
                feed(i, group[1])
