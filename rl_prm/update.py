"""Stage 4: the policy learner (torch, HF `AutoModelForCausalLM`), PPO-clip with KL and entropy.

    learner = Learner(policy_dir, LearnerConfig(lr=1e-5, kl_coef=0.001, ...))
    batch = make_batch(prompt_ids, response_ids, advantages, pad_id)       # padded tensors
    metrics = learner.update(batch)        # actor/pg_loss, actor/kl, actor/entropy, ...
    engine.load_weights(learner.named_weights())                          # push to vLLM

Loss (per response token t with mask m_t; token-mean over the whole batch, accumulated over
micro-batches so the gradient equals one big batch's):
    ratio_t = exp(logp_t - logp_old_t)
    L_pg    = max(-A_t ratio_t, -A_t clip(ratio_t, 1-eps, 1+eps))   (+ dual clip c=3 for A<0)
    L       = L_pg + kl_coef * KL_t(pi || pi_ref) - entropy_coef * H_t
The PPO-clip loss, the KL estimators (k1 "kl", k3 "low_var_kl", k2 "mse"; Schulman 2020,
http://joschu.net/blog/kl-approx.html) and token-mean aggregation are verl's own
(verl.trainer.ppo.core_algos.compute_policy_loss_vanilla / kl_penalty / agg_loss), called through a
small config adapter, so both backends optimise the same objective. Log-probs are of
logits / temperature (the distribution the rollout sampled from), as verl computes them.

On-policy with ppo_epochs == 1 the "old" log-probs are the current ones detached (ratio == 1,
what verl's recomputed old_log_prob gives); with more epochs they are computed once up front. A batch
sampled by older weights (trainer.pipeline: one update behind) brings `old_logprobs`, the engine's
sampling log-probs of those weights, and the ratio is taken against them.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from typing import Any, Iterator, Optional, Sequence

import torch
from safetensors.torch import load_file

from rl_prm.schema import knob


KL_TYPES = ("kl", "k1", "low_var_kl", "k3", "mse", "k2")


@dataclass
class OptimConfig:
    """AdamW learner (the recipe's `optim` section)."""

    lr: float = knob(1e-5, "learning rate", gt=0)
    weight_decay: float = knob(0.0, "AdamW weight decay", ge=0)
    grad_clip: float = knob(1.0, "max global grad norm", gt=0)
    micro_batch_size: int = knob(8, "responses per forward/backward pass (gradient accumulation; per GPU on verl)", gt=0)
    ppo_epochs: int = knob(1, "passes (optimizer steps) over each step's batch", gt=0)
    warmup_steps: int = knob(0, "linear learning-rate warmup, in optimizer steps", ge=0)


@dataclass
class LossConfig:
    """PPO-clip policy loss with KL to a frozen reference and an entropy bonus (verl's functions)."""

    kl_coef: float = knob(0.001, "weight of KL(policy || reference) in the loss (0 = no reference model)", ge=0)
    kl_type: str = knob("low_var_kl", "KL estimator: kl/k1, low_var_kl/k3, mse/k2 (Schulman 2020)", choices=KL_TYPES)
    entropy_coef: float = knob(0.0, "entropy bonus weight", ge=0)
    clip_ratio: float = knob(0.2, "PPO clip epsilon", gt=0)


@dataclass
class LearnerConfig(OptimConfig, LossConfig):
    temperature: float = 1.0  # rollout temperature (log-probs of logits / temperature); 0 -> 1
    device: str = "auto"  # auto | cpu | cuda
    seed: int = 0

    @classmethod
    def from_recipe(cls, cfg: Any) -> "LearnerConfig":
        """The recipe's optim section + the loss knobs of its algorithm section + rollout temperature."""
        pick = lambda node, schema: {f.name: node[f.name] for f in fields(schema)}  # noqa: E731
        return cls(**pick(cfg.optim, OptimConfig), **pick(cfg.algorithm, LossConfig),
                   temperature=cfg.rollout.temperature, device=cfg.trainer.device, seed=cfg.run.seed)


@dataclass
class Batch:
    """Padded training batch (B sequences, prompt + response right-padded to L; T response slots).

    input_ids, attention_mask: [B, L];  resp_pos: [B, T] position in input_ids of each response token
    response_mask: [B, T] float (1 = real response token);  advantages: [B, T]
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    resp_pos: torch.Tensor
    response_mask: torch.Tensor
    advantages: torch.Tensor
    rollout_logprobs: Optional[torch.Tensor] = None  # [B, T] the engine's sampling log-probs (NaN = unknown)
    # [B, T] log-probs of the policy that sampled the batch, for the PPO ratio (NaN = the learner's own);
    # set for a batch sampled by older weights (trainer.pipeline), None = the learner's current policy
    old_logprobs: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def slice(self, i: int, j: int) -> "Batch":
        L = int(self.attention_mask[i:j].sum(1).max().item()) if j > i else 0
        T = int(self.response_mask[i:j].sum(1).max().item()) if j > i else 0
        T = max(T, 1)
        rl = self.rollout_logprobs[i:j, :T] if self.rollout_logprobs is not None else None
        old = self.old_logprobs[i:j, :T] if self.old_logprobs is not None else None
        return Batch(self.input_ids[i:j, : max(L, 1)], self.attention_mask[i:j, : max(L, 1)], self.resp_pos[i:j, :T],
                     self.response_mask[i:j, :T], self.advantages[i:j, :T], rl, old)


def make_batch(prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]], advantages: torch.Tensor,
               pad_id: int) -> Batch:
    """Right-padded batch. advantages: [B, T] with T >= the longest response (extra columns ignored)."""
    B = len(prompt_ids)
    if len(response_ids) != B or advantages.shape[0] != B:
        raise ValueError(f"make_batch: {B} prompts, {len(response_ids)} responses, advantages {tuple(advantages.shape)}")
    T = max([len(r) for r in response_ids] + [1])
    if advantages.shape[1] < T:
        raise ValueError(f"advantages have {advantages.shape[1]} columns for responses up to {T} tokens")
    L = max(len(p) + len(r) for p, r in zip(prompt_ids, response_ids))
    input_ids = torch.full((B, L), int(pad_id), dtype=torch.long)
    attn = torch.zeros(B, L, dtype=torch.long)
    resp_pos = torch.zeros(B, T, dtype=torch.long)
    rmask = torch.zeros(B, T, dtype=torch.float32)
    for b, (p, r) in enumerate(zip(prompt_ids, response_ids)):
        if not p:
            raise ValueError(f"make_batch: prompt {b} is empty")
        seq = list(p) + list(r)
        input_ids[b, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        attn[b, : len(seq)] = 1
        if r:
            resp_pos[b, : len(r)] = torch.arange(len(p), len(p) + len(r))
            rmask[b, : len(r)] = 1
    adv = advantages[:, :T].to(torch.float32) * rmask
    return Batch(input_ids, attn, resp_pos, rmask, adv)


class _LossConfig(dict):
    """The few ActorConfig fields verl's compute_policy_loss_vanilla reads (dict with attributes)."""

    __getattr__ = dict.__getitem__


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _load_model(path: str | os.PathLike, device: torch.device):
    from transformers import AutoModelForCausalLM  # seconds to import; the recipe imports this module for its configs

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    return AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).to(device)


class Learner:
    """Policy (trainable) + optional frozen reference + AdamW."""

    def __init__(self, policy: str | os.PathLike, cfg: LearnerConfig, ref_policy: str | os.PathLike | None = None):
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)
        self.model = _load_model(policy, self.device)
        self.model.config.use_cache = False
        self.model.train()
        self.ref = None
        if cfg.kl_coef:
            self.ref = _load_model(ref_policy or policy, self.device).eval()
            for p in self.ref.parameters():
                p.requires_grad_(False)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        warm = max(0, int(cfg.warmup_steps))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0
        )
        self.temperature = cfg.temperature if cfg.temperature and cfg.temperature > 0 else 1.0
        self.optimizer_steps = 0

    # ------------------------------------------------------------------ log-probs
    def _forward(self, model, mb: Batch, with_entropy: bool) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Response-token log-probs [b, T] (and entropies) of `model` on micro-batch `mb`."""
        # verl: seconds to import (ray, transformers, ...); the recipe imports this module for its configs
        from verl.utils.torch_functional import entropy_from_logits, logprobs_from_logits

        ids = mb.input_ids.to(self.device)
        out = model(input_ids=ids, attention_mask=mb.attention_mask.to(self.device), use_cache=False)
        # logits at position p predict token p+1: response token at position q is scored at q-1
        pos = (mb.resp_pos.to(self.device) - 1).clamp(min=0)
        logits = torch.gather(out.logits, 1, pos.unsqueeze(-1).expand(-1, -1, out.logits.shape[-1]))
        logits = logits.float() / self.temperature
        labels = torch.gather(ids, 1, mb.resp_pos.to(self.device))
        lp = logprobs_from_logits(logits, labels)
        ent = entropy_from_logits(logits) if with_entropy else None
        return lp, ent

    @torch.no_grad()
    def logprobs(self, batch: Batch, reference: bool = False) -> torch.Tensor:
        """[B, T] log-probs of the responses under the policy (or the reference), no grad."""
        model = self.ref if reference else self.model
        if model is None:
            raise ValueError("no reference model (kl_coef is 0)")
        outs = []
        mbs = self.cfg.micro_batch_size
        T = batch.response_mask.shape[1]
        for i in range(0, len(batch), mbs):
            mb = batch.slice(i, i + mbs)
            lp, _ = self._forward(model, mb, with_entropy=False)
            outs.append(torch.nn.functional.pad(lp.cpu(), (0, T - lp.shape[1])))
        return torch.cat(outs) * batch.response_mask

    # ------------------------------------------------------------------ update
    def update(self, batch: Batch) -> dict[str, float]:
        """PPO update on one batch (ppo_epochs optimizer steps). Returns mean metrics.

        The ratio's denominator is batch.old_logprobs where it is finite (the sampling policy's, for a
        batch sampled by older weights), else the learner's log-probs before this update."""
        # verl: seconds to import (see _forward)
        from verl.trainer.ppo.core_algos import agg_loss, compute_policy_loss_vanilla, kl_penalty

        cfg = self.cfg
        n_tok = int(batch.response_mask.sum().item())
        if n_tok == 0:
            return {"actor/skipped_empty_batch": 1.0}
        ref_lp = self.logprobs(batch, reference=True) if self.ref is not None else None
        old_lp = self.logprobs(batch) if cfg.ppo_epochs > 1 else None
        loss_cfg = _LossConfig(clip_ratio=cfg.clip_ratio, clip_ratio_low=None, clip_ratio_high=None, clip_ratio_c=3.0,
                               global_batch_info={"dp_size": 1, "batch_num_tokens": n_tok, "global_batch_size": len(batch)})
        mbs = cfg.micro_batch_size
        sums: dict[str, float] = {}

        def add(k: str, v: float, w: float) -> None:
            sums[k] = sums.get(k, 0.0) + float(v) * w

        grad_norms = []
        diff = [0.0, 0.0, 0]  # max, sum, count of |learner - engine| log-prob differences
        for _epoch in range(cfg.ppo_epochs):
            self.model.train()
            self.optimizer.zero_grad(set_to_none=True)
            for i in range(0, len(batch), mbs):
                mb = batch.slice(i, i + mbs)
                m = mb.response_mask.to(self.device)
                T = m.shape[1]
                w = float(m.sum().item()) / n_tok / cfg.ppo_epochs  # this micro-batch's share of the mean
                if w == 0:
                    continue
                lp, ent = self._forward(self.model, mb, with_entropy=True)
                old = lp.detach() if old_lp is None else old_lp[i : i + mbs, :T].to(self.device)
                if mb.old_logprobs is not None:  # sampled by older weights: the ratio is against those
                    given = mb.old_logprobs.to(self.device)
                    old = torch.where(torch.isfinite(given), given, old)
                adv = mb.advantages.to(self.device)
                pg_loss, pg_m = compute_policy_loss_vanilla(old, lp, adv, m, "token-mean", config=loss_cfg)
                loss = pg_loss
                ent_mean = agg_loss(ent, m, "token-mean", batch_num_tokens=n_tok)
                if cfg.entropy_coef:
                    loss = loss - cfg.entropy_coef * ent_mean
                if ref_lp is not None:
                    kl = kl_penalty(lp, ref_lp[i : i + mbs, :T].to(self.device), cfg.kl_type)
                    kl_loss = agg_loss(kl, m, "token-mean", batch_num_tokens=n_tok)
                    loss = loss + cfg.kl_coef * kl_loss
                    add("actor/kl", kl_loss.item() * n_tok / m.sum().item(), w)
                loss.backward()
                # the aggregated terms are already scaled to the batch mean: undo for the per-mb mean
                scale = n_tok / m.sum().item()
                add("actor/pg_loss", pg_loss.item() * scale, w)
                add("actor/entropy", ent_mean.item() * scale, w)
                add("actor/pg_clipfrac", pg_m["actor/pg_clipfrac"], w)
                add("actor/ppo_kl", pg_m["actor/ppo_kl"], w)
                if _epoch == 0 and mb.rollout_logprobs is not None:
                    # engine vs learner log-probs of the sampled tokens: ~0 iff the engine runs the
                    # learner's weights (a stale or failed weight sync shows up here)
                    rl = mb.rollout_logprobs.to(self.device)
                    ok = (m > 0) & torch.isfinite(rl)
                    if ok.any():
                        d = (lp.detach() - rl).abs()[ok]
                        diff[0] = max(diff[0], float(d.max()))
                        diff[1] += float(d.sum())
                        diff[2] += int(d.numel())
            gn = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            gn = float(gn.item())
            grad_norms.append(gn)
            if math.isfinite(gn):
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer_steps += 1
            else:
                sums["actor/skipped_nonfinite_grad"] = sums.get("actor/skipped_nonfinite_grad", 0.0) + 1.0
            self.optimizer.zero_grad(set_to_none=True)
        if diff[2]:
            sums["rollout/logprob_abs_diff_max"] = diff[0]
            sums["rollout/logprob_abs_diff_mean"] = diff[1] / diff[2]
        sums["actor/grad_norm"] = sum(grad_norms) / len(grad_norms)
        sums["actor/lr"] = self.scheduler.get_last_lr()[0]
        sums["actor/response_tokens"] = float(n_tok)
        return sums

    # ------------------------------------------------------------------ weights / state
    def named_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """HF-named policy tensors (for RolloutEngine.load_weights)."""
        for name, t in self.model.state_dict().items():
            yield name, t.detach()

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "optimizer_steps": self.optimizer_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.optimizer_steps = int(state.get("optimizer_steps", 0))

    def save_model(self, out_dir: str | os.PathLike, tokenizer: Any = None) -> None:
        self.model.save_pretrained(str(out_dir), safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(out_dir))

    def load_model_weights(self, model_dir: str | os.PathLike) -> None:
        """Load weights saved by save_model into the current policy (strict)."""
        files = sorted(p for p in os.listdir(model_dir) if p.endswith(".safetensors"))
        if not files:
            raise FileNotFoundError(f"no .safetensors weights in {model_dir}")
        state = {}
        for f in files:
            state.update(load_file(os.path.join(model_dir, f)))
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not (k == "lm_head.weight" and self.model.config.tie_word_embeddings)]
        if missing or unexpected:
            raise ValueError(f"checkpoint {model_dir}: missing {missing[:5]}, unexpected {unexpected[:5]}")
