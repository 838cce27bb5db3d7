"""The world judge on what RL shows it: the policy's own sampled solutions, not mini-ProcessBench.

    python -m rl_prm.world.judge_rollouts [--judge DIR] [--temperatures 0.6,0.0] [--k 1]

The world policy samples ``samples`` solutions (T=1) to each of ``questions`` "train" questions; the
judge scores every step (K critiques at each temperature, as the recipe's reward.prm would); each step
is compared with the world's checker (rl_prm.world.tasks.first_wrong_step). Printed per temperature:
    missed        first-error steps scored >= 0.5 (share of first errors)
    false_alarm   steps before the first error scored < 0.5 (share of such steps)
    flagged       per kind of solution (trace: all right; miracle: right answer, a wrong step;
                  wrong_answer), the share with some step scored < 0.5 -- what a min-form reward
                  penalises; a useful judge flags miracles far more often than traces.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from typing import Sequence

from reward_fns.math_verify_reward import compute_score
from rl_prm import argtypes, logs
from rl_prm.score.scorer import RPRMScorer, ScoreConfig
from rl_prm.world.judge_units import labelled_samples
from rl_prm.world.ship import world_model
from rl_prm.world.tasks import problems


def tally(items: Sequence[dict], scores: Sequence[Sequence[float | None]], threshold: float = 0.5) -> dict:
    """Counts and shares from items ({"w": first wrong step or -1, "answer": bool}) and their step
    scores (None = not scored)."""
    c: Counter = Counter()
    for it, s in zip(items, scores):
        w = it["w"]
        for k, v in enumerate(s):
            if v is None:
                continue
            if w < 0 or k < w:
                c["correct_steps"] += 1
                c["false_alarms"] += v < threshold
            elif k == w:
                c["first_errors"] += 1
                c["missed"] += v >= threshold
        kind = "wrong_answer" if not it["answer"] else ("trace" if w < 0 else "miracle")
        c[kind] += 1
        c[f"{kind}_flagged"] += any(v is not None and v < threshold for v in s)
    share = lambda a, b: round(c[a] / c[b], 3) if c[b] else None  # noqa: E731
    return {"counts": dict(c), "missed": share("missed", "first_errors"),
            "false_alarm": share("false_alarms", "correct_steps"),
            "flagged": {k: share(f"{k}_flagged", k) for k in ("trace", "miracle", "wrong_answer")}}


def policy_rollouts(questions: int = 64, samples: int = 4, seed: int = 0) -> list[dict]:
    """The world policy's sampled solutions: [{question, steps, w, answer}]."""
    from transformers import AutoModelForCausalLM, AutoTokenizer  # seconds to import: only where a model runs

    path = world_model("policy")
    tok, model = AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path).eval()
    probs = problems("train", questions, seed=seed + 11) * samples
    found = labelled_samples(model, tok, [p.question for p in probs], seed=seed + 5)
    return [{"question": q, "steps": steps, "w": w, "answer": compute_score("world", text, str(p.answer)) > 0.5}
            for p, (q, text, steps, w) in zip(probs, found)]


def judge_on_rollouts(judge, items: list[dict], temperatures: Sequence[float] = (0.6,), k: int = 1,
                      seed: int = 0, max_critique_tokens: int = 224) -> dict:
    """{temperature: tally(...)} of ``judge`` (a model dir) on ``items``; one engine per temperature."""
    out = {}
    for t in temperatures:
        scorer = RPRMScorer.from_path(judge, ScoreConfig(k=k, temperature=t, top_p=1.0, seed=seed,
                                                         max_critique_tokens=max_critique_tokens),
                                      max_model_len=2048, kv_cache_gib=1)
        try:
            res = scorer.score([{"question": it["question"], "steps": it["steps"]} for it in items])
        finally:
            scorer.engine.shutdown()
        out[str(t)] = tally(items, [[s.score for s in r.steps] for r in res])
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--judge", default=None, help="judge model dir (default: the world judge, shipped; RL_PRM_WORLD picks another)")
    ap.add_argument("--temperatures", default="0.6", help="critique temperatures, comma list")
    ap.add_argument("--k", type=argtypes.positive_int, default=1, help="critiques per step")
    ap.add_argument("--questions", type=argtypes.positive_int, default=64)
    ap.add_argument("--samples", type=argtypes.positive_int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--verbose", action="store_true", help="engine / library output on the console, not in log files")
    a = ap.parse_args()
    with logs.session("judge-rollouts", verbose_flag=a.verbose):
        judge = a.judge or str(world_model("judge"))
        items = policy_rollouts(a.questions, a.samples, a.seed)
        temps = [float(t) for t in a.temperatures.split(",")]
        report = {"judge": judge, "rollouts": len(items),
                  "by_temperature": judge_on_rollouts(judge, items, temps, a.k, a.seed)}
    print(json.dumps(report, indent=1))
