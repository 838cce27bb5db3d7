"""Tiny world policy: a Qwen2 (same shape as rl_prm.tiny's policy) SFT'd from scratch on a mix of gold
and flawed solutions, so it is imperfect but far from random: the starting point RL must improve.

    from rl_prm.world.policy import policy_path, evaluate_policy
    d = policy_path()                       # builds on first call (a few CPU minutes), then cached
    evaluate_policy(d, n=200)               # {"greedy_acc", "sampled_acc", ...} on held-out problems

Prompts are exactly what the one-node trainer sends (``rl_prm.generate.chat_prompt_ids`` with the
recipe's ``data.prompt_instruction``); loss on the assistant tokens (solution + <|im_end|>).
Training problems come from the world's "train" split only; evaluation from "test".
torch, transformers and rl_prm.generate (which imports torch) are imported inside the functions that use
them (seconds to import), not when another module imports this one for its config or ``generate``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from reward_fns.math_verify_reward import compute_score
from rl_prm.progress import heartbeat
from rl_prm.tasks import TASKS, process_metrics
from rl_prm.tiny.build import VOCAB_SIZE, _save_model
from rl_prm.tiny.judge_sft import sft
from rl_prm.world.cache import build_facts, cached, loaded_tokenizer, set_build_threads
from rl_prm.world.tasks import INSTRUCTION, policy_examples, problems


@dataclass
class PolicySFTConfig:
    arch: dict = field(default_factory=lambda: dict(hidden_size=128, intermediate_size=384, num_hidden_layers=2,
                                                    num_attention_heads=2, num_key_value_heads=2))
    examples: int = 8000
    flawed_fraction: float = 0.2  # SFT targets with a propagated error (wrong answer; the policy learns to make them)
    # SFT targets with a wrong step but the right answer (rl_prm.world.tasks.miracle), by kind (misquote, jump,
    # cancel): mostly misquotes, the miracle a small policy reproduces with the right answer (imitated jumps and
    # cancels mostly end in wrong answers), so that miracles are a large share of the SFT policy's right answers
    # (docs/world.md: measured rates)
    miracle_fraction: float = 0.5
    miracle_weights: tuple = (0.8, 0.1, 0.1)
    steps: int = 1000
    batch_size: int = 32
    lr: float = 2e-3  # measured: 5e-3 left one-digit arithmetic at ~73% teacher-forced (greedy 51%); 2e-3 -> 90%
    seed: int = 0
    eval_n: int = 200  # held-out problems measured at build time (greedy and sampled accuracy)


def sft_example_ids(tok, ex) -> tuple[list[int], int]:
    """(prompt + solution + <|im_end|> ids, prompt length) of one policy SFT example."""
    from rl_prm.generate import chat_prompt_ids  # imports torch (module doc)

    p = chat_prompt_ids(tok, ex.problem, INSTRUCTION)
    a = tok.encode(ex.solution + "<|im_end|>", add_special_tokens=False)
    return p + a, len(p)


def train_policy(model, tok, cfg: PolicySFTConfig, log_every: int = 100) -> dict:
    """Teacher-forced SFT on (prompt -> gold|flawed solution). Returns {"final_loss", "train_s"}."""
    data = [sft_example_ids(tok, ex) for ex in policy_examples("train", cfg.examples, seed=cfg.seed,
                                                                flawed_fraction=cfg.flawed_fraction,
                                                                miracle_fraction=cfg.miracle_fraction,
                                                                miracle_weights=tuple(cfg.miracle_weights))]
    t0 = time.perf_counter()
    loss_val = sft(model, tok, data, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
                   weight_decay=0.01, shared_prefix=False, log_every=log_every, name="world policy SFT")
    return {"final_loss": round(loss_val, 4), "train_s": round(time.perf_counter() - t0, 1)}


def generate(model, tok, questions: list[str], *, do_sample: bool, seed: int = 0, max_new_tokens: int = 160,
             batch_size: int = 100) -> list[str]:
    """HF generation (left-padded batches) of solutions for ``questions`` with the trainer's prompt."""
    import torch  # seconds to import (module doc)

    from rl_prm.generate import chat_prompt_ids  # imports torch (module doc)

    torch.manual_seed(seed)
    out = []
    for i in range(0, len(questions), batch_size):
        ids = [chat_prompt_ids(tok, q, INSTRUCTION) for q in questions[i: i + batch_size]]
        T = max(map(len, ids))
        x = torch.full((len(ids), T), tok.pad_token_id, dtype=torch.long)
        m = torch.zeros((len(ids), T), dtype=torch.long)
        for b, s in enumerate(ids):
            x[b, T - len(s):] = torch.tensor(s)
            m[b, T - len(s):] = 1
        with torch.no_grad():
            y = model.generate(input_ids=x, attention_mask=m, max_new_tokens=max_new_tokens, do_sample=do_sample,
                               temperature=1.0 if do_sample else None, top_p=1.0 if do_sample else None,
                               top_k=0 if do_sample else None,
                               eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        out += tok.batch_decode(y[:, T:], skip_special_tokens=True)
    return out


def accuracy(model, tok, n: int = 200, seed: int = 0) -> dict:
    """Held-out ("test" split) accuracy graded by reward_fns.math_verify_reward: greedy and T=1 sampled,
    with the process metrics (rl_prm.tasks.process_metrics: trace accuracy and miracle rate) of both."""
    task = TASKS.get("world")  # registered by the world's plugin module (rl_prm.world.plugin), loaded on lookup
    probs = problems("test", n, seed=seed)
    qs, golds = [p.question for p in probs], [str(p.answer) for p in probs]
    greedy = generate(model, tok, qs, do_sample=False)
    sampled = generate(model, tok, qs, do_sample=True, seed=seed)
    g = [compute_score("world", t, a) for t, a in zip(greedy, golds)]
    s = [compute_score("world", t, a) for t, a in zip(sampled, golds)]
    pg, ps = process_metrics(task, qs, greedy, g, prefix="greedy_"), process_metrics(task, qs, sampled, s, prefix="sampled_")
    return {"n": n, "greedy_acc": round(sum(g) / n, 3), "sampled_acc": round(sum(s) / n, 3),
            **{k: round(v, 3) for k, v in {**pg, **ps}.items() if not k.endswith("answer_accuracy")},
            "example": greedy[0]}


def evaluate_policy(path, n: int = 200, seed: int = 0) -> dict:
    import torch  # seconds to import (module doc)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    return accuracy(model, tok, n=n, seed=seed)


def policy_path(cfg: PolicySFTConfig = PolicySFTConfig()) -> Path:
    """Directory of the world policy for ``cfg`` (HF + vLLM loadable); builds and caches it on first
    call. build.json records the SFT loss, build time and measured held-out accuracy."""
    def build(d: Path) -> dict:
        set_build_threads()
        tok = loaded_tokenizer(d)
        facts: dict = {}

        def train(model, tok):
            facts.update(train_policy(model, tok, cfg))
            model.eval()
            with heartbeat(f"[world policy eval] greedy and sampled solutions of {cfg.eval_n} held-out problems"):
                facts.update(accuracy(model, tok, n=cfg.eval_n))

        _save_model(d, tok, cfg.arch, seed=cfg.seed, train=train)
        return {"config": asdict(cfg), **facts}

    return cached("policy", (VOCAB_SIZE, asdict(cfg)), build)


if __name__ == "__main__":
    p = policy_path()
    print(p)
    print(json.dumps(build_facts(p), indent=1))
