"""SFT of the tiny judge on critiques written by a programmatic teacher (rl_prm.tiny.arith).

Loss on the assistant tokens only (the critique and the closing <|im_end|>), so the judge learns
to write the R-PRM critique format and end it with the verdict line.

torch is imported inside the functions that train: seconds to import, which importing this module for its
examples and helpers (rl_prm.world.judge, .dpo and .policy do, for their configs) must not pay.
"""

from __future__ import annotations

import copy
import random
import time

from rl_prm.progress import step_lines
from rl_prm.score.prompt import judge_prompt
from rl_prm.tiny.arith import corrupt, critique, make_problem


def judge_examples(tok, n: int, seed: int) -> list[tuple[list[int], int]]:
    """(token ids, index where the assistant answer starts) for n judge samples, ~half verdict No."""
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


def optimizer_step(model, opt, sched, loss=None) -> None:
    """One AdamW step: backward of ``loss`` (None: the gradients are already accumulated), gradients
    clipped to norm 1, then the schedule's step."""
    import torch  # seconds to import (module doc)

    if loss is not None:
        opt.zero_grad()
        loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()


def pad_batch(batch: list[tuple], pad_id: int, prefix_len: int):
    """(input_ids [B, T], attention mask [B, prefix_len + T], labels [B, T] with -100 outside the answers)
    of right-padded (ids, answer start[, ...]) rows that follow a shared ``prefix_len``-token KV cache."""
    import torch  # seconds to import (module doc)

    T = max(len(row[0]) for row in batch)
    input_ids = torch.full((len(batch), T), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), T), -100, dtype=torch.long)
    attn = torch.zeros((len(batch), prefix_len + T), dtype=torch.long)
    attn[:, :prefix_len] = 1
    for b, (ids, start, *_) in enumerate(batch):
        input_ids[b, : len(ids)] = torch.tensor(ids)
        labels[b, max(start, 0): len(ids)] = torch.tensor(ids[max(start, 0):])
        attn[b, prefix_len: prefix_len + len(ids)] = 1
    return input_ids, attn, labels


def _loss_sums(model, batch, pad_id: int, prefix_len: int, cache):
    """Summed next-token cross-entropy of ``batch``'s answer tokens and of its key tokens (the model's
    hidden states go through the LM head only at the positions that predict them): (answer CE sum,
    key CE sum). ``cache``: the shared ``prefix_len``-token prefix's KV cache (None without one), repeated per row."""
    import torch  # seconds to import (module doc)
    import torch.nn.functional as F

    input_ids, attn, labels = pad_batch(batch, pad_id, prefix_len)
    kw = {}
    if cache is not None:
        kw["past_key_values"] = copy.deepcopy(cache)
        kw["past_key_values"].batch_repeat_interleave(len(batch))
    h = model.get_decoder()(input_ids=input_ids, attention_mask=attn, **kw).last_hidden_state  # [B, T, H]
    rows, cols = (labels[:, 1:] != -100).nonzero(as_tuple=True)  # hidden state t predicts token t + 1
    head = model.get_output_embeddings()
    ce = F.cross_entropy(head(h[rows, cols]).float(), labels[rows, cols + 1], reduction="sum")
    krows = torch.tensor([b for b, (_, _, ks) in enumerate(batch) for _ in ks], dtype=torch.long)
    kpos = torch.tensor([k for _, _, ks in batch for k in ks], dtype=torch.long)
    kce = (F.cross_entropy(head(h[krows, kpos - 1]).float(), input_ids[krows, kpos], reduction="sum")
           if len(kpos) else h.sum() * 0)
    return ce, kce


def sft(model, tok, data: list[tuple], *, steps: int, batch_size: int, lr: float, seed: int,
        weight_decay: float = 0.0, shared_prefix: bool = True, log_every: int = 0, name: str = "SFT",
        key_weight: float = 0.0, micro_batches: int = 2) -> float:
    """Teacher-forced SFT on (token ids, answer start[, key positions]) tuples: loss = mean cross-entropy
    of the answer tokens of the batch, plus, with ``key_weight`` > 0, ``key_weight`` x the mean
    cross-entropy of the tokens at the key positions (e.g. a critique's decisions and verdict, a few
    tokens of ~100). AdamW + one-cycle LR, grad clip 1.0. Returns the last loss. With ``log_every``, a
    step line every ``log_every`` steps and at least every rl_prm.progress.EVERY_S seconds.

    With ``shared_prefix``, the longest token prefix common to all examples (for judge prompts: the
    system turn + R-PRM template head, ~450 tokens) runs once per step without grad and its KV cache
    is reused for every row. Each step's rows, sorted by length, run in ``micro_batches`` groups whose
    gradients add up to the whole batch's (the sums are divided by the batch's token counts), so a
    short row is padded only to its group's longest, not the batch's.
    """
    import torch  # seconds to import (module doc)

    torch.manual_seed(seed)
    P = min(_common_prefix_len([d[0] for d in data]), min(d[1] for d in data)) - 1 if shared_prefix else 0
    prefix = torch.tensor([data[0][0][:P]])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    t0, loss_val = time.perf_counter(), float("nan")
    due = step_lines(log_every)
    for step in range(1, steps + 1):
        idx = torch.randint(len(data), (batch_size,), generator=gen).tolist()
        rows = sorted(((data[i][0][P:], data[i][1] - P,
                        [k - P for k in (data[i][2] if len(data[i]) > 2 else ()) if k > P]) for i in idx),
                      key=lambda r: len(r[0]))
        n_tok = sum(len(ids) - max(start, 1) for ids, start, _ in rows)  # answer tokens with a predecessor
        n_key = sum(len(ks) for _, _, ks in rows)
        cache = None
        if P > 0:
            with torch.no_grad():
                cache = model.get_decoder()(input_ids=prefix, use_cache=True).past_key_values
        opt.zero_grad()
        loss_val = 0.0
        m = max(1, min(micro_batches, batch_size))
        for g in range(m):
            group = rows[g * len(rows) // m: (g + 1) * len(rows) // m]
            ce, kce = _loss_sums(model, group, tok.pad_token_id, P, cache)
            loss = ce / n_tok + (key_weight * kce / n_key if key_weight > 0 and n_key else 0.0)
            loss.backward()
            loss_val += loss.item()
        optimizer_step(model, opt, sched)
        if due(step):
            print(f"[{name}] step {step}/{steps} loss {loss_val:.4f} ({time.perf_counter() - t0:.0f}s)", flush=True)
    model.eval()
    return loss_val
