"""Tiny world R-PRM judge: the seed's recipe in miniature (teacher critiques in the R-PRM format, SFT,
then DPO on the SFT judge's own critiques, rl_prm.world.dpo), evaluated with rl_prm.world.judge_eval.

    from rl_prm.world.judge import judge_path, JudgeConfig
    d = judge_path()                   # SFT judge (judge_sft-*) then DPO (judge-*); built on first call, cached

The SFT targets are the teacher's critiques (rl_prm.world.teacher) of synthetic judge units
(rl_prm.world.judge_units.synthetic_units). torch and transformers are imported inside the functions
that train a model: seconds to import, which importing this module for its configs and SFT examples
(rl_prm.world.release's build hash) does not pay.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from rl_prm.progress import heartbeat
from rl_prm.score.prompt import judge_prompt
from rl_prm.tiny.judge_sft import sft
from rl_prm.world.cache import build_facts, cached, set_build_threads
from rl_prm.world.dpo import DPOConfig, sample_pairs, train_dpo
from rl_prm.world.judge_eval import evaluate_judge
from rl_prm.world.judge_units import UnitMix, synthetic_units, training_units
from rl_prm.world.policy import policy_path
from rl_prm.world.teacher import TEACHER_VERSION, critique_parts


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


def encode_example(tok, question: str, steps: list[str], k: int, correct: bool) -> tuple[list[int], int, list[int]]:
    """(ids, start of the critique, key positions) of one judge SFT example: the R-PRM prompt, the
    teacher critique + <|im_end|>; key positions = the critique's critical tokens (the verdict last)."""
    ids_p = tok.encode(judge_prompt(tok, question, steps, k), add_special_tokens=False)
    parts = critique_parts(question, steps, k, correct)
    enc = tok("".join(t for t, _ in parts), add_special_tokens=False, return_offsets_mapping=True)
    ids_a = list(enc["input_ids"]) + [tok.convert_tokens_to_ids("<|im_end|>")]
    keys = _key_positions(parts, enc["offset_mapping"], len(ids_p))
    if keys[-1] != len(ids_p) + len(ids_a) - 2 or tok.decode([ids_a[-2]]) not in (" Yes", " No"):
        raise RuntimeError(f"world judge example: the token before <|im_end|> is not the verdict ({ids_a[-3:]})")
    return ids_p + ids_a, len(ids_p), keys


def judge_examples(tok, n: int, seed: int, mix: UnitMix = UnitMix()) -> list[tuple[list[int], int, list[int]]]:
    """(ids, start of the critique, key positions) for n judge SFT samples (``synthetic_units``)."""
    return [encode_example(tok, *u) for u in synthetic_units(n, seed, mix)]


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
    import torch  # seconds to import (module doc)

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
    deepen(model, cfg.extra_layers)
    data = judge_examples(tok, cfg.samples, cfg.seed, cfg.mix)
    t0 = time.perf_counter()
    loss_val = sft(model, tok, data, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
                   log_every=log_every, name="world judge SFT", key_weight=cfg.decision_weight)
    return {"final_loss": round(loss_val, 4), "train_s": round(time.perf_counter() - t0, 1)}


def _fine_tune(init: Path, d: Path, train) -> dict:
    """Load the model in ``init``, ``train(model, tok)`` -> facts, save it (with init's tokenizer and
    generation config) into ``d``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig  # seconds (module doc)

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
    init = Path(policy) if policy is not None else policy_path()
    return cached("judge_sft", (init.name, TEACHER_VERSION, asdict(cfg)),
                  lambda d: {"config": asdict(cfg), **_fine_tune(init, d, lambda m, t: train_judge(m, t, cfg))})


def judge_path(cfg: JudgeConfig = JudgeConfig(), policy: Path | None = None) -> Path:
    """Directory of the world judge: the SFT judge (``sft_judge_path``), then DPO on its own
    critiques (rl_prm.world.dpo) unless ``cfg.dpo`` is None; built and cached on first call.
    build.json holds both stages' facts."""
    init = Path(policy) if policy is not None else policy_path()
    sft_dir = sft_judge_path(cfg.sft, init)
    if cfg.dpo is None:
        return sft_dir

    def dpo(model, tok) -> dict:
        from transformers import AutoModelForCausalLM  # seconds (module doc)

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
    d = judge_path()
    print(d, json.dumps(build_facts(d)))
    if "--eval" in sys.argv:
        r = evaluate_judge(d, n=100)
        print(json.dumps({"f1_per_k": r["f1_per_k"], "timing_s": r["timing_s"], "step_accuracy": r["step_accuracy"]},
                         indent=1))
