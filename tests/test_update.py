"""The learner (stage 4): log-probs of padded batches, PPO direction, micro-batch invariance, KL,
the engine-vs-learner log-prob check, checkpoint round trip. HF tiny policy only (no engine)."""

from __future__ import annotations

import pytest
import torch

from rl_prm.update import Learner, LearnerConfig, make_batch


def _seqs():
    # three prompts/responses of different lengths (token ids of the tiny vocab)
    prompts = [[5, 6, 7, 8], [9, 10], [11, 12, 13]]
    responses = [[20, 21, 22], [23, 24, 25, 26, 27], [28]]
    return prompts, responses


def _learner(path, **kw):
    base = dict(lr=1e-3, kl_coef=0.0, micro_batch_size=8, grad_clip=1e9, device="cpu")
    base.update(kw)
    return Learner(path, LearnerConfig(**base))


def _hf_logprobs(model, prompt, response):
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        lp = torch.log_softmax(model(ids).logits[0, len(prompt) - 1 : -1].float(), -1)
    return lp.gather(-1, torch.tensor(response)[:, None])[:, 0]


def test_make_batch_pads_right_and_locates_responses():
    prompts, responses = _seqs()
    adv = torch.arange(15, dtype=torch.float32).reshape(3, 5)
    b = make_batch(prompts, responses, adv, pad_id=0)
    assert b.input_ids.shape == (3, 7) and b.response_mask.shape == (3, 5)
    assert b.input_ids[1].tolist() == [9, 10, 23, 24, 25, 26, 27]
    assert b.input_ids[2].tolist() == [11, 12, 13, 28, 0, 0, 0] and b.attention_mask[2].tolist() == [1, 1, 1, 1, 0, 0, 0]
    assert b.resp_pos[0, :3].tolist() == [4, 5, 6]
    assert b.response_mask.sum(1).tolist() == [3, 5, 1]
    assert b.advantages[2].tolist() == [10, 0, 0, 0, 0]  # padded slots zeroed
    with pytest.raises(ValueError, match="columns"):
        make_batch(prompts, responses, torch.zeros(3, 2), pad_id=0)
    with pytest.raises(ValueError, match="prompt 0 is empty"):
        make_batch([[], [1], [2]], responses, adv, pad_id=0)


def test_logprobs_of_padded_microbatches_equal_per_sequence_hf(tiny_policy_dir):
    prompts, responses = _seqs()
    lr = _learner(tiny_policy_dir, micro_batch_size=2)
    b = make_batch(prompts, responses, torch.zeros(3, 5), pad_id=0)
    lp = lr.logprobs(b)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        ref = _hf_logprobs(lr.model, p, r)
        assert torch.allclose(lp[i, : len(r)], ref, atol=1e-5)
        assert (lp[i, len(r):] == 0).all()


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_update_moves_logprob_in_the_direction_of_the_advantage(tiny_policy_dir, sign):
    prompts, responses = _seqs()
    lr = _learner(tiny_policy_dir, lr=1e-3)
    b = make_batch(prompts, responses, torch.full((3, 5), sign), pad_id=0)
    before = lr.logprobs(b).sum()
    m = lr.update(b)
    after = lr.logprobs(b).sum()
    assert (after - before) * sign > 0
    for k in ("actor/pg_loss", "actor/entropy", "actor/pg_clipfrac", "actor/grad_norm", "actor/lr", "actor/ppo_kl"):
        assert k in m
    assert m["actor/lr"] == pytest.approx(1e-3) and m["actor/grad_norm"] > 0
    assert m["actor/pg_loss"] == pytest.approx(-sign, abs=1e-5)  # ratio 1 on-policy: -A token-mean


def test_gradient_is_a_token_mean_whatever_the_micro_batch_size(tiny_policy_dir):
    prompts, responses = _seqs()
    adv = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
    b = make_batch(prompts, responses, adv, pad_id=0)
    ms = [_learner(tiny_policy_dir, micro_batch_size=mbs).update(b) for mbs in (1, 3)]
    for k in ("actor/grad_norm", "actor/pg_loss", "actor/entropy"):
        assert ms[0][k] == pytest.approx(ms[1][k], rel=1e-4), k


def test_kl_to_reference_is_zero_then_grows(tiny_policy_dir):
    prompts, responses = _seqs()
    lr = _learner(tiny_policy_dir, lr=1e-2, kl_coef=0.1)
    b = make_batch(prompts, responses, torch.ones(3, 5), pad_id=0)
    m1 = lr.update(b)
    m2 = lr.update(b)
    assert m1["actor/kl"] == pytest.approx(0.0, abs=1e-7)
    assert m2["actor/kl"] > 1e-6


def test_ppo_epochs_clip_the_ratio(tiny_policy_dir):
    prompts, responses = _seqs()
    lr = _learner(tiny_policy_dir, lr=3e-2, ppo_epochs=3, clip_ratio=0.01)
    m = lr.update(make_batch(prompts, responses, torch.ones(3, 5), pad_id=0))
    assert m["actor/pg_clipfrac"] > 0  # later epochs moved off-policy past the 1% clip


def test_rollout_logprob_diff_detects_stale_engine_logprobs(tiny_policy_dir):
    prompts, responses = _seqs()
    lr = _learner(tiny_policy_dir, lr=0.0)
    b = make_batch(prompts, responses, torch.zeros(3, 5), pad_id=0)
    b.rollout_logprobs = lr.logprobs(b).clone()
    assert lr.update(b)["rollout/logprob_abs_diff_max"] < 1e-5
    b.rollout_logprobs = b.rollout_logprobs + 0.25 * b.response_mask
    m = lr.update(b)
    assert m["rollout/logprob_abs_diff_mean"] == pytest.approx(0.25, abs=1e-4)


def test_checkpoint_round_trip_restores_weights_and_optimizer(tiny_policy_dir, tmp_path):
    from rl_prm.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint

    prompts, responses = _seqs()
    b = make_batch(prompts, responses, torch.ones(3, 5), pad_id=0)
    lr = _learner(tiny_policy_dir)
    for step in (1, 2, 3):
        lr.update(b)
        save_checkpoint(tmp_path / "ck", step, lr, run_id="abc", keep=2)
    assert [s for s, _ in list_checkpoints(tmp_path / "ck")] == [2, 3]  # pruned to the newest 2
    (tmp_path / "ck" / ".tmp-step_000004-1").mkdir()  # a save killed half-way is never picked
    (tmp_path / "ck" / "step_000005").mkdir()  # nor a dir without state.json
    path = latest_checkpoint(tmp_path / "ck")
    assert path.name == "step_000003"
    restored = _learner(path / "model")
    state = load_checkpoint(path, restored)
    assert state["step"] == 3 and state["run_id"] == "abc"
    for (n, p), (_, q) in zip(lr.model.named_parameters(), restored.model.named_parameters()):
        assert torch.equal(p, q), n
    assert restored.optimizer_steps == 3
    # the next update is identical (same Adam moments)
    m1, m2 = lr.update(b), restored.update(b)
    assert m1["actor/grad_norm"] == pytest.approx(m2["actor/grad_norm"], rel=1e-5)
    for (n, p), (_, q) in zip(lr.model.named_parameters(), restored.model.named_parameters()):
        assert torch.allclose(p, q, atol=1e-7), n
