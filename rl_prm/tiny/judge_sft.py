"""SFT of the tiny judge on critiques written by a programmatic teacher (rl_prm.tiny.arith).

Loss on the assistant tokens only (the critique and the closing <|im_end|>), so the judge learns
to write the R-PRM critique format and end it with the verdict line.
"""

from __future__ import annotations

import random


def judge_examples(tok, n: int, seed: int) -> list[tuple[list[int], int]]:
    """(token ids, index where the assistant answer starts) for n judge samples, ~half verdict No."""
    from rl_prm.score.prompt import judge_prompt
    from rl_prm.tiny.arith import corrupt, critique, make_problem

    rng = random.Random(seed)
    out = []
    while len(out) < n:
        p = make_problem(rng)
        if rng.random() < 0.5:
            p = corrupt(p, rng)
            k = p.label if rng.random() < 0.6 else rng.randrange(0, p.label + 1)
        else:
            k = rng.randrange(len(p.steps))
        prompt = judge_prompt(tok, p.question, p.step_texts, k)
        ids_p = tok.encode(prompt, add_special_tokens=False)
        ids_a = tok.encode(critique(p, k) + "<|im_end|>", add_special_tokens=False)
        out.append((ids_p + ids_a, len(ids_p)))
    return out


def _common_prefix_len(seqs: list[list[int]]) -> int:
    first, n = seqs[0], min(len(s) for s in seqs)
    for i in range(n):
        if any(s[i] != first[i] for s in seqs):
            return i
    return n


def train_judge(model, tok, *, samples: int, steps: int, batch_size: int, lr: float, seed: int) -> float:
    """SFT of the tiny judge on `samples` teacher critiques. Returns the last loss."""
    return sft(model, tok, judge_examples(tok, samples, seed), steps=steps, batch_size=batch_size, lr=lr, seed=seed)


def optimizer_step(model, opt, sched, loss) -> None:
    """One AdamW step on `loss`, gradients clipped to norm 1, then the schedule's step."""
    import torch

    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()


def sft(model, tok, data: list[tuple], *, steps: int, batch_size: int, lr: float, seed: int,
        weight_decay: float = 0.0, shared_prefix: bool = True, log_every: int = 0, name: str = "SFT",
        key_weight: float = 0.0) -> float:
    """Teacher-forced SFT on (token ids, answer start[, key positions]) tuples, loss on the answer
    tokens only. With ``key_weight`` > 0 the tokens at each example's key positions (e.g. a
    critique's decisions and verdict, a few tokens of ~100) add ``key_weight`` x their mean
    cross-entropy to the loss.

    With `shared_prefix`, the longest token prefix common to all examples (for judge prompts: the
    system turn + R-PRM template head, ~500 tokens) runs once per step without grad and its KV
    cache is reused for the whole batch, which makes a step ~5x cheaper on CPU. AdamW + one-cycle
    LR, grad clip 1.0. Returns the last loss.
    """
    import time

    import torch

    torch.manual_seed(seed)
    P = min(_common_prefix_len([d[0] for d in data]), min(d[1] for d in data)) - 1 if shared_prefix else 0
    prefix = torch.tensor([data[0][0][:P]])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    t0, loss_val = time.perf_counter(), float("nan")
    for step in range(1, steps + 1):
        idx = torch.randint(len(data), (batch_size,), generator=gen).tolist()
        batch = [(data[i][0][P:], data[i][1] - P) for i in idx]
        keys = [[k - P for k in (data[i][2] if len(data[i]) > 2 else ()) if k > P] for i in idx]
        T = max(len(ids) for ids, _ in batch)
        input_ids = torch.full((batch_size, T), tok.pad_token_id, dtype=torch.long)
        labels = torch.full((batch_size, T), -100, dtype=torch.long)
        attn = torch.zeros((batch_size, P + T), dtype=torch.long)
        attn[:, :P] = 1
        for b, (ids, start) in enumerate(batch):
            input_ids[b, : len(ids)] = torch.tensor(ids)
            labels[b, max(start, 0) : len(ids)] = torch.tensor(ids[max(start, 0):])
            attn[b, P : P + len(ids)] = 1
        kw = {}
        if P > 0:
            with torch.no_grad():
                cache = model(input_ids=prefix, use_cache=True).past_key_values
            cache.batch_repeat_interleave(batch_size)
            kw["past_key_values"] = cache
        out = model(input_ids=input_ids, attention_mask=attn, labels=labels, **kw)
        loss = out.loss
        rows = [b for b, ks in enumerate(keys) for _ in ks]
        if key_weight > 0 and rows:
            pos = torch.tensor([k for ks in keys for k in ks])
            rows_t = torch.tensor(rows)
            key_logits = out.logits[rows_t, pos - 1].float()  # logits at t predict token t + 1
            loss = loss + key_weight * torch.nn.functional.cross_entropy(key_logits, input_ids[rows_t, pos])
        optimizer_step(model, opt, sched, loss)
        loss_val = loss.item()
        if log_every and step % log_every == 0:
            print(f"[{name}] step {step}/{steps} loss {loss_val:.4f} ({time.perf_counter() - t0:.0f}s)", flush=True)
    model.eval()
    return loss_val
