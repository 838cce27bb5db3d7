"""Policy evaluation on math benchmarks: sampling, grading, pass@k, maj@k, PRM Best-of-N.

    items = math_items(["math500", "gsm8k"], limit=10)
    samples = sample_solutions(policy_llm, items, n=4)               # [{"id", "responses": [...]}]
    graded = grade_samples(items, samples)                           # adds "correct", "answers"
    scores = score_samples(source, graded)                           # adds "step_scores" (judge)
    results = math_results(items, graded)                            # pass@k, maj@k, bon_min@k, bon_last@k

Prompt: the policy's chat template with one user turn, the problem followed by PROMPT_SUFFIX.
Grading: reward_fns.math_verify_reward (the training reward). maj@k votes over extracted answers of
the first k samples, answers equal after normalisation or equivalent by math_verify are one vote
class. Best-of-N picks, among the first k samples, the one with the highest min-step (bon_min) or
last-step (bon_last) PRM score; a sample without steps/scores never wins over a scored one.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence

from tqdm.auto import tqdm

from reward_fns.math_verify_reward import score_detail
from rl_prm.data import MATH_BENCHMARKS, load_benchmark
from rl_prm.eval.metrics import aggregate, best_of_n, majority_vote, normalize_answer, pass_at_k
from rl_prm.eval.scoring import ScoreSource, step_scores_at_k
from rl_prm.steps import split_steps

PROMPT_SUFFIX = "Let's think step by step and output the final answer within \\boxed{}."
DATASET_ALIASES = {"minerva": "minerva_math", "olympiad": "olympiadbench"}
DEFAULT_DATASETS = ("math500", "gsm8k", "aime24", "amc23", "minerva", "olympiadbench")


def resolve_dataset(name: str) -> str:
    real = DATASET_ALIASES.get(name, name)
    if real not in MATH_BENCHMARKS:
        known = sorted([*MATH_BENCHMARKS, *DATASET_ALIASES])
        raise ValueError(f"unknown math dataset {name!r}; known: {', '.join(known)}")
    return real


def math_items(datasets: Sequence[str], limit: int | None = None) -> list[dict]:
    """{"id", "dataset", "problem", "answer"} for the first ``limit`` test problems of each dataset."""
    out = []
    for name in datasets:
        real = resolve_dataset(name)
        rows = load_benchmark(real, "test")
        for r in rows[:limit] if limit else rows:
            out.append({"id": r["id"], "dataset": name, "problem": r["problem"], "answer": r["answer"]})
    return out


def chat_prompt(tokenizer: Any, problem: str) -> str:
    msgs = [{"role": "user", "content": f"{problem}\n{PROMPT_SUFFIX}"}]
    return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)


def sample_solutions(llm: Any, items: Sequence[dict], n: int, *, temperature: float = 0.7, top_p: float = 1.0,
                     max_tokens: int = 1024, seed: int = 0, progress: bool = True) -> list[dict]:
    """n sampled responses per item from an in-process vLLM engine (one request per item with ``n``;
    per-request seed = seed + item index, so a subset of items reproduces its samples)."""
    from vllm import SamplingParams  # vllm: seconds to import; only sampling needs it (grading and scoring do not)

    tok = llm.get_tokenizer()
    prompts = [chat_prompt(tok, it["problem"]) for it in items]
    params = [SamplingParams(n=n, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed + i)
              for i in range(len(items))]
    outs = llm.generate(prompts, params, use_tqdm=progress)
    return [{"id": it["id"], "responses": [c.text for c in o.outputs],
             "finish_reasons": [c.finish_reason for c in o.outputs]} for it, o in zip(items, outs)]


@lru_cache(maxsize=65536)
def answers_equivalent(a: str, b: str) -> bool:
    """Two extracted answers are the same answer: equal normalised strings, or math_verify says so
    (b graded as gold against a boxed a, and vice versa)."""
    if normalize_answer(a) == normalize_answer(b):
        return True
    return (score_detail(f"\\boxed{{{a}}}", b)["score"] == 1.0 or score_detail(f"\\boxed{{{b}}}", a)["score"] == 1.0)


def grade_samples(items: Sequence[dict], samples: Sequence[dict], progress: bool = True) -> list[dict]:
    """Adds "correct" (list[bool]), "answers" (extracted, None when none) and "status" per response."""
    by_id = {it["id"]: it for it in items}
    out = []
    for s in tqdm(samples, desc="grading", unit="problem", disable=not progress):
        gold = by_id[s["id"]]["answer"]
        det = [score_detail(r, gold) for r in s["responses"]]
        out.append({**s, "correct": [d["score"] == 1.0 for d in det],
                    "answers": [d["pred"] if d["status"] not in ("no_answer", "malformed", "too_long") else None
                                for d in det],
                    "status": [d["status"] for d in det]})
    return out


def sample_step_items(graded: Sequence[dict], problems: dict[str, str]) -> list[dict]:
    """Scorer items for every response with at least one step: id "<problem id>#<j>"."""
    items = []
    for s in graded:
        for j, r in enumerate(s["responses"]):
            steps = split_steps(r)
            if steps:
                items.append({"id": f"{s['id']}#{j}", "question": problems[s["id"]], "steps": steps})
    return items


def score_samples(source: ScoreSource, graded: Sequence[dict], problems: dict[str, str], batch_size: int = 32,
                  progress: bool = True) -> tuple[list[dict], dict[str, dict]]:
    """Adds "step_scores" (list per response; [] for a response without steps) to each graded record.
    Returns (records, raw score records by "<id>#<j>")."""
    items = sample_step_items(graded, problems)
    recs: dict[str, dict] = {}
    bar = tqdm(total=len(items), desc="judge scoring", unit="solution", disable=not progress)
    for i in range(0, len(items), batch_size):
        batch = items[i: i + batch_size]
        recs.update(source.score(batch))
        bar.update(len(batch))
    bar.close()
    out = []
    for s in graded:
        ss = [step_scores_at_k(recs[f"{s['id']}#{j}"], None) if f"{s['id']}#{j}" in recs else []
              for j in range(len(s["responses"]))]
        out.append({**s, "step_scores": ss})
    return out, recs


def ks_for(n: int) -> list[int]:
    """1, 2, 4, ... up to n, and n itself."""
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return ks + [n]


def problem_metrics(rec: dict, ks: Sequence[int]) -> dict:
    """Per-problem values (0..1) of pass@k, maj@k and, with step scores, bon_min@k / bon_last@k
    (the latter three over the FIRST k samples)."""
    n, c = len(rec["correct"]), sum(rec["correct"])
    m: dict[str, float] = {}
    for k in ks:
        m[f"pass@{k}"] = pass_at_k(n, c, k)
        idx = majority_vote(rec["answers"][:k], answers_equivalent)
        m[f"maj@{k}"] = float(idx is not None and rec["correct"][idx])
        if rec.get("step_scores") is not None:
            for how in ("min", "last"):
                idx = best_of_n([aggregate(s, how) for s in rec["step_scores"][:k]])
                m[f"bon_{how}@{k}"] = float(idx is not None and rec["correct"][idx])
    return m


def math_results(items: Sequence[dict], graded: Sequence[dict], search: Sequence[dict] | None = None) -> dict:
    """{"datasets": {name: {metric: percent, "n_problems"}}, "ks"}; ``search`` adds "guided_search"."""
    ds_of = {it["id"]: it["dataset"] for it in items}
    n = min(len(g["correct"]) for g in graded) if graded else 0
    ks = ks_for(n) if n else []
    per_ds: dict[str, dict] = {}
    for g in graded:
        if len(g["correct"]) != n:
            raise ValueError(f"problem {g['id']}: {len(g['correct'])} samples, expected {n}")
        d = per_ds.setdefault(ds_of[g["id"]], {"_vals": []})
        d["_vals"].append(problem_metrics(g, ks))
    if search:
        for s in search:
            per_ds.setdefault(ds_of[s["id"]], {"_vals": []}).setdefault("_search", []).append(float(s["correct"]))
    out = {}
    for name, d in per_ds.items():
        vals = d["_vals"]
        res = {key: 100.0 * sum(v[key] for v in vals) / len(vals) for key in (vals[0] if vals else {})}
        res["n_problems"] = len(vals)
        if "_search" in d:
            res["guided_search"] = 100.0 * sum(d["_search"]) / len(d["_search"])
        out[name] = res
    return {"ks": ks, "n": n, "datasets": out}
