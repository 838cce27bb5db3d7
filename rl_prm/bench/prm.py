"""`rl-prm bench prm`: R-PRM scoring work, reference protocol vs ours, side by side in one run.

Reference (docs/protocols.md, R-PRM step scoring): K=10 critiques for every step, generation until the
model stops, then a second full forward pass over prompt + critique prefix for every critique;
an engine WITHOUT prefix caching, critiques sampled at --temperature / --top-p (default: the world judge's
0.6 / 1.0 with --judge world, R-PRM's 0.95 / 0.95 otherwise). Ours, by default the world recipe's protocol:
one greedy critique per step (--k 1; --our-temperature defaults to 0 when --k is 1), generation stopped
at the verdict question, P(Yes) from a one-token pass over the prefix-cached prompt + critique. Flags
give the others: adaptive K (--k N --min-k M --adaptive-rule), early rejection (--early-reject).

Printed: judge tokens generated, judge prompt tokens processed (logical, and computed after
prefix-cache hits), wall time, verdict agreement at threshold 0.5 (step level on the steps ours
scored; and the first-error prediction per item, ProcessBench-style), and ours/reference ratios; then
how close our scorer runs to its engine's limit: its generated tokens/s (streamed, and in rounds of
batched calls) against the same engine's plain `generate` of the same critiques (same prompts and
lengths, one call, no logprobs; and with the scorer's seeds and verdict logprobs). Wall times: each
engine scores a quarter of the items untimed first (a fresh CPU engine's first pass is ~2x slower),
then the medians of --repeat runs. Every generated token counts, also those of steps scored ahead
(--lookahead) and then dropped.
Inputs (--judge): the world's R-PRM judge on the world's mini-ProcessBench (default), or the random tiny
judge on tiny-arith problems (half with a corrupted step); ProcessBench F1 of both protocols is printed.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from typing import Any

from rl_prm import argtypes
from rl_prm.eval.metrics import predict_first_error, processbench_metrics
from rl_prm.models import ModelUnavailable, resolve_model
from rl_prm.score.engines import VLLMJudgeEngine
from rl_prm.score.scorer import RPRMScorer, ScoreConfig
from rl_prm.tiny import judge_path as tiny_judge_path
from rl_prm.tiny.arith import corrupt, make_problem
from rl_prm.world.judge_eval import SAMPLED_TEMPERATURE
from rl_prm.world.tasks import eval_items, processbench


def _tiny_items(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        p = make_problem(rng)
        if i % 2:
            p = corrupt(p, rng)
        out.append({"question": p.question, "steps": p.step_texts, "label": p.label})
    return out


def _world_items(n: int, seed: int) -> list[dict[str, Any]]:
    """The world's mini-ProcessBench ("test" split): each item's scored prefix, as the ProcessBench eval scores it."""
    return eval_items(processbench("test", n, seed=seed))


def _inputs(judge: str, n: int | None, seed: int) -> tuple[str, list[dict[str, Any]], str]:
    """(judge dir, items, what they are) for --judge world | tiny | DIR."""
    if judge == "world":
        n = n or 40
        return resolve_model("world", "judge"), _world_items(n, seed), f"{n} world mini-ProcessBench items"
    n = n or 8
    if judge == "tiny":
        judge = str(tiny_judge_path())
    return judge, _tiny_items(n, seed), f"{n} tiny-arith problems (half corrupted)"


def _engine(judge: str, max_model_len: int, prefix_caching: bool):
    return VLLMJudgeEngine.from_path(judge, enable_prefix_caching=prefix_caching, max_model_len=max_model_len,
                                     kv_cache_gib=1)


class _Recording:
    """JudgeEngine wrapper: keeps every critique request (prompt ids, tokens generated per sample),
    batched (`generate`) or streamed (`submit`/`poll`); `stream=False` hides the engine's streaming."""

    def __init__(self, inner: Any, stream: bool = True):
        self.inner, self.work, self.stream, self._prompts = inner, [], stream, {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def can_stream(self) -> bool:
        return self.stream and getattr(self.inner, "can_stream", False)

    def generate(self, prompts, n, seeds, params):
        out = self.inner.generate(prompts, n, seeds, params)
        self.work += [(list(p), [len(s.token_ids) for s in samples]) for p, samples in zip(prompts, out)]
        return out

    def submit(self, prompt, n, seed, params):
        rid = self.inner.submit(prompt, n, seed, params)
        self._prompts[rid] = list(prompt) if n is not None else None
        return rid

    def poll(self):
        done = self.inner.poll()
        for rid, answer in done:
            prompt = self._prompts.pop(rid, None)
            if prompt is not None:
                self.work.append((prompt, [len(s.token_ids) for s in answer]))
        return done


def _raw_generate(llm: Any, work: list[tuple[list[int], list[int]]], **settings: Any) -> tuple[int, float]:
    """The engine's own limit on the scorer's work: one plain `generate` call of every critique the scorer
    sampled, same prompt, exactly as many tokens (ignore_eos), no logprobs (`settings`: extra
    SamplingParams, e.g. the scorer's seeds and verdict logprobs); prefix cache emptied first."""
    from vllm import SamplingParams  # seconds to import: not before `--help` or a bad argument

    prompts, sps = [], []
    for prompt, lens in work:
        for n_tok in lens:
            if n_tok:
                prompts.append({"prompt_token_ids": prompt})
                sps.append(SamplingParams(temperature=1.0, max_tokens=n_tok, min_tokens=n_tok, ignore_eos=True, **settings))
    if hasattr(llm, "reset_prefix_cache"):
        llm.reset_prefix_cache()
    t0 = time.perf_counter()
    outs = llm.generate(prompts, sps, use_tqdm=False)
    return sum(len(o.outputs[0].token_ids) for o in outs), time.perf_counter() - t0


def _totals(res: list, wall: float) -> dict[str, Any]:
    return {
        "res": res, "wall": wall,
        "gen": sum(r.generated_tokens for r in res),
        "prompt": sum(r.prompt_tokens for r in res),
        "computed": sum(r.prompt_tokens - r.cached_prompt_tokens for r in res),
        "samples": sum(st.n_samples for r in res for st in r.steps),
        "second": sum(st.n_second_pass for r in res for st in r.steps),
    }


def _run(judge: str, items, cfg, prefix_caching: bool, max_model_len: int, repeat: int = 0) -> dict[str, Any]:
    """Score `items` on a fresh engine after an untimed warm-up pass (a quarter of them). repeat > 0: also, `repeat` times in turn
    (median wall times), the same in rounds of batched calls (streaming hidden), streamed, and the
    engine's plain generate of the critiques ours sampled (without and with the scorer's settings)."""
    inner = _engine(judge, max_model_len, prefix_caching)

    def timed(fn: Any) -> tuple[Any, float]:
        inner.llm.reset_prefix_cache()
        t0 = time.perf_counter()
        got = fn()
        return got, time.perf_counter() - t0

    try:
        RPRMScorer(inner, cfg).score(items[: max(2, len(items) // 4)])  # a fresh CPU engine's first pass is ~2x slower
        engine = _Recording(inner)
        res, wall = timed(lambda: RPRMScorer(engine, cfg).score(items))
        out = _totals(res, wall)
        out["streamed"] = engine.can_stream
        walls: dict[str, list[float]] = {"rounds": [], "ours": [wall], "raw": [], "raw_set": []}
        for rep in range(repeat):
            rounds, w = timed(lambda: RPRMScorer(_Recording(inner, stream=False), cfg).score(items))
            walls["rounds"].append(w)
            if rep:
                walls["ours"].append(timed(lambda: RPRMScorer(inner, cfg).score(items))[1])
            out["raw_tokens"], w = _raw_generate(inner.llm, engine.work)
            walls["raw"].append(w)
            walls["raw_set"].append(_raw_generate(inner.llm, engine.work, seed=cfg.seed, **inner._logprob_kwargs())[1])
        if repeat:
            out["rounds"] = _totals(rounds, statistics.median(walls["rounds"]))
            out["wall"] = statistics.median(walls["ours"])
            out["raw_wall"], out["raw_set_wall"] = statistics.median(walls["raw"]), statistics.median(walls["raw_set"])
    finally:
        inner.shutdown()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="rl-prm bench prm", description=__doc__.split("\n")[0])
    ap.add_argument("--judge", default="world",
                    help="world: the world's R-PRM judge (shipped; RL_PRM_WORLD picks another) on the world's "
                         "mini-ProcessBench; tiny: the random tiny judge on tiny-arith problems; or a judge model dir (tiny-arith)")
    ap.add_argument("--n", type=argtypes.positive_int, default=None, help="items (default: 40 for world, 8 otherwise)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ref-k", type=argtypes.positive_int, default=10)
    ap.add_argument("--k", type=argtypes.positive_int, default=1, help="our K (with adaptive K, at most this many)")
    ap.add_argument("--min-k", type=argtypes.positive_int, default=1, help="our adaptive K: first samples per step")
    ap.add_argument("--margin", type=argtypes.margin, default=0.0, help="our adaptive K: agreement margin around 0.5")
    ap.add_argument("--adaptive-rule", default="disagree", choices=("disagree", "confirm_no"),
                    help="our adaptive K: sample the rest when the first verdicts disagree, or unless they are all Yes")
    ap.add_argument("--threshold", type=argtypes.probability, default=0.5,
                    help="verdict threshold and our early-rejection threshold")
    ap.add_argument("--repeat", type=argtypes.positive_int, default=3,
                    help="timed repetitions of ours / in rounds / plain generate (medians)")
    ap.add_argument("--early-reject", action=argparse.BooleanOptionalAction, default=False,
                    help="ours: stop scoring an item after its first step below --threshold (steps in order)")
    ap.add_argument("--lookahead", type=argtypes.nonneg_int, default=0,
                    help="ours: early_reject_lookahead (steps scored ahead)")
    ap.add_argument("--temperature", type=argtypes.nonneg_float, default=None,
                    help="the reference's critique temperature, and ours unless --our-temperature (default: 0.6 with "
                         "--judge world, the world judge's; 0.95, R-PRM's, otherwise)")
    ap.add_argument("--top-p", type=argtypes.top_p, default=None,
                    help="nucleus sampling of both protocols (default: 1.0 with --judge world, 0.95 otherwise)")
    ap.add_argument("--our-temperature", type=argtypes.nonneg_float, default=None,
                    help="ours only: critique temperature (default: 0, one greedy critique, when --k is 1; else "
                         "--temperature)")
    ap.add_argument("--max-critique-tokens", type=argtypes.positive_int, default=256)
    ap.add_argument("--max-model-len", type=argtypes.positive_int, default=2048)
    args = ap.parse_args(argv)
    try:
        judge, items, what = _inputs(args.judge, args.n, args.seed)
    except ModelUnavailable as e:  # a corrupt shipped world: one line, exit 2
        print(f"rl-prm bench prm: {e}", file=sys.stderr)
        return 2
    thr = args.threshold
    world = args.judge == "world"
    temperature = args.temperature if args.temperature is not None else (SAMPLED_TEMPERATURE if world else 0.95)
    top_p = args.top_p if args.top_p is not None else (1.0 if world else 0.95)
    sampling = dict(temperature=temperature, top_p=top_p, max_critique_tokens=args.max_critique_tokens)
    ref_cfg = ScoreConfig(k=args.ref_k, single_pass=False, stop_at_verdict=False, seed=args.seed, **sampling)
    sampling["temperature"] = (args.our_temperature if args.our_temperature is not None
                               else 0.0 if args.k == 1 else temperature)
    our_cfg = ScoreConfig(k=args.k, early_reject_threshold=thr if args.early_reject else None, **sampling,
                          early_reject_lookahead=args.lookahead,
                          adaptive_k=args.k > args.min_k, adaptive_min_k=min(args.min_k, args.k),
                          adaptive_margin=args.margin, adaptive_rule=args.adaptive_rule, seed=args.seed)
    ref = _run(judge, items, ref_cfg, prefix_caching=False, max_model_len=args.max_model_len)
    ours = _run(judge, items, our_cfg, prefix_caching=True, max_model_len=args.max_model_len, repeat=args.repeat)

    agree = total = 0
    first_agree = 0
    for r_ref, r_our in zip(ref["res"], ours["res"]):
        for a, b in zip(r_ref.step_scores, r_our.step_scores):
            if a is None or b is None:
                continue
            total += 1
            agree += (a >= thr) == (b >= thr)
        first_agree += predict_first_error(r_ref.step_scores, thr) == predict_first_error(r_our.step_scores, thr)
    n_steps = sum(len(it["steps"]) for it in items)

    def row(name: str, d: dict[str, Any]) -> str:
        return (f"{name:<10} gen_tokens={d['gen']:>7}  prompt_tokens={d['prompt']:>8}  computed_prompt={d['computed']:>8}  "
                f"samples={d['samples']:>5}  second_passes={d['second']:>5}  wall={d['wall']:7.2f}s")

    print(f"rl-prm bench prm: {what}, {n_steps} steps, judge {judge}, critiques at T={temperature} (ours "
          f"{our_cfg.temperature}{', greedy' if our_cfg.temperature == 0 else ''}), top_p={top_p}")
    print(f"reference: K={args.ref_k}, every step, generate to the end + second forward pass, no prefix caching")
    print("ours:      " + (f"K<={args.k} (adaptive {args.adaptive_rule}, first {our_cfg.adaptive_min_k}, margin "
                              f"{args.margin}), " if our_cfg.adaptive_k else f"K={args.k}, ")
          + ("single pass" if our_cfg.single_pass else "second pass") + ", prefix caching, stop at verdict, "
          + (f"early rejection < {thr} (lookahead {args.lookahead})" if args.early_reject else "no early rejection"))
    print(row("reference", ref))
    print(row("ours", ours))
    r = lambda a, b: a / b if b else float("nan")  # noqa: E731
    print(f"RATIO ours/reference: generated tokens {r(ours['gen'], ref['gen']):.3f}, "
          f"prompt tokens {r(ours['prompt'], ref['prompt']):.3f} (computed {r(ours['computed'], ref['computed']):.3f}), "
          f"wall {r(ours['wall'], ref['wall']):.3f}; verdict agreement @{thr}: steps {agree}/{total} "
          f"({r(agree, total):.1%}), first-error {first_agree}/{len(items)}")
    labels = [int(it["label"]) for it in items]
    for name, d in (("reference", ref), ("ours", ours)):
        m = processbench_metrics(labels, [predict_first_error(x.step_scores, thr) for x in d["res"]])
        d["f1"] = m["f1"]
        print(f"ProcessBench @{thr} {name:<9}: F1 {m['f1']:.1f} (error accuracy {m['error_acc']:.1f} on {m['n_error']}, "
              f"correct accuracy {m['correct_acc']:.1f} on {m['n_correct']})")
    print(f"RATIO ours-reference F1 {ours['f1'] - ref['f1']:+.1f} points (goal: within 2)")
    raw_tps = r(ours["raw_tokens"], ours["raw_wall"])
    print(f"engine limit: the same engine's plain generate of the critiques ours sampled (one call, same prompts "
          f"and lengths, no logprobs or stop strings): {ours['raw_tokens']} tokens in {ours['raw_wall']:.2f}s = {raw_tps:.1f} tok/s")
    print(f"  the same with the scorer's per-request seeds and verdict logprobs: {ours['raw_set_wall']:.2f}s "
          f"({r(ours['raw_wall'], ours['raw_set_wall']):.3f} of the limit)")
    for name, d in (("in rounds", ours["rounds"]), ("streamed" if ours["streamed"] else "ours", ours)):
        tps = r(d["gen"], d["wall"])
        print(f"  scorer {name:<9}: {d['gen']} tokens in {d['wall']:.2f}s = {tps:.1f} tok/s ({r(tps, raw_tps):.3f} of the limit)")
    print(f"RATIO scorer/raw engine throughput {r(r(ours['gen'], ours['wall']), raw_tps):.3f} (goal >= 0.80; "
          f"{'streamed' if ours['streamed'] else 'in rounds: this engine cannot stream'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
