"""The tiny models' SFT loop (rl_prm.tiny.judge_sft.sft): its loss is the mean answer-token cross-entropy
HF computes (plus the key tokens' term), and splitting a batch into length-sorted micro-batches gives
the same update as the whole batch."""

from __future__ import annotations

import copy
import random

import pytest


def _model_and_data(n: int = 24, seed: int = 0):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256))
    rng = random.Random(seed)
    prefix = [rng.randrange(1, 64) for _ in range(12)]  # common to every example, as a judge prompt's head
    data = []
    for _ in range(n):
        prompt = prefix + [rng.randrange(1, 64) for _ in range(rng.randrange(2, 20))]
        answer = [rng.randrange(1, 64) for _ in range(rng.randrange(3, 40))]
        keys = sorted(rng.sample(range(len(prompt), len(prompt) + len(answer)), 2))
        data.append((prompt + answer, len(prompt), keys))
    return model, data


class _Tok:
    pad_token_id = 0


def test_sft_loss_is_hf_mean_answer_cross_entropy_plus_key_term():
    import torch
    import torch.nn.functional as F

    from rl_prm.tiny.judge_sft import sft

    model, data = _model_and_data()
    ref = copy.deepcopy(model).eval()
    idx = torch.randint(len(data), (8,), generator=torch.Generator().manual_seed(3)).tolist()  # sft's first batch
    hf, keys = [], []
    with torch.no_grad():
        for i in idx:
            ids, start, ks = data[i]
            x = torch.tensor([ids])
            labels = x.clone()
            labels[0, :start] = -100
            out = ref(input_ids=x, labels=labels)
            hf.append((out.loss.item(), len(ids) - start))
            keys += [F.cross_entropy(out.logits[0, k - 1], x[0, k]).item() for k in ks]
    want = sum(loss * n for loss, n in hf) / sum(n for _, n in hf) + 0.5 * sum(keys) / len(keys)
    got = sft(model, _Tok(), data, steps=1, batch_size=8, lr=1e-3, seed=3, shared_prefix=False, key_weight=0.5)
    assert got == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("shared_prefix", [False, True])
def test_micro_batches_give_the_whole_batch_update(shared_prefix):
    from rl_prm.tiny.judge_sft import sft

    model, data = _model_and_data()
    start = copy.deepcopy(model)
    runs = []
    for m in (1, 3):
        mod = copy.deepcopy(model)
        loss = sft(mod, _Tok(), data, steps=3, batch_size=8, lr=1e-2, seed=1, shared_prefix=shared_prefix,
                   key_weight=1.0, micro_batches=m)
        runs.append((loss, dict(mod.named_parameters())))
    (l1, p1), (l3, p3) = runs
    assert l1 == pytest.approx(l3, rel=1e-5)
    moved = max((p1[k] - v).abs().max().item() for k, v in start.named_parameters())
    assert moved > 1e-3  # the steps did train
    # equal up to float rounding (AdamW turns rounding-level gradient differences into small update differences;
    # a micro-batch weighted by its own token count instead of the batch's moves parameters by ~lr)
    assert max((p1[k] - p3[k]).abs().max().item() for k in p1) < 1e-2 * moved


def test_a_step_line_comes_at_least_every_progress_interval(monkeypatch, capsys):
    """Step lines every log_every steps, and at least every rl_prm.progress.EVERY_S seconds between them
    (a slow build must not look hung): with the interval at 0, every step prints."""
    import rl_prm.progress as progress
    import rl_prm.tiny.judge_sft as judge_sft

    model, data = _model_and_data(n=8)
    judge_sft.sft(model, _Tok(), data, steps=3, batch_size=2, lr=1e-3, seed=0, log_every=100, name="t")
    assert capsys.readouterr().out == ""  # 3 steps, no 100th, well within the interval
    monkeypatch.setattr(progress, "EVERY_S", 0.0)
    judge_sft.sft(model, _Tok(), data, steps=3, batch_size=2, lr=1e-3, seed=0, log_every=100, name="t")
    assert [ln.split(" loss")[0] for ln in capsys.readouterr().out.splitlines()] == [
        "[t] step 1/3", "[t] step 2/3", "[t] step 3/3"]
