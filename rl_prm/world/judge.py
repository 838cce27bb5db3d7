"""Tiny world R-PRM judge: the seed's recipe in miniature (teacher critiques in the R-PRM format, SFT,
then DPO on the SFT judge's own critiques, rl_prm.world.dpo), evaluated with rl_prm.world.judge_eval.

    from rl_prm.world.judge import judge_path, JudgeConfig
    d = judge_path()                   # SFT judge (judge_sft-*) then DPO (judge-*); built on first call, cached

The teacher's critique is a checklist a small model can follow (``critique_parts``): the Now Step and
the question's data are quoted verbatim, every check ends in its own decision, the calculation is checked by the
reverse operation, and the verdict is the AND of the checks.
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from rl_prm.progress import heartbeat
from rl_prm.world.dpo import DPOConfig
from rl_prm.world.tasks import _ANSWER_S, _OP_S, _START_S, _SYM, _VERB_OF, ORDINALS, problems, question_ops

_SYMBOL = {"add": "+", "sub": "-", "mul": "*"}
TEACHER_VERSION = 7  # part of the judge's cache key: 7 = every comparison of two amounts written as |x - y| = d


def _claim(text: str) -> tuple[str, str, int, str, int, int, int, int] | None:
    """(ordinal, verb, stated amount, op computed, a, b, c) of an operation step, None if it does not parse."""
    m = _OP_S.match(text.strip())
    if not m:
        return None
    ordinal, verb, said, a, sym, b, c = m.groups()
    return ordinal, verb, int(said), _SYM[sym], int(a), int(b), int(c)


def _value(text: str) -> int | None:
    """The amount a step ends with (start, operation result or boxed answer)."""
    t = text.strip()
    for rx, g in ((_START_S, 1), (_OP_S, 7), (_ANSWER_S, 1)):
        m = rx.match(t)
        if m:
            return int(m.group(g))
    return None


def _clause(question: str, i: int) -> str:
    """The question's sentence for operation i (0-based), verbatim ("Second, Ava buys 3 more.")."""
    j = question.index(f"{ORDINALS[i]}, ")
    return question[j: question.index(".", j) + 1]


def _reverse(op: str, a: int, b: int, c: int) -> tuple[str, int, int]:
    """The reverse check of "a op b = c": (expression, its value, the value it should have)."""
    if op == "add":
        return f"{c} - {b}", c - b, a
    if op == "sub":
        return f"{c} + {b}", c + b, a
    return f"{c} - {a}", c - a, a  # a * 2 = c  <=>  c - a = a (the world multiplies by 2 only)


def _diff(x: int | None, y: int | None) -> list[tuple[str, bool]]:
    """The critique pieces " |x - y| = d:" (d critical): a check of two amounts is decided on whether one
    computed token is 0, which the tiny judge learns, where deciding x == y from the two copied amounts
    it did not; the absolute value keeps signed results (" -2", the same "-" token as " - 2") out of
    the critique, which the judge confused after DPO (docs/world.md)."""
    d = " none" if x is None or y is None else f" {abs(x - y)}"
    return [(f" |{x} - {y}| =", False), (d, True), (":", False)]


def critique_parts(question: str, steps: list[str], k: int, correct: bool) -> list[tuple[str, bool]]:
    """The teacher critique of step ``k`` (0-based) as (text, critical) pieces: joined, they are the
    critique (``critique``); critical pieces are what the verdict depends on (the quoted and
    recomputed amounts and every decision), which SFT weighs extra (``judge_examples``).

    A checklist in the R-PRM sections: the Now Step and the question's data are quoted VERBATIM (so
    the amounts the checks use are a short copy away inside the critique: the judge otherwise wrote
    the previous amount where the step's result belongs, docs/world.md),
    each check ends in its own decision ("...: correct." / "...: wrong."), and the calculation is
    checked by the REVERSE operation (as the R-PRM template asks), on the claimed result: the
    step's equation is restated, then reversed ("a + b = c. Reverse: c - b = ...", which should give
    a), so the claimed result c is three tokens back when the reverse needs it (copied from the Now
    Step alone it was the judge's weakest token, docs/world.md). (A forward recomputation alone,
    "a + b = ", would repeat the step's own text, and a small model then copies the claimed result
    instead of computing.)
    Every comparison of two amounts (stated vs the question's, reverse result vs the previous amount,
    answer vs the last amount) is written as their absolute difference, "|x - y| = d: decision"
    (``_diff``), so the decision reads one computed token.
    The conclusion is wrong iff some check is, which for steps up to the first error is the label
    ``correct``."""
    start, ops = question_ops(question)
    now = steps[k].strip()
    prev_val = _value(steps[k - 1]) if k > 0 else None
    dec = lambda ok: (" correct" if ok else " wrong", True)  # noqa: E731
    out: list[tuple[str, bool]] = [("Analysis:\n**Previous Steps Analysis**: ", False)]
    out += ([("There are no Previous Steps.", False)] if k == 0 else
            [("The Previous Steps end with", False), (f" {prev_val}", True), (".", False)])
    claim = _claim(now) if 0 < k <= len(ops) else None
    if k == 0:
        v = _value(now)
        out += [("\n**Now Step Analysis**: The Now Step says:", False), (f" {now}", True),
                (" It states the starting amount:", False), (f" {v}", True),
                (f".\n**Data Source Analysis**: The question says: {question[: question.index('.') + 1]}", False),
                (f"\n**Consistency Analysis**: {v} for {start}.", False), *_diff(v, start), dec(v == start),
                (".\n**Calculation Analysis**: There is no calculation in the Now Step.", False)]
    elif claim is not None:
        ordinal, verb, said, c_op, a, b, c = claim
        op, b_q = ops[k - 1]
        expr, got, want = _reverse(c_op, a, b, c)
        out += [("\n**Now Step Analysis**: The Now Step says:", False), (f" {now}", True),
                (f"\n**Data Source Analysis**: The question says: {_clause(question, k - 1)}", False),
                (f"\n**Consistency Analysis**: {verb} {said} for {_VERB_OF[op]} {b_q}.", False), *_diff(said, b_q),
                dec((verb, said) == (_VERB_OF[op], b_q)),
                (f". {a} {_SYMBOL[c_op]} {b} for {prev_val} {_SYMBOL[op]} {b_q}:", False),
                dec((a, c_op, b) == (prev_val, op, b_q)),
                (".\n**Calculation Analysis**:", False), (f" {a} {_SYMBOL[c_op]} {b} = {c}", True),
                (". Reverse:", False), (f" {expr}", True), (" =", False), (f" {got}", True),
                (f", which should be {want}.", False), *_diff(got, want), dec(got == want), (".", False)]
    else:
        v = _value(now)
        last_prev = _claim(steps[k - 1]) if k > 1 else None
        done = last_prev[0] if last_prev else "start"
        out += [("\n**Now Step Analysis**: The Now Step says:", False), (f" {now}", True),
                (" It states the final answer:" if _ANSWER_S.match(now) else " It is unclear:", False), (f" {v}", True),
                (f".\n**Data Source Analysis**: The last Previous Step is the {done} operation; the question's last "
                 f"operation is the {ORDINALS[len(ops) - 1]} one.", False),
                (f"\n**Consistency Analysis**: {done} for {ORDINALS[len(ops) - 1]}:", False),
                dec(done == ORDINALS[len(ops) - 1] and k - 1 == len(ops)),
                (f".\n**Calculation Analysis**: {v}, which should be {prev_val}.", False), *_diff(v, prev_val),
                dec(v == prev_val),
                (".", False)]
    out += [("\nConclusion: The Now Step is", False), dec(correct),
            (".\nVerification: Is the step correct (Yes/No)?", False), (" Yes" if correct else " No", True)]
    return out


def critique(question: str, steps: list[str], k: int, correct: bool) -> str:
    """Teacher critique of step ``k`` (0-based) in the R-PRM format, ending with the verdict line
    (``critique_parts`` joined). ``correct`` is the label (steps before the first error are correct)."""
    return "".join(t for t, _ in critique_parts(question, steps, k, correct))


def _key_positions(parts: list[tuple[str, bool]], offsets: list[tuple[int, int]], offset: int) -> list[int]:
    """Token positions (plus ``offset``) of the critical pieces, from the tokenizer's character
    ``offsets`` of the joined text: every token overlapping a critical piece's non-space characters."""
    spans, pos = [], 0
    for text, crit in parts:
        if crit:
            lead = len(text) - len(text.lstrip())
            spans.append((pos + lead, pos + len(text)))
        pos += len(text)
    return [offset + i for i, (a, b) in enumerate(offsets) if b > a and any(a < e and b > s for s, e in spans)]


@dataclass(frozen=True)
class UnitMix:
    """What the judge's synthetic targets are made of (``judge_units``)."""

    flawed_fraction: float = 0.55  # targets from a flawed solution (the rest: a random step of a gold one)
    miracle_share: float = 0.3  # of the flawed ones, miracles (a wrong step, the right answer)
    # miracle kinds (misquote, jump, cancel); misquote-heavy weights (0.7, 0.15, 0.15) did not teach the judge to
    # catch the policy's misquotes (docs/world.md)
    miracle_weights: tuple = (0.5, 0.25, 0.25)
    at_error: float = 0.75  # a flawed solution is judged at its first wrong step with this probability


def judge_units(n: int, seed: int, mix: UnitMix = UnitMix()) -> list[tuple[str, list[str], int, bool]]:
    """n (question, steps, k, correct) judge targets from the "train" split: ``mix.flawed_fraction`` of
    them from a flawed solution (``mix.miracle_share`` of those a miracle: wrong step, right answer,
    its kind drawn with ``mix.miracle_weights``), judged at its first wrong step (``mix.at_error``) or a
    step before it; the rest a random step of a gold solution. Steps after the first error are never
    targets (their teacher verdict "wrong" would not follow from a local check)."""
    from rl_prm.world.tasks import corrupt, miracle

    rng = random.Random(f"world-judge-{seed}")
    pool = problems("train", max(n // 4, 200), seed=seed + 7)
    out = []
    while len(out) < n:
        p = rng.choice(pool)
        if rng.random() < mix.flawed_fraction:
            p = (miracle(p, rng, weights=tuple(mix.miracle_weights)) if rng.random() < mix.miracle_share
                 else corrupt(p, rng))
            k = p.label if rng.random() < mix.at_error else rng.randrange(0, p.label + 1)
        else:
            k = rng.randrange(len(p.steps))
        out.append((p.question, p.step_texts, k, p.label == -1 or k < p.label))
    return out


def encode_example(tok, question: str, steps: list[str], k: int, correct: bool) -> tuple[list[int], int, list[int]]:
    """(ids, start of the critique, key positions) of one judge SFT example: the R-PRM prompt, the
    teacher critique + <|im_end|>; key positions = the critique's critical tokens (the verdict last)."""
    from rl_prm.score.prompt import judge_prompt

    ids_p = tok.encode(judge_prompt(tok, question, steps, k), add_special_tokens=False)
    parts = critique_parts(question, steps, k, correct)
    enc = tok("".join(t for t, _ in parts), add_special_tokens=False, return_offsets_mapping=True)
    ids_a = list(enc["input_ids"]) + [tok.convert_tokens_to_ids("<|im_end|>")]
    keys = _key_positions(parts, enc["offset_mapping"], len(ids_p))
    if keys[-1] != len(ids_p) + len(ids_a) - 2 or tok.decode([ids_a[-2]]) not in (" Yes", " No"):
        raise RuntimeError(f"world judge example: the token before <|im_end|> is not the verdict ({ids_a[-3:]})")
    return ids_p + ids_a, len(ids_p), keys


def judge_examples(tok, n: int, seed: int, mix: UnitMix = UnitMix()) -> list[tuple[list[int], int, list[int]]]:
    """(ids, start of the critique, key positions) for n judge SFT samples (``judge_units``)."""
    return [encode_example(tok, *u) for u in judge_units(n, seed, mix)]


@dataclass
class JudgeSFTConfig:
    """The judge starts from the world policy's weights (as R-PRM starts from a math-instruct model:
    it already reads the world's problems and does its arithmetic) and is SFT'd on critiques."""

    samples: int = 8000
    steps: int = 1500  # docs/world.md: SFT length and judge F1
    batch_size: int = 16
    lr: float = 2e-3
    decision_weight: float = 1.0  # extra loss on the critical tokens (quoted/recomputed amounts, decisions, verdict)
    extra_layers: int = 2  # decoder layers added on top of the policy's, starting as the identity (see deepen)
    mix: UnitMix = field(default_factory=UnitMix)  # the synthetic targets (also DPO's synthetic half)
    seed: int = 0


@dataclass
class JudgeConfig:
    """SFT on teacher critiques, then (``dpo`` not None) DPO on the SFT judge's own critiques."""

    sft: JudgeSFTConfig = field(default_factory=JudgeSFTConfig)
    dpo: Optional[DPOConfig] = field(default_factory=DPOConfig)


def deepen(model, extra: int) -> None:
    """Append ``extra`` decoder layers (copies of the last one) whose output projections start at
    zero, so the deeper model computes exactly what ``model`` did until training moves them: more
    attention heads for the critique's retrievals, with the policy's knowledge kept."""
    import copy

    import torch

    layers = model.model.layers
    for _ in range(extra):
        new = copy.deepcopy(layers[-1])
        torch.nn.init.zeros_(new.self_attn.o_proj.weight)
        torch.nn.init.zeros_(new.mlp.down_proj.weight)
        layers.append(new)
    for i, layer in enumerate(layers):
        layer.self_attn.layer_idx = i
    model.config.num_hidden_layers = len(layers)
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = [model.config.layer_types[0]] * len(layers)


def train_judge(model, tok, cfg: JudgeSFTConfig, log_every: int = 50) -> dict:
    """``deepen`` the model by cfg.extra_layers, then teacher-forced SFT on the critiques (loss on
    critique + <|im_end|>), with the shared judge-prompt prefix run once per step
    (rl_prm.tiny.judge_sft.sft)."""
    from rl_prm.tiny.judge_sft import sft

    deepen(model, cfg.extra_layers)
    data = judge_examples(tok, cfg.samples, cfg.seed, cfg.mix)
    t0 = time.perf_counter()
    loss_val = sft(model, tok, data, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
                   log_every=log_every, name="world judge SFT", key_weight=cfg.decision_weight)
    return {"final_loss": round(loss_val, 4), "train_s": round(time.perf_counter() - t0, 1)}


def _fine_tune(init: Path, d: Path, train) -> dict:
    """Load the model in ``init``, ``train(model, tok)`` -> facts, save it (with init's tokenizer and
    generation config) into ``d``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from rl_prm.world.cache import set_build_threads

    set_build_threads()
    tok = AutoTokenizer.from_pretrained(init)
    model = AutoModelForCausalLM.from_pretrained(init)
    facts = train(model, tok)
    model.eval()
    model.save_pretrained(d, safe_serialization=True)
    GenerationConfig.from_pretrained(init).save_pretrained(d)
    tok.save_pretrained(d)
    return {"init": str(init), **facts}


def sft_judge_path(cfg: JudgeSFTConfig = JudgeSFTConfig(), policy: Path | None = None) -> Path:
    """Directory of the SFT world judge, fine-tuned from ``policy`` (default: the world policy,
    built first if needed); builds and caches it on first call."""
    from rl_prm.world.cache import cached
    from rl_prm.world.policy import policy_path

    init = Path(policy) if policy is not None else policy_path()
    return cached("judge_sft", (init.name, TEACHER_VERSION, asdict(cfg)),
                  lambda d: {"config": asdict(cfg), **_fine_tune(init, d, lambda m, t: train_judge(m, t, cfg))})


def judge_path(cfg: JudgeConfig = JudgeConfig(), policy: Path | None = None) -> Path:
    """Directory of the world judge: the SFT judge (``sft_judge_path``), then DPO on its own
    critiques (rl_prm.world.dpo) unless ``cfg.dpo`` is None; built and cached on first call.
    build.json holds both stages' facts."""
    from rl_prm.world.cache import build_facts, cached
    from rl_prm.world.dpo import sample_pairs, train_dpo
    from rl_prm.world.judge_units import training_units
    from rl_prm.world.policy import policy_path

    init = Path(policy) if policy is not None else policy_path()
    sft_dir = sft_judge_path(cfg.sft, init)
    if cfg.dpo is None:
        return sft_dir

    def dpo(model, tok) -> dict:
        from transformers import AutoModelForCausalLM

        policy_model = AutoModelForCausalLM.from_pretrained(init).eval()  # its samples are DPO targets
        with heartbeat(f"[world judge DPO] {cfg.dpo.units} steps to critique ({cfg.dpo.policy_share:.0%} from the "
                       "policy's own samples)"):
            units, unit_facts = training_units(cfg.dpo.units, cfg.dpo.seed + 100, cfg.dpo.policy_share, policy_model,
                                               tok, cfg.sft.mix)
        del policy_model
        pairs, labels, facts = sample_pairs(str(sft_dir), tok, units, cfg.dpo)
        return {"dpo_pairs": {**facts, "units": unit_facts}, **train_dpo(model, tok, pairs, cfg.dpo, labels=labels)}

    return cached("judge", (sft_dir.name, asdict(cfg.dpo)),
                  lambda d: {"config": asdict(cfg), "sft": build_facts(sft_dir), **_fine_tune(sft_dir, d, dpo)})


if __name__ == "__main__":
    import json
    import sys

    from rl_prm.world.cache import build_facts
    from rl_prm.world.judge_eval import evaluate_judge

    d = judge_path()
    print(d, json.dumps(build_facts(d)))
    if "--eval" in sys.argv:
        r = evaluate_judge(d, n=100)
        print(json.dumps({"f1_per_k": r["f1_per_k"], "timing_s": r["timing_s"], "step_accuracy": r["step_accuracy"]},
                         indent=1))
