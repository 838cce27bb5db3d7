"""`rl-prm bench credit`: milliseconds per call of every credit mode and estimator (CPU by default).

Default shapes B=1024 responses, T=4096 tokens, S=32 step slots (each row has 1..S valid steps
ending inside a response of T/2..T tokens). Prints the median of --repeats timed calls after one
warm-up call.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

from rl_prm import argtypes
from rl_prm.credit import (
    ESTIMATORS,
    MODES,
    CreditConfig,
    EstimatorOptions,
    StepBatch,
    assign_credit,
    compute_gae,
    decode_rm_scores,
    encode_rm_scores,
    grpo_process_advantage,
    rloo_process_advantage,
)


def make_batch(B: int, T: int, S: int, n_per_prompt: int = 8, seed: int = 0, device: str = "cpu"):
    g = torch.Generator().manual_seed(seed)
    L = torch.randint(max(T // 2, S), T + 1, (B,), generator=g)
    rmask = (torch.arange(T).unsqueeze(0) < L.unsqueeze(1)).long()
    frac = torch.sort(torch.rand(B, S, generator=g), dim=1).values
    ends = torch.floor(frac * (L - S).unsqueeze(1).float()).long() + torch.arange(S)  # strictly increasing, < L
    k = torch.randint(1, S + 1, (B,), generator=g)
    mask = torch.arange(S).unsqueeze(0) < k.unsqueeze(1)
    scores = torch.rand(B, S, generator=g)
    outcome = torch.randint(0, 2, (B,), generator=g).double()
    sep = torch.zeros(B, T, dtype=torch.bool)
    sep.scatter_(1, torch.clamp(ends + 1, max=T - 1), mask)
    sep &= rmask.bool()
    index = [f"q{i // n_per_prompt}" for i in range(B)]
    values = torch.randn(B, T, generator=g)
    to = lambda t: t.to(device)  # noqa: E731
    return dict(scores=to(scores), mask=to(mask), ends=to(ends), rmask=to(rmask), outcome=to(outcome),
                sep=to(sep), index=index, values=to(values))


def _time(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    fn()
    sync()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="rl-prm bench credit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--B", type=argtypes.positive_int, default=1024)
    p.add_argument("--T", type=argtypes.positive_int, default=4096)
    p.add_argument("--S", type=argtypes.positive_int, default=32)
    p.add_argument("--n", type=argtypes.positive_int, default=8, help="responses per prompt (uid groups)")
    p.add_argument("--repeats", type=argtypes.positive_int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=argtypes.nonneg_int, default=0, help="torch.set_num_threads (0: leave as is)")
    p.add_argument("--skip-gae", action="store_true", help="skip compute_gae (a loop over T)")
    a = p.parse_args(argv or [])
    if a.threads:
        torch.set_num_threads(a.threads)
    d = make_batch(a.B, a.T, a.S, a.n, device=a.device)
    sync = (lambda: torch.cuda.synchronize()) if a.device.startswith("cuda") else (lambda: None)
    s, m, e, rm = d["scores"], d["mask"], d["ends"], d["rmask"]
    print(f"rl-prm bench credit: B={a.B} T={a.T} S={a.S} n={a.n} device={a.device} "
          f"threads={torch.get_num_threads()} torch={torch.__version__}; median of {a.repeats} (ms/call)")
    rows: list[tuple[str, float]] = []

    for mode in MODES.names():
        for label, kw in (("", {}), ("+clip", {"clip_eta": 0.0}), ("+delta", {"delta": True}),
                          ("+clip+delta", {"clip_eta": 0.0, "delta": True})):
            ms = _time(lambda: assign_credit(s, m, e, rm, mode=mode, **kw), a.repeats, sync)
            rows.append((f"assign_credit {mode}{label}", ms))

    code = encode_rm_scores(s, m, e, rm, outcome=d["outcome"], separator_mask=d["sep"])
    x = assign_credit(s, m, e, rm, mode="min_form")
    r = 2 * s - 1
    rows.append(("encode_rm_scores", _time(lambda: encode_rm_scores(s, m, e, rm, outcome=d["outcome"], separator_mask=d["sep"]), a.repeats, sync)))
    rows.append(("decode_rm_scores", _time(lambda: decode_rm_scores(code, rm), a.repeats, sync)))
    rows.append(("rloo_process_advantage (token baseline, VR, sep, whiten)", _time(
        lambda: rloo_process_advantage(x, rm, d["index"], e, m, outcome=d["outcome"], separator_mask=d["sep"], whiten=True),
        a.repeats, sync)))
    rows.append(("grpo_process_advantage", _time(lambda: grpo_process_advantage(r, m, e, rm, d["index"]), a.repeats, sync)))
    opts = EstimatorOptions(CreditConfig(mode="min_form"), whiten=True, zero_separator_adv=True, verifiable=True,
                            outcome_coef=1.0)
    for name in ESTIMATORS.names():  # what verl runs per step: decode the StepBatch, then the estimator
        fn = ESTIMATORS.get(name)
        rows.append((f"{name} (decode StepBatch + estimator, min_form)", _time(
            lambda: fn(StepBatch.from_rm_scores(code, rm, d["index"], has_outcome=True), opts), a.repeats, sync)))
    if not a.skip_gae:
        rows.append(("compute_gae (loop over T)", _time(lambda: compute_gae(x, d["values"], rm, 1.0, 0.95), max(1, a.repeats // 2), sync)))

    w = max(len(n) for n, _ in rows)
    for name, ms in rows:
        print(f"  {name:<{w}}  {ms:9.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
