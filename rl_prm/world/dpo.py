"""DPO of the world judge on its own critiques, as R-PRM does after SFT.

    pairs, facts = sample_pairs(sft_judge_dir, tok, units, DPOConfig())   # (prompt, chosen, rejected) token ids
    facts.update(train_dpo(model, tok, pairs, DPOConfig()))        # model: the SFT judge, trained in place

Pairs: for judge targets of the "train" split (``units``: rl_prm.world.judge_units.training_units, a seed of
their own, ``policy_share`` of them the world policy's own samples, the rest rl_prm.world.judge_units.synthetic_units),
``samples`` critiques are sampled from the SFT judge (vLLM, ``temperature``); a critique whose verdict
equals the label is "chosen", one with the wrong verdict (or none) "rejected"; each target with both
gives up to ``max_pairs_per_unit`` pairs (the judge's own mistakes, next to its own right answers).
With ``checked`` (the world knows every check's truth), "chosen" also needs every check right (the
critique equals the teacher's, rl_prm.world.teacher.first_divergence); a right verdict reached
through a wrong check (a copied amount, a conclusion that does not follow) is "rejected", so DPO does
not reinforce the shortcut.
Loss (Rafailov et al. 2023): -log sigmoid(beta * ((log pi(c) - log ref(c)) - (log pi(r) - log ref(r)))),
log-probs summed over the critique tokens, ref = the frozen SFT judge (its log-probs computed once),
plus ``nll_coef`` x the chosen critique's mean token NLL (Pang et al. 2024, "iterative RPO"): DPO
alone lowers both critiques' likelihood, and without it the judge's critiques degenerated into
repeated fragments (mini-ProcessBench F1 0: docs/world.md).

torch is imported inside the functions that compute the DPO loss: seconds to import, which importing
this module for DPOConfig (rl_prm.world.judge) does not pay.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass
from typing import Any

from rl_prm.progress import heartbeat, step_lines
from rl_prm.score.engines import GenParams, VLLMJudgeEngine
from rl_prm.score.prompt import judge_prompt
from rl_prm.tiny.judge_sft import _common_prefix_len, optimizer_step, pad_batch
from rl_prm.vllm_engine import judge_dtype
from rl_prm.world.teacher import first_divergence

_VERDICT = re.compile(r"Is the step correct \(Yes/No\)\? (Yes|No)")


@dataclass
class DPOConfig:
    units: int = 600  # judge targets whose critiques are sampled (docs/world.md: DPO's size)
    samples: int = 4  # critiques sampled per target from the SFT judge
    temperature: float = 1.0  # their sampling temperature
    max_pairs_per_unit: int = 2
    checked: bool = True  # chosen = right verdict AND every check right (see the module doc)
    beta: float = 0.1
    nll_coef: float = 1.0  # weight of the chosen critiques' mean token NLL next to the DPO loss
    steps: int = 40  # docs/world.md: 80 steps made the critiques alike (F1 no longer rose with K)
    batch_size: int = 8  # pairs per optimizer step
    lr: float = 2e-5
    sample_dtype: str = "auto"  # the sampling engine's dtype (rl_prm.vllm_engine.judge_dtype: auto = as reward.prm.dtype's)
    policy_share: float = 0.5  # of the units, the share from the world policy's own samples (rl_prm.world.judge_units)
    # each batch draws half its pairs from right steps (chosen verdict Yes) and half from wrong ones (No), so that
    # right steps outnumbering errors does not move the judge toward "Yes"; off: measured no better (docs/world.md)
    balance_verdicts: bool = False
    seed: int = 0


def verdict_of(text: str) -> bool | None:
    """The critique's verdict (True = Yes), None if it has none."""
    m = _VERDICT.search(text)
    return None if m is None else m.group(1) == "Yes"


def make_pairs(units: list[tuple], samples: list[list[tuple[list[int], str]]], max_per_unit: int,
               rng: random.Random, checked: bool = False) -> tuple[list[tuple[int, list[int], list[int]]], dict]:
    """(unit index, chosen ids, rejected ids) from each unit's sampled critiques ((ids, text) each;
    units are (question, steps, k, correct)): chosen = verdict equals the unit's label (and, if
    ``checked``, the critique is the teacher's), rejected = the rest. Returns the pairs and counts
    (critiques, right verdicts, pairs, units with a pair; with ``checked`` also right checks)."""
    pairs, n_right, n_checked, n_crit, n_units = [], 0, 0, 0, 0
    for i, (unit, outs) in enumerate(zip(units, samples)):
        correct = unit[-1]
        verdict_ok = [verdict_of(text) == correct for _, text in outs]
        ok = [v and (not checked or first_divergence(*unit, text) is None) for v, (_, text) in zip(verdict_ok, outs)]
        right = [ids for (ids, _), o in zip(outs, ok) if o]
        wrong = [ids for (ids, _), o in zip(outs, ok) if not o]
        n_crit += len(outs)
        n_right += sum(verdict_ok)
        n_checked += len(right)
        got = [(i, c, r) for c, r in zip(rng.sample(right, len(right)), rng.sample(wrong, len(wrong)))][:max_per_unit]
        n_units += bool(got)
        pairs += got
    facts = {"critiques": n_crit, "critique_accuracy": round(n_right / max(1, n_crit), 4), "pairs": len(pairs),
             "units_with_pairs": n_units}
    if checked:
        facts["checked_accuracy"] = round(n_checked / max(1, n_crit), 4)
    return pairs, facts


def sample_pairs(judge_dir: str, tok: Any, units: list[tuple], cfg: DPOConfig, kv_cache_gib: float = 1
                 ) -> tuple[list[tuple], list[bool], dict]:
    """Sample the SFT judge's critiques of ``units`` ((question, steps, k, correct) each;
    rl_prm.world.judge_units.training_units) and pair them (see the module doc). Returns
    ([(prompt ids, chosen ids, rejected ids)], each pair's unit label (True: the step is right), facts).
    The engine is stopped before returning."""
    prompts = [tok.encode(judge_prompt(tok, q, steps, k), add_special_tokens=False) for q, steps, k, _ in units]
    t0 = time.perf_counter()
    with heartbeat("[world judge DPO] starting the SFT judge's sampling engine"):
        engine = VLLMJudgeEngine.from_path(str(judge_dir), max_model_len=2048, kv_cache_gib=kv_cache_gib,
                                           seed=cfg.seed, dtype=cfg.sample_dtype)
    try:
        t1 = time.perf_counter()
        with heartbeat(f"[world judge DPO] sampling {cfg.samples} critiques of each of {len(prompts)} steps"):
            outs = engine.generate(prompts, [cfg.samples] * len(prompts),
                                   [cfg.seed * 1_000_003 + i for i in range(len(prompts))],
                                   GenParams(cfg.temperature, 1.0, 224, [], logprobs=False))
        t2 = time.perf_counter()
    finally:
        engine.shutdown()
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    samples = [[(list(s.token_ids) if list(s.token_ids)[-1:] == [eos] else list(s.token_ids) + [eos], s.text)
                for s in o] for o in outs]
    pairs, facts = make_pairs(units, samples, cfg.max_pairs_per_unit, random.Random(cfg.seed), checked=cfg.checked)
    facts["sampling_s"] = {"engine_start": round(t1 - t0, 1), "generate": round(t2 - t1, 1)}
    facts["sampling_dtype"] = judge_dtype(cfg.sample_dtype) or "model"
    labels = [bool(units[i][-1]) for i, _, _ in pairs]
    facts["pairs_right_step"] = sum(labels)
    return [(prompts[i], c, r) for i, c, r in pairs], labels, facts


def _logps(model: Any, seqs: list[tuple[list[int], int]], pad_id: int, prefix: int, grad: bool) -> Any:
    """Summed log-probs of each sequence's tokens from its start index on ((ids, start) each); the
    first ``prefix`` tokens (shared by all) run once, without grad, as a KV cache."""
    import torch  # seconds to import (module doc)

    ctx = torch.enable_grad() if grad else torch.no_grad()
    with ctx:
        B = len(seqs)
        kw = {}
        if prefix > 0:
            with torch.no_grad():
                cache = model(input_ids=torch.tensor([seqs[0][0][:prefix]]), use_cache=True).past_key_values
            cache.batch_repeat_interleave(B)
            kw["past_key_values"] = cache
        x, attn, labels = pad_batch([(ids[prefix:], start - prefix) for ids, start in seqs], pad_id, prefix)
        logits = model(input_ids=x, attention_mask=attn, **kw).logits.float()
        lp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, x[:, 1:, None])[..., 0]
        mask = (labels[:, 1:] != -100).float()  # position t predicts token t + 1
        return (lp * mask).sum(-1)


def batch_indices(n: int, batch_size: int, gen: Any, labels: list[bool] | None = None) -> list[int]:
    """``batch_size`` pair indices drawn with replacement from ``n`` pairs: uniformly, or with ``labels``
    holding both values, half (rounded up) from the pairs labelled True and the rest from those labelled False."""
    import torch  # seconds to import (module doc)

    if not labels or all(labels) or not any(labels):
        return torch.randint(n, (batch_size,), generator=gen).tolist()
    out = []
    for group, size in ((True, (batch_size + 1) // 2), (False, batch_size // 2)):
        members = [i for i, lab in enumerate(labels) if lab == group]
        out += [members[j] for j in torch.randint(len(members), (size,), generator=gen).tolist()]
    return out


def train_dpo(model: Any, tok: Any, pairs: list[tuple[list[int], list[int], list[int]]], cfg: DPOConfig,
              log_every: int = 25, labels: list[bool] | None = None) -> dict:
    """DPO on (prompt, chosen, rejected) token ids; ``model`` (the SFT judge) is the reference and is
    trained in place. ``labels`` (per pair, True: a right step) balance the batches when
    ``cfg.balance_verdicts`` (``batch_indices``). Returns {"dpo_final_loss" (the DPO term), "dpo_final_nll" (chosen, per token),
    "dpo_reward_acc" (last 25 steps: chosen margin > 0),
    "dpo_train_s"}."""
    import torch  # seconds to import (module doc)

    if not pairs:
        return {"dpo_final_loss": None, "dpo_final_nll": None, "dpo_reward_acc": None, "dpo_train_s": 0.0}
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    prefix = _common_prefix_len([p for p, _, _ in pairs]) - 1
    seqs = [(p + c, len(p)) for p, c, _ in pairs] + [(p + r, len(p)) for p, _, r in pairs]
    model.eval()
    with heartbeat(f"[world judge DPO] reference log-probs of {len(seqs)} critiques"):
        ref = torch.cat([_logps(model, seqs[i: i + 32], tok.pad_token_id, prefix, grad=False)
                         for i in range(0, len(seqs), 32)])
    ref_c, ref_r = ref[: len(pairs)], ref[len(pairs):]
    n_chosen = torch.tensor([max(1, len(c)) for _, c, _ in pairs], dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(cfg.seed)
    model.train()
    loss_val, nll_val, wins = float("nan"), float("nan"), []
    due = step_lines(log_every)
    for step in range(1, cfg.steps + 1):
        idx = batch_indices(len(pairs), cfg.batch_size, gen, labels if cfg.balance_verdicts else None)
        lp = _logps(model, [seqs[i] for i in idx] + [seqs[len(pairs) + i] for i in idx], tok.pad_token_id, prefix,
                    grad=True)
        margin = cfg.beta * ((lp[: len(idx)] - ref_c[idx]) - (lp[len(idx):] - ref_r[idx]))
        nll = -(lp[: len(idx)] / n_chosen[idx]).mean()
        dpo_loss = -torch.nn.functional.logsigmoid(margin).mean()
        optimizer_step(model, opt, sched, dpo_loss + cfg.nll_coef * nll)
        loss_val, nll_val = dpo_loss.item(), nll.item()
        wins = (wins + [float((margin > 0).float().mean())])[-25:]
        if due(step):
            print(f"[world judge DPO] step {step}/{cfg.steps} loss {loss_val:.4f} nll {nll_val:.3f} "
                  f"margin>0 {sum(wins) / len(wins):.2f} ({time.perf_counter() - t0:.0f}s)", flush=True)
    model.eval()
    return {"dpo_final_loss": round(loss_val, 4), "dpo_final_nll": round(nll_val, 4), "dpo_reward_acc": round(sum(wins) / len(wins), 3),
            "dpo_train_s": round(time.perf_counter() - t0, 1)}
