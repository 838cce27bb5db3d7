"""PRM-guided greedy step search (R-PRM paper, "guided search").

For every problem, until an answer or the step cap:
  1. the policy samples ``n`` candidate next steps (generation stops at the step separator "\\n\\n");
  2. the judge scores each candidate as the next step given the steps kept so far (mean P(Yes)
     over its K critiques; only the new step is judged, ``ScorerSource.score_last``; a critique
     without a verdict gets the scorer's fallback question rather than being dropped);
  3. the best candidate is kept (ties -> first; a candidate without a score -- every critique
     dropped -- only wins when no candidate has one).
A problem stops when the kept step holds ``\\boxed``, the policy ended its answer there (EOS instead
of the separator), no candidate has any text, or ``max_steps`` is reached (a step cut at
``max_step_tokens`` is kept as a step). All live problems advance together in
one policy call and one judge call per round.
"""

from __future__ import annotations

from typing import Any, Sequence

from tqdm.auto import tqdm

from reward_fns.math_verify_reward import score_detail
from rl_prm.eval.math_eval import chat_prompt
from rl_prm.eval.scoring import ScorerSource

STEP_SEP = "\n\n"


def pick_best(scores: Sequence[float | None]) -> int:
    """Index of the best candidate (max score, first on ties, unscored only if none is scored)."""
    best, best_s = 0, None
    for i, s in enumerate(scores):
        if s is not None and (best_s is None or s > best_s):
            best, best_s = i, s
    return best


def guided_search(policy_llm: Any, source: ScorerSource, items: Sequence[dict], *, n: int = 4,
                  max_steps: int = 12, max_step_tokens: int = 256, temperature: float = 0.7, top_p: float = 1.0,
                  seed: int = 0, progress: bool = True) -> list[dict]:
    """Runs the search; returns per item {"id", "response", "steps", "step_scores", "finished", "rounds"}
    (``finished``: "answer" | "eos" | "step_cap" | "no_candidate")."""
    from vllm import SamplingParams  # vllm: seconds to import; only the search itself needs it (grading does not)

    tok = policy_llm.get_tokenizer()
    state = [{"id": it["id"], "question": it["problem"], "prompt": chat_prompt(tok, it["problem"]),
              "steps": [], "step_scores": [], "finished": None} for it in items]
    bar = tqdm(total=max_steps, desc="guided search (rounds)", unit="round", disable=not progress)
    for rnd in range(max_steps):
        live = [s for s in state if s["finished"] is None]
        if not live:
            break
        prompts = [s["prompt"] + "".join(st + STEP_SEP for st in s["steps"]) for s in live]
        params = [SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_step_tokens,
                                 stop=[STEP_SEP], seed=seed + 100_003 * rnd + i) for i in range(len(live))]
        outs = policy_llm.generate(prompts, params, use_tqdm=False)
        cand_items, owners = [], []
        cands_of: list[list[tuple[str, str]]] = []
        for j, (s, o) in enumerate(zip(live, outs)):
            cands = []
            for c in o.outputs:
                text = c.text.strip()
                if not text:
                    continue
                ended = "eos" if (c.finish_reason == "stop" and c.stop_reason is None) else "step"
                cands.append((text, ended))
            cands_of.append(cands)
            for ci, (text, _) in enumerate(cands):
                cand_items.append({"id": f"{s['id']}#r{rnd}c{ci}", "question": s["question"],
                                   "steps": s["steps"] + [text]})
                owners.append((j, ci))
        last = source.score_last(cand_items) if cand_items else []
        scores: list[list[float | None]] = [[None] * len(c) for c in cands_of]
        for sc, (j, ci) in zip(last, owners):
            scores[j][ci] = sc
        for j, s in enumerate(live):
            if not cands_of[j]:
                s["finished"] = "no_candidate"
                continue
            b = pick_best(scores[j])
            text, ended = cands_of[j][b]
            s["steps"].append(text)
            s["step_scores"].append(scores[j][b])
            if "\\boxed" in text:
                s["finished"] = "answer"
            elif ended == "eos":
                s["finished"] = "eos"
        bar.update(1)
    bar.close()
    for s in state:
        s["finished"] = s["finished"] or "step_cap"
    return [{"id": s["id"], "response": STEP_SEP.join(s["steps"]), "steps": s["steps"],
             "step_scores": s["step_scores"], "finished": s["finished"]} for s in state]


def grade_search(items: Sequence[dict], results: Sequence[dict]) -> list[dict]:
    """Adds "correct" (bool) and "answer" to each search result (math_verify reward)."""
    gold = {it["id"]: it["answer"] for it in items}
    out = []
    for r in results:
        d = score_detail(r["response"], gold[r["id"]])
        out.append({**r, "correct": d["score"] == 1.0, "answer": d["pred"]})
    return out
