"""GPU check for a machine with only torch (CUDA) + transformers: no vLLM, Ray or verl (issue #13).

    bash launch/gpu_check.sh                 # CUDA vs CPU (a lent GPU machine), <= 5 minutes
    bash launch/gpu_check.sh --cpu           # the same checks with the "device" side on CPU (a dry run)
    bash launch/gpu_check.sh --cpu --small   # small credit sizes (tests/test_verl_cpu.py runs this)

1. Learner (rl_prm.update): one PPO update (2 epochs, KL, 2 micro-batches) of the tiny policy on
   the same batch on the device and on the CPU: metrics and parameter deltas agree (fp32 on both:
   tight; the device's bf16 default vs CPU fp32: metrics within bf16 tolerance).
2. Credit / estimator math (rl_prm.credit) at B=1024, T=4096, S=32: every registered estimator,
   every credit mode and the rm_scores encoding round trip on the device equal the CPU results;
   device and CPU timings are printed.
Last line: PASS or FAIL (exit code 0 / 1).

rl_prm.update calls five of verl's loss functions (verl.trainer.ppo.core_algos.agg_loss /
compute_policy_loss_vanilla / kl_penalty, verl.utils.torch_functional.logprobs_from_logits /
entropy_from_logits). verl is not installed here and must not be imported: STAND_IN below provides
the same functions (token-mean path; tests/test_verl_cpu.py checks they equal verl 0.9.1's), and an
import guard refuses vllm, ray and any other verl module.
"""

from __future__ import annotations

import argparse
import importlib.abc
import math
import os
import sys
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BLOCKED = ("vllm", "ray", "verl")

# ------------------------------------------------------------------ stand-ins for verl's loss functions


def _masked_sum(values, mask, axis=None):
    import torch

    return (torch.where(mask.bool(), values, 0.0) * mask).sum(axis=axis)


def masked_mean(values, mask, axis=None):
    return _masked_sum(values, mask, axis) / (mask.sum(axis=axis) + 1e-8)


def agg_loss(loss_mat, loss_mask, loss_agg_mode, dp_size=1, batch_num_tokens=None, global_batch_size=None,
             loss_scale_factor=None):
    if loss_agg_mode != "token-mean":
        raise NotImplementedError(f"gpu_check stand-in: loss_agg_mode {loss_agg_mode!r} (rl_prm uses token-mean)")
    if batch_num_tokens is None:
        batch_num_tokens = loss_mask.sum()
    return _masked_sum(loss_mat, loss_mask) / batch_num_tokens * dp_size


def compute_policy_loss_vanilla(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode="token-mean",
                                config=None, rollout_is_weights=None):
    import torch

    clip = config.clip_ratio
    low = config.clip_ratio_low if config.clip_ratio_low is not None else clip
    high = config.clip_ratio_high if config.clip_ratio_high is not None else clip
    clip_c = config.get("clip_ratio_c", 3.0)
    neg_kl = torch.clamp(log_prob - old_log_prob, min=-20.0, max=20.0)
    ratio = torch.exp(neg_kl)
    ppo_kl = masked_mean(-neg_kl, response_mask)
    l1 = -advantages * ratio
    l2 = -advantages * torch.clamp(ratio, 1 - low, 1 + high)
    c1 = torch.maximum(l1, l2)
    clipfrac = masked_mean(torch.gt(l2, l1).float(), response_mask)
    l3 = -advantages * clip_c
    c2 = torch.min(l3, c1)
    clipfrac_lower = masked_mean(torch.gt(c1, l3) * (advantages < 0).float(), response_mask)
    losses = torch.where(advantages < 0, c2, c1)
    if rollout_is_weights is not None:
        losses = losses * rollout_is_weights
    loss = agg_loss(losses, response_mask, loss_agg_mode, **config.global_batch_info)
    return loss, {"actor/pg_clipfrac": clipfrac.detach().item(), "actor/ppo_kl": ppo_kl.detach().item(),
                  "actor/pg_clipfrac_lower": clipfrac_lower.detach().item()}


def kl_penalty(logprob, ref_logprob, kl_penalty):
    import torch

    base = kl_penalty[:-1] if kl_penalty.endswith("+") else kl_penalty
    if base in ("kl", "k1"):
        fwd = logprob - ref_logprob
    elif base == "abs":
        fwd = (logprob - ref_logprob).abs()
    elif base in ("mse", "k2"):
        fwd = 0.5 * (logprob - ref_logprob).square()
    elif base in ("low_var_kl", "k3"):
        kl = torch.clamp(ref_logprob - logprob, min=-20, max=20)
        fwd = torch.clamp((torch.exp(kl) - kl - 1).contiguous(), min=-10, max=10)
    else:
        raise NotImplementedError(kl_penalty)
    if not kl_penalty.endswith("+") or kl_penalty in ("mse", "k2"):
        return fwd
    back = 0.5 * (logprob - ref_logprob).square()
    return back - back.detach() + fwd.detach()


def logprobs_from_logits(logits, labels, inplace_backward=True):
    import torch

    logp = torch.nn.functional.log_softmax(logits, dim=-1)
    return torch.gather(logp, -1, labels.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits):
    import torch

    pd = torch.nn.functional.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - torch.sum(pd * logits, dim=-1)


STAND_IN = {
    "verl.trainer.ppo.core_algos": {"agg_loss": agg_loss, "compute_policy_loss_vanilla": compute_policy_loss_vanilla,
                                    "kl_penalty": kl_penalty},
    "verl.utils.torch_functional": {"logprobs_from_logits": logprobs_from_logits,
                                    "entropy_from_logits": entropy_from_logits, "masked_mean": masked_mean},
}


class _Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in BLOCKED:
            raise ImportError(f"gpu_check: {fullname} must not be imported here (no vllm/ray/verl on this machine)")
        return None


def install_guard() -> None:
    """Stand-in verl loss functions in sys.modules; any other vllm/ray/verl import raises."""
    for name in BLOCKED:
        if name in sys.modules:
            raise RuntimeError(f"gpu_check: {name} was imported before the guard")
    for full, attrs in STAND_IN.items():
        parts = full.split(".")
        for i in range(1, len(parts) + 1):
            mod_name = ".".join(parts[:i])
            mod = sys.modules.get(mod_name)
            if mod is None:
                mod = types.ModuleType(mod_name, "gpu_check stand-in (not verl)")
                mod.__path__ = []  # a package, so submodules resolve from sys.modules
                sys.modules[mod_name] = mod
                if i > 1:
                    setattr(sys.modules[".".join(parts[: i - 1])], parts[i - 1], mod)
        for k, v in attrs.items():
            setattr(sys.modules[full], k, v)
    sys.meta_path.insert(0, _Refuse())


# ------------------------------------------------------------------------------------- helpers

RESULTS: list[tuple[str, bool, str]] = []


def record(name: str, ok: bool, detail: str) -> None:
    RESULTS.append((name, ok, detail))
    print(f"  [{'ok' if ok else 'FAIL'}] {name}: {detail}", flush=True)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device, reps: int = 3):
    fn()  # warm-up (CUDA kernels, allocator)
    _sync(device)
    t0 = time.perf_counter()
    out = None
    for _ in range(reps):
        out = fn()
    _sync(device)
    return out, (time.perf_counter() - t0) / reps


# ------------------------------------------------------------------------------ 1. the learner


def _batch(tok_vocab: int, seed: int = 0):
    import torch

    from rl_prm.update import make_batch

    g = torch.Generator().manual_seed(seed)
    B = 8
    prompts = [torch.randint(3, tok_vocab, (int(torch.randint(6, 14, (1,), generator=g)),), generator=g).tolist()
               for _ in range(B)]
    responses = [torch.randint(3, tok_vocab, (int(torch.randint(12, 40, (1,), generator=g)),), generator=g).tolist()
                 for _ in range(B)]
    adv = torch.randn(B, 40, generator=g)
    return make_batch(prompts, responses, adv, pad_id=0)


def _learner_run(policy: str, device: str, dtype: str, batch):
    import torch

    import rl_prm.update as up

    orig = up._load_model

    def load(path, dev):
        if dtype == "default":
            return orig(path, dev)
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(str(path), dtype=getattr(torch, dtype)).to(dev)

    up._load_model = load
    try:
        cfg = up.LearnerConfig(lr=1e-4, kl_coef=0.01, kl_type="low_var_kl", entropy_coef=0.01, clip_ratio=0.2,
                               micro_batch_size=4, ppo_epochs=2, grad_clip=1.0, device=device, seed=0)
        learner = up.Learner(policy, cfg)
        before = {k: v.detach().float().cpu().clone() for k, v in learner.model.state_dict().items()}
        t0 = time.perf_counter()
        metrics = learner.update(batch)
        _sync(torch.device(device))
        dt = time.perf_counter() - t0
        after = {k: v.detach().float().cpu() for k, v in learner.model.state_dict().items()}
    finally:
        up._load_model = orig
    delta = torch.cat([(after[k] - before[k]).flatten() for k in sorted(before)])
    return metrics, delta, dt, str(next(learner.model.parameters()).dtype)


def check_learner(device: str) -> None:
    import torch

    from rl_prm.tiny import policy_path

    print(f"1. learner update (rl_prm.update) on {device} vs cpu", flush=True)
    policy = str(policy_path())
    from transformers import AutoConfig

    vocab = int(AutoConfig.from_pretrained(policy).vocab_size)
    batch = _batch(vocab)
    ref_m, ref_d, ref_t, _ = _learner_run(policy, "cpu", "float32", batch)
    keys = ("actor/pg_loss", "actor/kl", "actor/entropy", "actor/grad_norm", "actor/ppo_kl")
    runs = [("float32", 1e-3, 2e-3)]
    if device != "cpu":
        runs.append(("default", 5e-2, None))  # the Learner's own choice on CUDA (bf16)
    for dtype, rtol, dtol in runs:
        m, d, t, used = _learner_run(policy, device, dtype, batch)
        bad = [k for k in keys if k in ref_m and not math.isclose(m[k], ref_m[k], rel_tol=rtol, abs_tol=rtol * 1e-2)]
        detail = ", ".join(f"{k.split('/')[1]} {m[k]:.6g}/{ref_m[k]:.6g}" for k in keys if k in ref_m)
        record(f"update metrics, {device} {used} vs cpu float32 (rtol {rtol})", not bad,
               f"{detail}; {t:.2f}s vs {ref_t:.2f}s" + (f"; off: {bad}" if bad else ""))
        if dtol is not None:
            cos = float(torch.nn.functional.cosine_similarity(d.double(), ref_d.double(), dim=0))
            rel = float((d - ref_d).norm() / ref_d.norm().clamp_min(1e-12))
            record(f"parameter update, {device} {used} vs cpu float32", cos > 0.999 and rel < dtol,
                   f"cosine {cos:.6f}, relative difference {rel:.2e} (|delta| {ref_d.norm():.3e})")


# ------------------------------------------------------------------------- 2. credit / estimators


def random_step_batch(B: int, T: int, S: int, group: int = 8, seed: int = 0):
    """A StepBatch like a real step's: lengths T/4..T, 1..S steps per response ending at sorted
    distinct positions, a separator after each non-final step, 0/1 outcomes, groups of `group`."""
    import torch

    from rl_prm.credit import StepBatch, quantize_scores

    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(max(2, T // 4), T + 1, (B,), generator=g)
    n_steps = torch.minimum(torch.randint(1, S + 1, (B,), generator=g), lengths // 2)
    ar = torch.arange(S)
    step_mask = ar.unsqueeze(0) < n_steps.unsqueeze(1)
    # sorted distinct step ends in [0, len-1], the last one at len-1
    r = torch.rand(B, T, generator=g)
    r[torch.arange(T).unsqueeze(0) >= (lengths - 1).unsqueeze(1)] = 2.0  # never pick past the response
    picks = torch.topk(-r, S, dim=1).indices.sort(dim=1).values  # S distinct random positions < len-1
    ends = torch.zeros(B, S, dtype=torch.long)
    for b in range(B):
        k = int(n_steps[b])
        e = picks[b, : k - 1].tolist() + [int(lengths[b]) - 1]
        ends[b, :k] = torch.tensor(sorted(set(e))[:k] if len(set(e)) == k else e)
    response_mask = (torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)).float()
    sep = torch.zeros(B, T, dtype=torch.bool)
    rows = torch.arange(B).unsqueeze(1).expand(B, S)
    inner = step_mask & (ar.unsqueeze(0) < (n_steps - 1).unsqueeze(1))
    nxt = (ends + 1).clamp(max=T - 1)
    sep[rows[inner], nxt[inner]] = True
    scores = quantize_scores(torch.rand(B, S, generator=g)).float() * step_mask
    outcome = (torch.rand(B, generator=g) < 0.4).float()
    batch = StepBatch(scores, step_mask, ends * step_mask, response_mask, sep, outcome,
                      torch.ones(B, dtype=torch.bool), torch.arange(B) // group)
    batch.check()
    return batch


def _to(batch, device):
    import dataclasses

    import torch

    return dataclasses.replace(batch, **{f.name: getattr(batch, f.name).to(device) for f in dataclasses.fields(batch)
                                         if isinstance(getattr(batch, f.name), torch.Tensor)})


def _close(a, b, atol: float, rtol: float) -> tuple[bool, float]:
    import torch

    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    if a.shape != b.shape:
        return False, float("inf")
    err = float((a - b).abs().max()) if a.numel() else 0.0
    finite = bool(torch.isfinite(a).all() and torch.isfinite(b).all())
    return finite and bool(torch.allclose(a, b, atol=atol, rtol=rtol)), err


def check_credit(device: str, B: int, T: int, S: int) -> None:
    import torch

    from rl_prm.credit import ESTIMATORS, MODES, CreditConfig, EstimatorOptions, assign_credit, decode_rm_scores

    dev = torch.device(device)
    print(f"2. credit / estimators (rl_prm.credit) at B={B}, T={T}, S={S} on {device} vs cpu", flush=True)
    t0 = time.perf_counter()
    cpu_batch = random_step_batch(B, T, S)
    print(f"  (random StepBatch built in {time.perf_counter() - t0:.1f}s)", flush=True)
    dev_batch = _to(cpu_batch, dev)
    for name in ESTIMATORS.names():
        opts = EstimatorOptions(CreditConfig(mode="min_form", temperature=0.1), whiten=True, zero_separator_adv=True,
                                verifiable=True, outcome_coef=1.0)
        fn = ESTIMATORS.get(name)
        (ca, cr), ct = _timed(lambda: fn(cpu_batch, opts), torch.device("cpu"), reps=1)
        (da, dr), dt = _timed(lambda: fn(dev_batch, opts), dev)
        ok_a, ea = _close(da, ca, 1e-4, 1e-4)
        ok_r, er = _close(dr, cr, 1e-4, 1e-4)
        record(f"estimator {name}", ok_a and ok_r,
               f"max |adv diff| {ea:.2e}, |ret diff| {er:.2e}; {device} {dt * 1e3:.1f} ms, cpu {ct * 1e3:.1f} ms")
    for mode in MODES.names():
        args = (cpu_batch.step_scores, cpu_batch.step_mask, cpu_batch.step_ends, cpu_batch.response_mask)
        dargs = tuple(a.to(dev) for a in args)
        c, ct = _timed(lambda: assign_credit(*args, mode=mode, temperature=0.1), torch.device("cpu"), reps=1)
        d, dt = _timed(lambda: assign_credit(*dargs, mode=mode, temperature=0.1), dev)
        ok, e = _close(d, c, 1e-5, 1e-5)
        record(f"assign_credit mode={mode}", ok, f"max diff {e:.2e}; {device} {dt * 1e3:.1f} ms, cpu {ct * 1e3:.1f} ms")
    enc_c, ct = _timed(lambda: cpu_batch.to_rm_scores(), torch.device("cpu"), reps=1)
    enc_d, dt = _timed(lambda: dev_batch.to_rm_scores(), dev)
    ok, e = _close(enc_d, enc_c, 0.0, 0.0)
    dec = decode_rm_scores(enc_d, dev_batch.response_mask)
    back = bool(torch.equal(dec.step_scores.float().cpu() * cpu_batch.step_mask, cpu_batch.step_scores)
                and torch.equal(dec.step_mask.cpu(), cpu_batch.step_mask))
    record("rm_scores encode (bit-identical) + decode round trip", ok and back,
           f"max diff {e:.1e}, round trip {'exact' if back else 'LOST'}; {device} {dt * 1e3:.1f} ms, cpu {ct * 1e3:.1f} ms")


# ------------------------------------------------------------------------------------------ main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cpu", action="store_true", help="dry run: the device side on CPU too (no CUDA needed)")
    p.add_argument("--small", action="store_true", help="credit at B=64, T=512, S=8 (quick)")
    p.add_argument("--budget-s", type=float, default=300.0, help="FAIL if the whole check takes longer (default 300)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    install_guard()
    import torch

    if args.cpu:
        device = "cpu"
    elif torch.cuda.is_available():
        device = "cuda"
    else:
        print("gpu_check: no CUDA device (use --cpu for the dry run)")
        print("FAIL")
        return 1
    name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu (dry run)"
    print(f"gpu_check: torch {torch.__version__}, device {name}; vllm/ray/verl not imported", flush=True)
    B, T, S = (64, 512, 8) if args.small else (1024, 4096, 32)
    for step in (lambda: check_learner(device), lambda: check_credit(device, B, T, S)):
        try:
            step()
        except Exception as e:  # noqa: BLE001 - a check that crashes is a failed check, say which
            import traceback

            traceback.print_exc()
            record("check crashed", False, f"{type(e).__name__}: {e}")
    wall = time.perf_counter() - t0
    record(f"wall time <= {args.budget_s:.0f}s", wall <= args.budget_s, f"{wall:.1f}s")
    leaked = [m for m in sys.modules if m.split(".")[0] in BLOCKED and getattr(sys.modules[m], "__file__", None)]
    record("no vllm/ray/verl module loaded", not leaked, f"{leaked[:3]}" if leaked else "none")
    failed = [n for n, ok, _ in RESULTS if not ok]
    print(f"gpu_check: {len(RESULTS) - len(failed)}/{len(RESULTS)} checks passed" + (f"; failed: {failed}" if failed else ""))
    print("PASS" if not failed else "FAIL")
    return 0 if not failed else 1


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
