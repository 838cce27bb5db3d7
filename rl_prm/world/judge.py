"""Tiny world R-PRM judge: the seed's recipe in miniature (teacher critiques in the exact R-PRM format,
then SFT), evaluated on the world's mini-ProcessBench with rl_prm.eval at several K.

    from rl_prm.world.judge import judge_path, evaluate_judge
    d = judge_path()                              # builds on first call, then cached
    evaluate_judge(d, n=100, ks=(1, 2, 4, 8))     # rl_prm.eval.processbench results (F1 per K)

The teacher's critique makes the verdict learnable from the prompt: it names the question's operation
the Now Step must perform, copies the previous result, RECOMPUTES "a op b = c" and compares it with
the step's claim (operation, operand and result), then writes the R-PRM verdict line.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rl_prm.tiny.arith import _apply
from rl_prm.world.tasks import (_ANSWER_S, _OP_S, _START_S, _SYM, _VERB_OF, ORDINALS, corrupt, problems,
                                question_ops)

_SYMBOL = {"add": "+", "sub": "-", "mul": "*"}
TEACHER_VERSION = 2  # part of the judge's cache key: 2 = the answer step is checked by ordinals (no counting)


def _claim(text: str) -> tuple[str, str, int, int, int] | None:
    """(ordinal, op, operand, before, result) claimed by an operation step, None if it does not parse."""
    m = _OP_S.match(text.strip())
    if not m:
        return None
    ordinal, verb, b, a, sym, b2, c = m.groups()
    return ordinal, _SYM[sym], int(b2), int(a), int(c)  # op: what the step actually computes


def _value(text: str) -> int | None:
    """The amount a step ends with (start, operation result or boxed answer)."""
    t = text.strip()
    for rx, g in ((_START_S, 1), (_OP_S, 7), (_ANSWER_S, 1)):
        m = rx.match(t)
        if m:
            return int(m.group(g))
    return None


def critique(question: str, steps: list[str], k: int, correct: bool) -> str:
    """Teacher critique of step ``k`` (0-based) in the R-PRM format, ending with the verdict line.
    ``correct`` is the label (steps before the first error are correct).

    For an operation step the critique copies the Now Step's claim, looks up the question's
    operation with the same ordinal, RECOMPUTES it from the previous result and compares: so the
    verdict follows from what the critique itself wrote (a sampled critique that miscomputes
    reaches the wrong verdict; averaging K critiques corrects such slips only when they are
    independent draws, not when the judge errs the same way every time)."""
    start, ops = question_ops(question)
    now = steps[k]
    prev_val = _value(steps[k - 1]) if k > 0 else None
    prev = "There are no Previous Steps." if k == 0 else f"The Previous Steps end with {prev_val}."
    claim = _claim(now) if 0 < k <= len(ops) else None
    if k == 0:
        v = _value(now)
        now_a = f"The Now Step states the starting amount: {v}."
        data = f"The question starts with {start}."
        cons = f"The Now Step's amount {'matches' if v == start else 'does not match'} the question."
        calc = "There is no calculation in the Now Step."
    elif claim is not None:
        ordinal, c_op, c_b, c_a, c_c = claim
        op, b = ops[k - 1]
        sym, want = _SYMBOL[op], _apply(op, prev_val, b)
        clause = f"{_VERB_OF[op]} {b}"
        now_a = f"The Now Step is the {ORDINALS[k - 1].lower()} operation: {c_a} {_SYMBOL[c_op]} {c_b} = {c_c}."
        data = f"The question's {ORDINALS[k - 1].lower()} operation is: {clause}. It applies to {prev_val}."
        same = (c_a, c_op, c_b) == (prev_val, op, b)
        cons = (f"The Now Step's {c_a} {_SYMBOL[c_op]} {c_b} {'matches' if same else 'does not match'} "
                f"{prev_val} {sym} {b}.")
        calc = f"{prev_val} {sym} {b} = {want}, and the Now Step claims {c_c}."
    else:
        v = _value(now)
        now_a = f"The Now Step states the final answer: {v}." if _ANSWER_S.match(now.strip()) else "The Now Step is unclear."
        # which operations are done: the last Previous Step's ordinal against the question's last
        # ordinal (two copies, no counting)
        last_prev = _claim(steps[k - 1]) if k > 1 else None
        done = last_prev[0] if last_prev else "no"
        last_q = ORDINALS[len(ops) - 1]
        data = f"The Previous Steps end with the {done.lower()} operation; the question's last operation is the {last_q.lower()} one."
        cons = f"{'All' if done == last_q and k - 1 == len(ops) else 'Not all'} operations are done before the answer."
        calc = f"The previous result is {prev_val}, and the Now Step claims {v}."
    verdict, conclusion = ("Yes", "The Now Step is correct.") if correct else ("No", "The Now Step is wrong.")
    return (
        "Analysis:\n"
        f"**Previous Steps Analysis**: {prev}\n"
        f"**Now Step Analysis**: {now_a}\n"
        f"**Data Source Analysis**: {data}\n"
        f"**Consistency Analysis**: {cons}\n"
        f"**Calculation Analysis**: {calc}\n"
        f"Conclusion: {conclusion}\n"
        f"Verification: Is the step correct (Yes/No)? {verdict}"
    )


def _decision_positions(text: str, offsets: list[tuple[int, int]], offset: int) -> list[int]:
    """Token positions (plus ``offset``) of a critique's decisions, from the tokenizer's character
    ``offsets`` of ``text``: the first token of the Consistency decision ("does not match" /
    "matches" / "Not all" / "All") and of the Conclusion ("correct" / "wrong"); the verdict is
    added by the caller."""
    starts = []
    cons = text.index("**Consistency Analysis**: ") + len("**Consistency Analysis**: ")
    line = text[cons: text.index("\n", cons)]
    for word in ("does not match", "matches", "Not all", "All"):
        j = line.find(word)
        if j >= 0:
            starts.append(cons + j)
            break
    starts.append(text.index("Conclusion: The Now Step is ") + len("Conclusion: The Now Step is "))
    out = []
    for c in starts:
        tok_i = next((i for i, (a, b) in enumerate(offsets) if a <= c < b or (a >= c and b > a)), None)
        if tok_i is not None:
            out.append(offset + tok_i)
    return out


def judge_examples(tok, n: int, seed: int) -> list[tuple[list[int], int, list[int]]]:
    """(ids, start of the critique, key positions) for n judge samples from the "train" split,
    ~half verdict No. Key positions: the critique's decisions and its verdict token (see sft's
    ``key_weight``): the tokens that must follow from the analysis."""
    from rl_prm.score.prompt import judge_prompt

    rng = random.Random(f"world-judge-{seed}")
    verdict_ids = {tok.encode(" Yes", add_special_tokens=False)[0], tok.encode(" No", add_special_tokens=False)[0]}
    end_id = tok.convert_tokens_to_ids("<|im_end|>")
    pool = problems("train", max(n, 200), seed=seed + 7)
    out = []
    while len(out) < n:
        p = rng.choice(pool)
        if rng.random() < 0.6:
            p = corrupt(p, rng)
            k = p.label if rng.random() < 0.7 else rng.randrange(0, p.label + 1)
        else:
            k = rng.randrange(len(p.steps))
        ok = p.label == -1 or k < p.label
        ids_p = tok.encode(judge_prompt(tok, p.question, p.step_texts, k), add_special_tokens=False)
        text = critique(p.question, p.step_texts, k, ok)
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        ids_a = list(enc["input_ids"]) + [end_id]
        verdict = len(ids_p) + len(ids_a) - 2  # " Yes" / " No", then <|im_end|>
        if ids_a[-2] not in verdict_ids:
            raise RuntimeError(f"world judge example: the token before <|im_end|> is not the verdict ({ids_a[-3:]})")
        out.append((ids_p + ids_a, len(ids_p), _decision_positions(text, enc["offset_mapping"], len(ids_p)) + [verdict]))
    return out


@dataclass
class JudgeSFTConfig:
    """The judge starts from the world policy's weights (as R-PRM starts from a math-instruct model:
    it already reads the world's problems and does its arithmetic) and is SFT'd on critiques."""

    samples: int = 8000
    steps: int = 600
    batch_size: int = 16
    lr: float = 2e-3
    decision_weight: float = 1.0  # extra loss on the decision and verdict tokens (3 of ~135): they must follow the analysis
    seed: int = 0


def train_judge(model, tok, cfg: JudgeSFTConfig, log_every: int = 50) -> dict:
    """Teacher-forced SFT on the critiques (loss on critique + <|im_end|>), with the shared
    judge-prompt prefix run once per step (rl_prm.tiny.judge_sft.sft)."""
    from rl_prm.tiny.judge_sft import sft

    data = judge_examples(tok, cfg.samples, cfg.seed)
    t0 = time.perf_counter()
    loss_val = sft(model, tok, data, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
                   log_every=log_every, name="world judge SFT", key_weight=cfg.decision_weight)
    return {"final_loss": round(loss_val, 4), "train_s": round(time.perf_counter() - t0, 1)}


def judge_path(cfg: JudgeSFTConfig = JudgeSFTConfig(), policy: Path | None = None) -> Path:
    """Directory of the world judge for ``cfg``, fine-tuned from ``policy`` (default: the world
    policy, built first if needed); builds and caches it on first call."""
    from rl_prm.world.cache import cached, set_build_threads
    from rl_prm.world.policy import policy_path

    init = Path(policy) if policy is not None else policy_path()

    def build(d: Path) -> dict:
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        set_build_threads()
        tok = AutoTokenizer.from_pretrained(init)
        model = AutoModelForCausalLM.from_pretrained(init)
        facts = train_judge(model, tok, cfg)
        model.eval()
        model.save_pretrained(d, safe_serialization=True)
        GenerationConfig.from_pretrained(init).save_pretrained(d)
        tok.save_pretrained(d)
        return {"config": asdict(cfg), "init": str(init), **facts}

    return cached("judge", (init.name, TEACHER_VERSION, asdict(cfg)), build)


def evaluate_judge(path, n: int = 60, ks=(1, 2, 4, 8), seed: int = 0, threshold: float = 0.5,
                   temperature: float = 1.0, max_critique_tokens: int = 160, kv_cache_gib: int = 1) -> dict:
    """Mini-ProcessBench ("test" split, n items) F1 per K with rl_prm.eval.processbench: one scoring
    pass at K = max(ks) (critiques sampled at ``temperature``), each K averages the first K samples
    of each step. The engine is stopped before returning."""
    from rl_prm.eval.processbench import processbench_results, score_processbench
    from rl_prm.eval.scoring import ScorerSource
    from rl_prm.score.scorer import RPRMScorer, ScoreConfig
    from rl_prm.world.tasks import eval_items, processbench

    items = eval_items(processbench("test", n, seed=seed))
    t0 = time.perf_counter()
    scorer = RPRMScorer.from_path(path, ScoreConfig(k=max(ks), temperature=temperature, top_p=1.0,
                                                    max_critique_tokens=max_critique_tokens, seed=seed),
                                  max_model_len=2048, kv_cache_gib=kv_cache_gib)
    try:
        t1 = time.perf_counter()
        records = score_processbench(ScorerSource(scorer, "world-judge"), items, batch_size=max(1, n))
        t2 = time.perf_counter()
    finally:
        scorer.engine.shutdown()
    res = processbench_results(items, records, ks=list(ks), threshold=threshold)
    res["timing_s"] = {"engine_start": round(t1 - t0, 1), "scoring": round(t2 - t1, 1)}
    res["f1_per_k"] = {k: round(res["per_k"][str(k)]["avg_f1"], 1) for k in ks}
    res["step_accuracy"] = {k: step_accuracy(items, records, k, threshold) for k in ks}
    return res


def step_accuracy(items: list[dict], records: dict[str, dict], k: int, threshold: float = 0.5) -> dict:
    """What an RL reward sees, step by step: the share of correct steps (before the first error)
    scored above ``threshold`` and the share of first-error steps scored at or below it, using the
    first ``k`` critiques of each step; with their counts."""
    from rl_prm.eval.scoring import step_scores_at_k

    ok = bad = n_ok = n_bad = 0
    for it in items:
        scores = step_scores_at_k(records[it["id"]], k)
        for i, s in enumerate(scores):
            if it["label"] == -1 or i < it["label"]:
                n_ok += 1
                ok += s is not None and s > threshold  # unscored counts as missed
            elif i == it["label"]:
                n_bad += 1
                bad += s is not None and s <= threshold
    return {"correct_steps_yes": round(100 * ok / max(1, n_ok), 1), "n_correct_steps": n_ok,
            "error_steps_no": round(100 * bad / max(1, n_bad), 1), "n_error_steps": n_bad}


if __name__ == "__main__":
    import json
    import sys

    from rl_prm.world.cache import build_facts

    d = judge_path()
    print(d, json.dumps(build_facts(d)))
    if "--eval" in sys.argv:
        r = evaluate_judge(d)
        print(json.dumps({"f1_per_k": r["f1_per_k"], "timing_s": r["timing_s"],
                          "per_k": {k: v["splits"] for k, v in r["per_k"].items()}}, indent=1))
