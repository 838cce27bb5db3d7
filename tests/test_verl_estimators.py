"""Our estimators inside verl: plugin discovery and verl's own compute_advantage on a DataProto."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("verl")

_PROBE = r"""
import json, sys
before = "rl_prm.verl_plugin" in sys.modules
import verl
from verl.trainer.ppo import core_algos
names = {}
for n in ("rprm_rloo", "rprm_grpo", "outcome_grpo"):
    try:
        names[n] = core_algos.get_adv_estimator_fn(n).__module__
    except ValueError:
        names[n] = None
print(json.dumps({"before": before, "after": "rl_prm.verl_plugin" in sys.modules, "names": names}))
"""


def _probe_env(**env):
    e = {k: v for k, v in os.environ.items() if not k.startswith("VERL_USE_EXTERNAL")}
    e.update(env)
    return subprocess.Popen([sys.executable, "-c", _PROBE], env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_plugin_discovery_paths():
    """`import verl` registers our estimators via the entry point, and via VERL_USE_EXTERNAL_MODULES.

    The probe starts without rl_prm imported and with VERL_USE_EXTERNAL_MODULES unset, so in the
    entry-point case only verl's `verl.plugins` discovery can have imported rl_prm.verl_plugin."""
    procs = {
        "entry_point": _probe_env(),
        "external_modules": _probe_env(VERL_USE_EXTERNAL_PLUGINS="none", VERL_USE_EXTERNAL_MODULES="rl_prm.verl_plugin"),
    }
    res = {}
    for k, p in procs.items():
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err[-2000:]
        res[k] = json.loads(out.strip().splitlines()[-1])
    for k in ("entry_point", "external_modules"):
        assert res[k]["before"] is False and res[k]["after"] is True, res[k]
        assert res[k]["names"] == {n: "rl_prm.verl_ext.estimators" for n in ("rprm_rloo", "rprm_grpo", "outcome_grpo")}
    from importlib.metadata import entry_points

    eps = {ep.name: ep.value for ep in entry_points(group="verl.plugins")}
    assert eps.get("rl_prm") == "rl_prm.verl_plugin"


def _batch():
    """2 prompts x 2 responses, T = 4; hand-checkable numbers (see test bodies)."""
    from rl_prm.credit import encode_rm_scores

    sc = torch.tensor([[1.0, 0.5], [0.0, 0.0], [0.75, 0.0], [0.25, 0.0]])
    m = torch.tensor([[True, True], [True, False], [True, False], [True, False]])
    e = torch.tensor([[1, 3], [1, 0], [2, 0], [1, 0]])
    rm = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]])
    outcome = torch.tensor([1.0, 0.0, 1.0, 1.0])
    rm_scores = encode_rm_scores(sc, m, e, rm, outcome=outcome)
    uid = np.array(["q0", "q0", "q1", "q1"], dtype=object)
    return rm_scores, rm, uid


def _options(**kw):
    """EstimatorOptions as the verl backend writes them (+algorithm.rprm.*)."""
    credit = {k: kw.pop(k) for k in ("mode", "temperature", "clip_eta", "delta", "score_map") if k in kw}
    from rl_prm.credit import CreditConfig, EstimatorOptions

    base = dict(whiten=True, zero_separator_adv=True, verifiable=True, outcome_coef=1.0)
    return EstimatorOptions(CreditConfig(**credit), **{**base, **kw}).to_dict()


def _run_verl(estimator, rprm, **cfg):
    """Through verl's own compute_advantage (what verl's trainer calls) on a DataProto."""
    from omegaconf import OmegaConf
    from verl import DataProto
    from verl.trainer.ppo.ray_trainer import compute_advantage

    import rl_prm.verl_plugin  # noqa: F401  (already imported by `import verl`; explicit for clarity)

    rm_scores, rm, uid = _batch()
    data = DataProto.from_dict(
        tensors={"rm_scores": rm_scores, "token_level_scores": rm_scores, "token_level_rewards": rm_scores,
                 "response_mask": rm},
        non_tensors={"uid": uid},
    )
    config = OmegaConf.create({"adv_estimator": estimator, "norm_adv_by_std_in_grpo": True, "rprm": rprm, **cfg})
    out = compute_advantage(data, adv_estimator=estimator, config=config)
    return out.batch["advantages"], out.batch["returns"]


def test_get_adv_estimator_fn_returns_ours():
    from verl.trainer.ppo.core_algos import get_adv_estimator_fn

    from rl_prm.verl_ext import estimators

    for name in ("rprm_rloo", "rprm_grpo", "outcome_grpo"):
        assert get_adv_estimator_fn(name) is estimators.ADAPTERS[name]


def test_rprm_rloo_through_verl_hand_computed():
    adv, ret = _run_verl("rprm_rloo", _options(mode="sum", whiten=False, outcome_coef=1.0))
    # r = 2p - 1. Prompt q0 (same as the pure hand example):
    #   resp 0: steps end 1 (r=1), 3 (r=0); R=1, L=4. resp 1: step end 1 (r=-1); R=-1, L=2.
    #   resp 0: baseline per token -1/2 x 2 tokens per step = -1 -> 2 at t1, 1 at t3; VR 1-0=+1 at t3
    #           returns [4, 4, 2, 2]
    #   resp 1: baseline 1/4 x 2 = 0.5 -> -1.5 at t1; VR 0-1=-1 at t1 -> [-2.5, -2.5, 0, 0]
    # Prompt q1: resp 2: step end 2 (r=0.5); R=0.5, L=3. resp 3: step end 1 (r=-0.5); R=-0.5, L=4.
    #   resp 2: baseline -0.5/4 per token x 3 tokens = -0.375 -> 0.875 at t2; VR 1-1=0
    #           returns [0.875, 0.875, 0.875, 0]
    #   resp 3: baseline 0.5/3 x 2 = 1/3 -> -0.5-1/3 = -5/6 at t1; VR 0 at t3 -> [-5/6, -5/6, 0, 0]
    want = torch.tensor(
        [[4.0, 4.0, 2.0, 2.0], [-2.5, -2.5, 0.0, 0.0], [0.875, 0.875, 0.875, 0.0], [-5 / 6, -5 / 6, 0.0, 0.0]]
    )
    assert torch.allclose(adv, want, atol=1e-5), adv
    assert torch.allclose(ret, want, atol=1e-5)


def test_rprm_rloo_whitened_and_min_form_through_verl():
    from rl_prm.credit import assign_credit, decode_rm_scores, rloo_process_advantage

    adv, _ = _run_verl("rprm_rloo", _options(mode="min_form", temperature=0.1))
    rm_scores, rm, uid = _batch()
    d = decode_rm_scores(rm_scores, rm)
    x = assign_credit(d.step_scores, d.step_mask, d.step_ends, rm, mode="min_form", temperature=0.1)
    want, _ = rloo_process_advantage(x, rm, uid, d.step_ends, d.step_mask, outcome=d.outcome, whiten=True)
    assert torch.allclose(adv, want, atol=1e-6)
    valid = rm.bool()
    assert adv[valid].mean().abs() < 1e-5 and (adv[valid].std() - 1).abs() < 1e-4


def test_rprm_grpo_through_verl_hand_computed():
    adv, ret = _run_verl("rprm_grpo", _options(mode="sum", whiten=False, outcome_coef=0.0))
    # q0 step rewards {1, 0, -1}: mean 0, std 1 -> resp 0: t0..1: 1 + 0 = 1, t2..3: 0; resp 1: -1, -1
    # q1 step rewards {0.5, -0.5}: mean 0, std sqrt(0.5) -> z = +-0.7071
    eps = 1e-6
    z = 0.5 / (0.5**0.5 + eps)
    want = torch.tensor(
        [[1 / (1 + eps), 1 / (1 + eps), 0.0, 0.0], [-1 / (1 + eps), -1 / (1 + eps), 0.0, 0.0], [z, z, z, 0.0], [-z, -z, 0.0, 0.0]]
    )
    assert torch.allclose(adv, want, atol=1e-5), adv
    assert torch.equal(adv, ret)


def test_missing_options_are_named():
    with pytest.raises(ValueError, match="algorithm.rprm"):
        _run_verl("rprm_rloo", None)
    bad = _options()
    bad.pop("outcome_coef")
    with pytest.raises(ValueError, match="missing \\['outcome_coef'\\]"):
        _run_verl("rprm_rloo", bad)


def test_pure_gae_matches_verl_gae():
    from verl.trainer.ppo.core_algos import compute_gae_advantage_return

    from rl_prm.credit import compute_gae

    g = torch.Generator().manual_seed(0)
    r = torch.randn(6, 9, generator=g)
    v = torch.randn(6, 9, generator=g)
    rm = (torch.rand(6, 9, generator=g) > 0.2).long()
    a1, r1 = compute_gae(r, v, rm, gamma=0.95, lam=0.9)
    a2, r2 = compute_gae_advantage_return(r, v, rm, gamma=0.95, lam=0.9)
    assert torch.allclose(a1, a2, atol=1e-5) and torch.allclose(r1, r2, atol=1e-5)


def test_a_new_estimator_is_one_registration_on_both_backends():
    """ESTIMATORS is the only list: an estimator registered there is accepted by recipes of both backends, gets
    its +algorithm.rprm.* options on verl, and verl's registry runs the same function the local loop calls."""
    from verl.trainer.ppo import core_algos

    from rl_prm.backends.verl_backend import verl_overrides
    from rl_prm.config import load_recipe
    from rl_prm.credit import ESTIMATORS, EstimatorOptions, StepBatch
    from rl_prm.verl_ext import estimators as verl_estimators

    name = "throwaway_negated_rloo"

    @ESTIMATORS.register(name)
    def negated(batch, opts):  # any function of the batch will do: RLOO, negated
        adv, ret = ESTIMATORS.get("rprm_rloo")(batch, opts)
        return -adv, -ret

    try:
        local = load_recipe("recipes/tiny_cpu.yaml", [f"algorithm.estimator={name}"])
        verl = load_recipe("recipes/grpo_rprm_qwen2.5_math_7b.yaml", [f"algorithm.estimator={name}"])
        ov = verl_overrides(verl)
        assert f"algorithm.adv_estimator={name}" in ov
        assert any(o.startswith("+algorithm.rprm.credit.mode=") for o in ov)  # its options reach verl
        verl_estimators.register_all()
        fn = core_algos.get_adv_estimator_fn(name)
        rm_scores, mask, uid = _batch()
        opts = EstimatorOptions.from_recipe(local)
        adv_verl, _ = fn(rm_scores, mask.bool(), index=uid, config={"rprm": opts.to_dict()})
        batch = StepBatch.from_rm_scores(rm_scores, mask.bool(), uid, has_outcome=opts.verifiable)
        adv_local, _ = ESTIMATORS.get(name)(batch, opts)
        want, _ = ESTIMATORS.get("rprm_rloo")(batch, opts)
        assert torch.allclose(adv_verl, adv_local) and torch.allclose(adv_local, -want)
    finally:
        ESTIMATORS._items.pop(name, None)
        verl_estimators.ADAPTERS.pop(name, None)
        core_algos.ADV_ESTIMATOR_REGISTRY.pop(name, None)
