"""`rl-prm bench prm`: R-PRM scoring work, reference protocol vs ours, side by side in one run.

Reference (docs/protocols.md, R-PRM step scoring): K=10 critiques for every step, generation until the
model stops, then a second full forward pass over prompt + critique prefix for every critique;
an engine WITHOUT prefix caching. Ours: single pass (P(Yes) read from the generation), prefix
caching, generation stopped right after the verdict token, early rejection, adaptive K, smaller K.

Printed: judge tokens generated, judge prompt tokens processed (logical, and computed after
prefix-cache hits), wall time, verdict agreement at threshold 0.5 (step level on the steps ours
scored; and the first-error prediction per item, ProcessBench-style), and ours/reference ratios.
Inputs: tiny-arith problems (half with a corrupted step) and the tiny judge by default.
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any


def _items(n: int, seed: int) -> list[dict[str, Any]]:
    from rl_prm.tiny.arith import corrupt, make_problem

    rng = random.Random(seed)
    out = []
    for i in range(n):
        p = make_problem(rng)
        if i % 2:
            p = corrupt(p, rng)
        out.append({"question": p.question, "steps": p.step_texts, "label": p.label})
    return out


def _engine(judge: str, max_model_len: int, prefix_caching: bool):
    from rl_prm.score.engines import VLLMJudgeEngine
    from rl_prm.vllm_engine import make_llm

    return VLLMJudgeEngine(make_llm(judge, enable_prefix_caching=prefix_caching, max_model_len=max_model_len,
                                    kv_cache_gib=1))


def _first_error(scores: list[float | None], thr: float) -> int:
    for i, s in enumerate(scores):
        if s is not None and s < thr:
            return i
    return -1


def _run(judge: str, items, cfg, prefix_caching: bool, max_model_len: int) -> dict[str, Any]:
    from rl_prm.score.scorer import RPRMScorer

    engine = _engine(judge, max_model_len, prefix_caching)
    try:
        scorer = RPRMScorer(engine, cfg)
        t0 = time.perf_counter()
        res = scorer.score(items)
        wall = time.perf_counter() - t0
    finally:
        engine.shutdown()
    return {
        "res": res, "wall": wall,
        "gen": sum(r.generated_tokens for r in res),
        "prompt": sum(r.prompt_tokens for r in res),
        "computed": sum(r.prompt_tokens - r.cached_prompt_tokens for r in res),
        "samples": sum(st.n_samples for r in res for st in r.steps),
        "second": sum(st.n_second_pass for r in res for st in r.steps),
    }


def main(argv: list[str] | None = None) -> int:
    from rl_prm.score.scorer import ScoreConfig

    ap = argparse.ArgumentParser(prog="rl-prm bench prm", description=__doc__.split("\n")[0])
    ap.add_argument("--judge", default=None, help="judge model dir (default: the tiny judge)")
    ap.add_argument("--n", type=int, default=8, help="problems (tiny-arith, half corrupted)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ref-k", type=int, default=10)
    ap.add_argument("--k", type=int, default=2, help="our K (with adaptive K, at most this many)")
    ap.add_argument("--min-k", type=int, default=1, help="our adaptive K: first samples per step")
    ap.add_argument("--margin", type=float, default=0.0, help="our adaptive K: agreement margin around 0.5")
    ap.add_argument("--threshold", type=float, default=0.5, help="verdict threshold and our early-rejection threshold")
    ap.add_argument("--max-critique-tokens", type=int, default=256)
    ap.add_argument("--max-model-len", type=int, default=2048)
    args = ap.parse_args(argv)
    judge = args.judge
    if judge is None:
        from rl_prm.tiny import judge_path

        judge = str(judge_path())
    items = _items(args.n, args.seed)
    thr = args.threshold
    ref_cfg = ScoreConfig(k=args.ref_k, max_critique_tokens=args.max_critique_tokens, single_pass=False,
                          stop_at_verdict=False, seed=args.seed)
    our_cfg = ScoreConfig(k=args.k, max_critique_tokens=args.max_critique_tokens, early_reject_threshold=thr,
                          adaptive_k=args.k > args.min_k, adaptive_min_k=min(args.min_k, args.k),
                          adaptive_margin=args.margin, seed=args.seed)
    ref = _run(judge, items, ref_cfg, prefix_caching=False, max_model_len=args.max_model_len)
    ours = _run(judge, items, our_cfg, prefix_caching=True, max_model_len=args.max_model_len)

    agree = total = 0
    first_agree = 0
    for r_ref, r_our in zip(ref["res"], ours["res"]):
        for a, b in zip(r_ref.step_scores, r_our.step_scores):
            if a is None or b is None:
                continue
            total += 1
            agree += (a >= thr) == (b >= thr)
        first_agree += _first_error(r_ref.step_scores, thr) == _first_error(r_our.step_scores, thr)
    n_steps = sum(len(it["steps"]) for it in items)
    labels_hit_ref = sum(_first_error(r.step_scores, thr) == it["label"] for r, it in zip(ref["res"], items))
    labels_hit_our = sum(_first_error(r.step_scores, thr) == it["label"] for r, it in zip(ours["res"], items))

    def row(name: str, d: dict[str, Any]) -> str:
        return (f"{name:<10} gen_tokens={d['gen']:>7}  prompt_tokens={d['prompt']:>8}  computed_prompt={d['computed']:>8}  "
                f"samples={d['samples']:>5}  second_passes={d['second']:>5}  wall={d['wall']:7.2f}s")

    print(f"rl-prm bench prm: {len(items)} problems, {n_steps} steps, judge {judge}")
    print(f"reference: K={args.ref_k}, every step, generate to the end + second forward pass, no prefix caching")
    print(f"ours:      K<={args.k} (adaptive, first {our_cfg.adaptive_min_k}, margin {args.margin}), single pass, prefix caching, "
          f"stop at verdict, early rejection < {thr}")
    print(row("reference", ref))
    print(row("ours", ours))
    r = lambda a, b: a / b if b else float("nan")  # noqa: E731
    print(f"RATIO ours/reference: generated tokens {r(ours['gen'], ref['gen']):.3f}, "
          f"prompt tokens {r(ours['prompt'], ref['prompt']):.3f} (computed {r(ours['computed'], ref['computed']):.3f}), "
          f"wall {r(ours['wall'], ref['wall']):.3f}; verdict agreement @{thr}: steps {agree}/{total} "
          f"({r(agree, total):.1%}), first-error {first_agree}/{len(items)}; "
          f"first-error == label: reference {labels_hit_ref}/{len(items)}, ours {labels_hit_our}/{len(items)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
