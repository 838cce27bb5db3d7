"""Builders behind rl_prm.tiny (see its docstring).

torch, transformers and tokenizers are imported inside the functions that build a model or the tokenizer:
seconds to import, which importing rl_prm.tiny for its paths and constants (rl_prm.models does) must not pay.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

from rl_prm.digest import json_digest
from rl_prm.score.prompt import FIRST_STEP_PREVIOUS, SYSTEM_PROMPT, template
from rl_prm.tiny.arith import corrupt, critique, make_problem
from rl_prm.tiny.judge_sft import train_judge

BUILD_VERSION = "2"  # 2: models trained with the tokenizer exactly as AutoTokenizer/vLLM reload it
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Qwen2.5's chat template shape (system/user/assistant turns with <|im_start|>/<|im_end|>).
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
VOCAB_SIZE = 2048

POLICY_CONFIG = dict(hidden_size=128, intermediate_size=384, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2)
JUDGE_CONFIG = dict(hidden_size=128, intermediate_size=512, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2)
JUDGE_TRAIN = dict(samples=512, steps=200, batch_size=16, lr=3e-3, seed=0)


def tiny_cache_dir() -> Path:
    return Path(os.environ.get("RL_PRM_CACHE", Path.home() / ".cache" / "rl_prm")) / "tiny"


def _key(*parts: object) -> str:
    return json_digest([BUILD_VERSION, *parts], 12)


def _cached(name: str, key_parts: tuple, build: Callable[[Path], dict | None], root: Path | None = None) -> Path:
    """Return <root>/<name>-<key> (root: tiny_cache_dir()), building it atomically (temp dir +
    rename) if missing. `build(tmp)` may return a dict of facts (measured accuracy, ...), stored
    with the build time in build.json."""
    root = root or tiny_cache_dir()
    final = root / f"{name}-{_key(name, *key_parts)}"
    if (final / "READY").exists():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        t0 = time.perf_counter()
        facts = build(tmp) or {}
        facts = {"name": name, "build_s": round(time.perf_counter() - t0, 1), **facts}
        (tmp / "build.json").write_text(json.dumps(facts, indent=1) + "\n")
        (tmp / "READY").write_text("ok\n")
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished first
            if not (final / "READY").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _corpus() -> list[str]:
    rng = random.Random(1234)
    lines = [template(), SYSTEM_PROMPT, FIRST_STEP_PREVIOUS]
    for _ in range(600):
        p = make_problem(rng)
        q = corrupt(p, rng) if rng.random() < 0.5 else p
        lines += [q.question, q.solution, critique(q, min(len(q.steps) - 1, max(q.label, 0)))]
    lines.append(" ".join(str(i) for i in range(200)))
    lines.append("\\frac{1}{2} \\sqrt{x} \\boxed{} \\cdot \\times \\div \\pi x^2 + y^2 = z^2 $ ( ) [ ] { } % . , ; : ! ? = < > ' \"")
    return lines


def build_tokenizer(out_dir: Path | None = None):
    """Byte-level BPE (vocab 2048) trained on fixed synthetic math text + the R-PRM template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # seconds to import (module doc)
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        model_max_length=4096,
        clean_up_tokenization_spaces=False,
    )
    hf.chat_template = CHAT_TEMPLATE
    hf = _as_reloaded(hf)
    yes, no = hf.encode(" Yes", add_special_tokens=False), hf.encode(" No", add_special_tokens=False)
    if yes[0] == no[0]:
        raise RuntimeError(f"tiny tokenizer maps ' Yes' and ' No' to the same first token ({yes} vs {no})")
    if out_dir is not None:
        hf.save_pretrained(out_dir)
    return hf


def _as_reloaded(hf):
    """The tokenizer as AutoTokenizer (and so vLLM) loads it from a saved Qwen2 model dir.

    transformers 5 reloads a saved tokenizer beside a qwen2 config as Qwen2Tokenizer, whose
    pre-tokenizer splits digits, unlike the in-memory byte-level BPE. Models must be trained with
    the tokenizer inference will use, so we save, reload and return that one.
    """
    from transformers import AutoTokenizer, Qwen2Config  # seconds to import (module doc)

    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        Qwen2Config(vocab_size=len(hf)).save_pretrained(d)
        again = AutoTokenizer.from_pretrained(d)
    again.chat_template = hf.chat_template
    return again


def model_config_args(tok, arch: dict) -> dict:
    """The Qwen2Config arguments of a tiny model with tokenizer ``tok`` and shape ``arch``."""
    return dict(
        vocab_size=len(tok),
        max_position_embeddings=4096,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        torch_dtype="float32",
        **arch,
    )


def _save_model(out_dir: Path, tok, arch: dict, seed: int, train: Callable | None = None) -> None:
    import torch  # seconds to import (module doc)
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(**model_config_args(tok, arch))
    model = Qwen2ForCausalLM(cfg)
    if train is not None:
        train(model, tok)
    model.eval()
    model.save_pretrained(out_dir, safe_serialization=True)
    GenerationConfig(
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=cfg.bos_token_id
    ).save_pretrained(out_dir)
    tok.save_pretrained(out_dir)


def policy_path() -> Path:
    """Directory of the tiny random-init policy (builds it on first call)."""

    def build(d: Path) -> None:
        _save_model(d, build_tokenizer(), POLICY_CONFIG, seed=0)

    return _cached("policy", (VOCAB_SIZE, POLICY_CONFIG), build)


def judge_path() -> Path:
    """Directory of the tiny R-PRM judge, overfit on synthetic R-PRM critiques (builds on first call)."""

    def build(d: Path) -> None:
        _save_model(d, build_tokenizer(), JUDGE_CONFIG, seed=1, train=lambda m, t: train_judge(m, t, **JUDGE_TRAIN))

    return _cached("judge", (VOCAB_SIZE, JUDGE_CONFIG, JUDGE_TRAIN), build)
