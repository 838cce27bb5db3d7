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
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rl_prm.tiny.arith import _apply
from rl_prm.world.tasks import _ANSWER_S, _OP_S, _START_S, _SYM, _VERB, corrupt, problems, question_ops

_SYMBOL = {"add": "+", "sub": "-", "mul": "*"}


def _claim(text: str) -> tuple[str, int, int, int] | None:
    """(op, operand, before, result) claimed by an operation step, None if it does not parse."""
    m = _OP_S.match(text.strip())
    if not m:
        return None
    verb, b, a, sym, b2, c = m.groups()
    op = _SYM[sym]  # the operation the step actually computes
    return op, int(b2), int(a), int(c)


def _value(text: str) -> int | None:
    """The amount a step ends with (start, operation result or boxed answer)."""
    t = text.strip()
    for rx, g in ((_START_S, 1), (_OP_S, 6), (_ANSWER_S, 1)):
        m = rx.match(t)
        if m:
            return int(m.group(g))
    return None


def critique(question: str, steps: list[str], k: int, correct: bool) -> str:
    """Teacher critique of step ``k`` (0-based) in the R-PRM format, ending with the verdict line.
    ``correct`` is the label (steps before the first error are correct)."""
    start, ops = question_ops(question)
    now = steps[k]
    prev_val = _value(steps[k - 1]) if k > 0 else None
    prev = "There are no Previous Steps." if k == 0 else f"The Previous Steps end with {prev_val}."
    if k == 0:
        now_a = "The Now Step states the starting amount."
        data = f"The question starts with {start}; the Now Step uses {_value(now)}."
        calc = "There is no calculation in the Now Step."
        cons = f"The Now Step's amount {'matches' if _value(now) == start else 'does not match'} the question."
    elif k <= len(ops) and _claim(now) is not None:
        op, b = ops[k - 1]
        c_op, c_b, c_a, c_c = _claim(now)
        sym = _SYMBOL[op]
        now_a = f"The Now Step must do operation {k} of the question: {sym} {b}."
        data = f"The Now Step uses {c_a} {_SYMBOL[c_op]} {c_b}; it should use {prev_val} {sym} {b}."
        calc = f"{prev_val} {sym} {b} = {_apply(op, prev_val, b)}, and the Now Step claims {c_c}."
        same = (c_op, c_b, c_a) == (op, b, prev_val)
        cons = f"The Now Step's {_SYMBOL[c_op]} {c_b} {'matches' if same else 'does not match'} the question's {sym} {b}."
    else:
        now_a = "The Now Step states the final answer." if _value(now) is not None else "The Now Step is unclear."
        data = f"The question has {len(ops)} operations; the Previous Steps did {k - 1} of them."
        cons = f"{'All' if k - 1 == len(ops) else 'Not all'} operations are done before the answer."
        calc = f"The previous result is {prev_val}, and the Now Step claims {_value(now)}."
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


def judge_examples(tok, n: int, seed: int) -> list[tuple[list[int], int]]:
    """(ids, start of the critique) for n judge samples from the "train" split, ~half verdict No."""
    from rl_prm.score.prompt import judge_prompt

    rng = random.Random(f"world-judge-{seed}")
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
        ids_a = tok.encode(critique(p.question, p.step_texts, k, ok) + "<|im_end|>", add_special_tokens=False)
        out.append((ids_p + ids_a, len(ids_p)))
    return out


@dataclass
class JudgeSFTConfig:
    arch: dict = field(default_factory=lambda: dict(hidden_size=128, intermediate_size=512, num_hidden_layers=2,
                                                    num_attention_heads=2, num_key_value_heads=2))
    samples: int = 6000
    steps: int = 500
    batch_size: int = 16
    lr: float = 3e-3
    seed: int = 0


def train_judge(model, tok, cfg: JudgeSFTConfig, log_every: int = 50) -> dict:
    """Teacher-forced SFT on the critiques (loss on critique + <|im_end|>), with the shared
    judge-prompt prefix run once per step (rl_prm.tiny.judge_sft.sft)."""
    from rl_prm.tiny.judge_sft import sft

    data = judge_examples(tok, cfg.samples, cfg.seed)
    t0 = time.perf_counter()
    loss_val = sft(model, tok, data, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
                   log_every=log_every, name="world judge SFT")
    return {"final_loss": round(loss_val, 4), "train_s": round(time.perf_counter() - t0, 1)}


def judge_path(cfg: JudgeSFTConfig = JudgeSFTConfig()) -> Path:
    """Directory of the world judge for ``cfg`` (builds and caches it on first call)."""
    from rl_prm.tiny.build import VOCAB_SIZE, _save_model
    from rl_prm.world.cache import cached, loaded_tokenizer

    def build(d: Path) -> dict:
        import torch

        torch.set_num_threads(1)
        facts: dict = {}
        _save_model(d, loaded_tokenizer(d), cfg.arch, seed=cfg.seed + 1,
                    train=lambda m, t: facts.update(train_judge(m, t, cfg)))
        return {"config": asdict(cfg), **facts}

    return cached("judge", (VOCAB_SIZE, asdict(cfg)), build)


def evaluate_judge(path, n: int = 100, ks=(1, 2, 4, 8), seed: int = 0, threshold: float = 0.5,
                   max_critique_tokens: int = 200, kv_cache_gib: int = 1) -> dict:
    """Mini-ProcessBench ("test" split, n items) F1 per K with rl_prm.eval.processbench: one scoring
    pass at K = max(ks), each K averages the first K samples of each step."""
    from rl_prm.eval.processbench import processbench_results, score_processbench
    from rl_prm.eval.scoring import ScorerSource
    from rl_prm.score.scorer import RPRMScorer, ScoreConfig
    from rl_prm.world.tasks import eval_items, processbench

    items = eval_items(processbench("test", n, seed=seed))
    t0 = time.perf_counter()
    scorer = RPRMScorer.from_path(path, ScoreConfig(k=max(ks), max_critique_tokens=max_critique_tokens, seed=seed),
                                  max_model_len=2048, kv_cache_gib=kv_cache_gib)
    t1 = time.perf_counter()
    records = score_processbench(ScorerSource(scorer, "world-judge"), items, batch_size=50)
    t2 = time.perf_counter()
    res = processbench_results(items, records, ks=list(ks), threshold=threshold)
    res["timing_s"] = {"engine_start": round(t1 - t0, 1), "scoring": round(t2 - t1, 1)}
    res["f1_per_k"] = {k: round(res["per_k"][str(k)]["avg_f1"], 1) for k in ks}
    return res


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
