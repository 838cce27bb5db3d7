"""The shipped world (rl_prm.world.ship, rl_prm.world.release): runs load it with no build step, a corrupt
file is named (exit 2), `rl-prm world build` writes the layout, the shipped models are what their cards
say, and the shipped build cannot go stale silently."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from rl_prm.world import ship

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_builds(monkeypatch):
    """Any call of a world builder fails the test; $RL_PRM_WORLD unset (the shipped world)."""
    import rl_prm.world.judge as judge
    import rl_prm.world.policy as policy

    def built(*a, **k):
        raise AssertionError("a world model was built")

    for mod, name in ((policy, "policy_path"), (judge, "sft_judge_path"), (judge, "judge_path")):
        monkeypatch.setattr(mod, name, built)
    monkeypatch.delenv(ship.ENV, raising=False)


def _flip_byte(path: Path, at: int = 1000) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def test_the_shipped_models_load_with_no_build(no_builds):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rl_prm.backends.verl_common import model_path
    from rl_prm.models import resolve_model

    for kind, part in (("policy", "policy"), ("ref_policy", "policy"), ("judge", "judge")):
        assert resolve_model("world", kind) == str(ship.SHIPPED_DIR / part)
    assert model_path("world", "judge") == str(ship.SHIPPED_DIR / "judge")  # the verl backends load the same
    for part in ship.PARTS:
        d = ship.SHIPPED_DIR / part
        tok = AutoTokenizer.from_pretrained(d)
        model = AutoModelForCausalLM.from_pretrained(d)
        assert model.config.vocab_size == len(tok) and model.dtype == torch.float32  # float32, as built
        assert not [f for f in d.iterdir() if "optim" in f.name]  # weights only
    listed = ship.read_sums(ship.SHIPPED_DIR)
    assert sorted(listed) == sorted(f.relative_to(ship.SHIPPED_DIR).as_posix()
                                    for part in ship.PARTS for f in (ship.SHIPPED_DIR / part).iterdir())


def test_a_corrupt_shipped_file_is_named_and_train_exits_2(tmp_path, monkeypatch, capsys, no_builds):
    from rl_prm.cli import main

    world = tmp_path / "world"
    shutil.copytree(ship.SHIPPED_DIR, world)
    _flip_byte(world / "judge" / "model.safetensors")
    monkeypatch.setenv(ship.ENV, str(world))
    monkeypatch.chdir(tmp_path)  # the run dir goes under tmp_path/runs
    assert main(["train", str(ROOT / "recipes" / "tiny_cpu.yaml"), "run.name=corrupt"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("rl-prm train:")]
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert f"{world / 'judge' / 'model.safetensors'} is corrupt" in err[0] and "model.judge 'world'" in err[0]
    assert "rl-prm world build --out" in err[0]


def test_a_missing_file_or_a_dir_that_is_no_world_is_named(tmp_path, monkeypatch):
    from rl_prm.models import ModelUnavailable, resolve_model

    world = tmp_path / "world"
    shutil.copytree(ship.SHIPPED_DIR, world)
    (world / "policy" / "tokenizer.json").unlink()
    monkeypatch.setenv(ship.ENV, str(world))
    with pytest.raises(ModelUnavailable, match=f"{world / 'policy' / 'tokenizer.json'} is missing"):
        resolve_model("world", "policy")
    assert resolve_model("world", "judge") == str(world / "judge")  # the judge's files are all there
    monkeypatch.setenv(ship.ENV, str(tmp_path))
    with pytest.raises(ModelUnavailable, match=r"RL_PRM_WORLD=.* is not a world build \(.*SHA256SUMS not found\)"):
        resolve_model("world", "judge")


def _fake_build(d: Path, name: str, facts: dict) -> Path:
    """A cache entry shaped like a builder's (rl_prm.world.cache), with tiny stand-in files."""
    from safetensors.torch import save_file
    import torch

    d.mkdir(parents=True)
    save_file({"w": torch.arange(6, dtype=torch.float32)}, str(d / "model.safetensors"))
    for f in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        (d / f).write_text(json.dumps({"file": f, "model": name}))
    (d / "chat_template.jinja").write_text("{{ messages }}")
    (d / "build.json").write_text(json.dumps({"name": name, "build_s": 12.5, **facts}))
    (d / "READY").write_text("ok\n")
    return d


FAKE_EVAL = {"f1_per_k": {1: 80.0, 2: 85.0, 4: 88.0, 8: 88.5}, "timing_s": {"engine_start": 1.0},
             "step_accuracy": {1: {"correct_steps_yes": 95.0}}, "n_items": 100, "status_counts": {"ok": 300},
             "greedy": {"f1": 87.0, "splits": {}, "step_accuracy": {}},
             "per_k": {str(k): {"splits": {"world_test": {}}} for k in (1, 2, 4, 8)}}


def test_world_build_writes_the_shipped_layout(tmp_path, monkeypatch, capsys):
    """`rl-prm world build --out DIR` through the real writer, on fake builds (the builders and the judge
    eval stubbed): the layout, the cards (hash, stages, eval, versions, no machine paths), SHA256SUMS; a
    second build replaces the first; the result loads through RL_PRM_WORLD=DIR."""
    import rl_prm.world.release as release
    from rl_prm.cli import main
    from rl_prm.models import resolve_model

    cache = tmp_path / "cache"
    pol = _fake_build(cache / "policy-1", "policy", {"greedy_acc": 1.0, "config": {"steps": 3}})
    sft = _fake_build(cache / "judge_sft-1", "judge_sft", {"init": str(pol)})
    jud = _fake_build(cache / "judge-1", "judge", {"init": str(sft), "sft": {"init": str(pol), "build_s": 30.0}})
    calls = []
    monkeypatch.setattr(release, "policy_path", lambda: calls.append("policy") or pol)
    monkeypatch.setattr(release, "sft_judge_path", lambda policy: calls.append(("sft", policy)) or sft)
    monkeypatch.setattr(release, "judge_path", lambda policy: calls.append(("dpo", policy)) or jud)
    monkeypatch.setattr(release, "evaluate_judge", lambda d, **kw: calls.append(("eval", d, kw)) or FAKE_EVAL)
    out = tmp_path / "out"
    assert main(["world", "build", "--out", str(out)]) == 0
    assert calls[:3] == ["policy", ("sft", pol), ("dpo", pol)]
    eval_kw = calls[3][2]
    assert calls[3][1] == jud and eval_kw["n"] == 100 and list(eval_kw["ks"]) == [1, 2, 4, 8]
    from rl_prm.config import load_recipe
    from rl_prm.world.judge_eval import SAMPLED_TEMPERATURE

    prm = load_recipe(ROOT / "recipes" / "tiny_cpu.yaml").reward.prm
    assert (eval_kw["temperature"], eval_kw["max_critique_tokens"], eval_kw["dtype"]) == (
        SAMPLED_TEMPERATURE, prm.max_critique_tokens, prm.dtype)

    assert sorted(p.name for p in out.iterdir()) == ["SHA256SUMS", "judge", "policy"]
    assert out.stat().st_mode & 0o777 == 0o755  # readable by every user of an installed package
    for part, src in (("policy", pol), ("judge", jud)):
        assert sorted(p.name for p in (out / part).iterdir()) == sorted(p.name for p in src.iterdir()
                                                                        if p.name != "READY")
        assert (out / part / "model.safetensors").read_bytes() == (src / "model.safetensors").read_bytes()
    pc, jc = ship.card("policy", out), ship.card("judge", out)
    parts = release.build_hash_parts()
    assert pc["build_hash"] == jc["build_hash"] == release.combined_hash(parts) and jc["build_hash_parts"] == parts
    assert pc["greedy_acc"] == 1.0 and pc["built_from"] == "policy-1" and set(pc["versions"]) >= {
        "python", "torch", "transformers", "vllm"}
    assert jc["init"] == "judge_sft-1" and jc["sft"]["init"] == "policy-1"  # no paths of the building machine
    assert jc["processbench"]["f1_per_k"] == {"1": 80.0, "2": 85.0, "4": 88.0, "8": 88.5}
    assert jc["processbench"]["temperature"] == SAMPLED_TEMPERATURE and jc["processbench"]["greedy"]["f1"] == 87.0
    assert set(jc["stages_s"]) == {"policy", "judge_sft", "judge_dpo", "judge_eval"}
    assert jc["stages_s"]["policy"] == 12.5  # the build's own seconds (its build.json), not this command's
    assert ship.read_sums(out) == {f"{part}/{f.name}": ship.sha256_file(f) for part in ship.PARTS
                                   for f in (out / part).iterdir()}
    assert "[world build] wrote" in capsys.readouterr().out

    (out / "judge" / "extra.txt").write_text("left from before")
    assert main(["world", "build", "--out", str(out)]) == 0  # a world build there is replaced whole
    assert not (out / "judge" / "extra.txt").exists() and not list(tmp_path.glob(".out-*"))
    monkeypatch.setenv(ship.ENV, str(out))
    assert resolve_model("world", "judge") == str(out / "judge")


def test_the_build_hash_follows_the_configs_the_generator_and_the_teacher(monkeypatch):
    """A changed setting, generator or teacher changes the hash (so the staleness test below can fail)."""
    import rl_prm.world.judge as judge
    import rl_prm.world.tasks as tasks
    from rl_prm.world.judge import JudgeConfig, JudgeSFTConfig
    from rl_prm.world.policy import PolicySFTConfig
    from rl_prm.world.release import build_hash_parts, stale_message

    t0 = time.perf_counter()
    base = build_hash_parts()
    assert build_hash_parts() == base  # deterministic
    steps = build_hash_parts(PolicySFTConfig(steps=999))
    assert steps["config"] != base["config"] and {k: steps[k] for k in ("tokenizer", "data")} == {
        k: base[k] for k in ("tokenizer", "data")}
    assert build_hash_parts(judge=JudgeConfig(sft=JudgeSFTConfig(extra_layers=3)))["config"] != base["config"]
    teach = judge.critique_parts
    monkeypatch.setattr(judge, "critique_parts", lambda *a, **k: [("Note. ", False), *teach(*a, **k)])
    assert build_hash_parts()["data"] != base["data"]  # teacher code
    monkeypatch.undo()
    spec = dict(tasks.PROBLEM_SPEC, max_add=7)
    monkeypatch.setattr(tasks, "PROBLEM_SPEC", spec)
    assert build_hash_parts()["data"] != base["data"]  # the generator
    assert time.perf_counter() - t0 < 60
    msg = stale_message(base, steps)
    assert "changed: config" in msg and "run `rl-prm world build`" in msg


def test_the_shipped_world_is_built_from_this_code():
    """The shipped cards' build hash is the one this code's build configuration hashes to."""
    from rl_prm.world.release import build_hash_parts, stale_message

    now = build_hash_parts()
    for part in ship.PARTS:
        shipped = ship.card(part).get("build_hash_parts", {})
        assert shipped == now, stale_message(shipped, now)


def test_the_shipped_policy_is_what_its_card_says(no_builds):
    """The shipped policy, evaluated again as its build did (greedy solutions of the held-out problems),
    gives the card's greedy numbers and its example solution."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reward_fns.math_verify_reward import compute_score
    from rl_prm.world.policy import generate
    from rl_prm.tasks import TASKS, process_metrics
    from rl_prm.world.tasks import problems

    card = ship.card("policy")
    d = ship.world_model("policy")
    torch.set_num_threads(1)
    probs = problems("test", card["n"], seed=0)
    qs = [p.question for p in probs]
    model, tok = AutoModelForCausalLM.from_pretrained(d).eval(), AutoTokenizer.from_pretrained(d)
    texts = generate(model, tok, qs, do_sample=False)
    right = [compute_score("world", t, str(p.answer)) for t, p in zip(texts, probs)]
    got = process_metrics(TASKS.get("world"), qs, texts, right, prefix="greedy_")
    assert texts[0] == card["example"]
    assert sum(right) / len(right) == pytest.approx(card["greedy_acc"], abs=0.02)
    assert got["greedy_trace_accuracy"] == pytest.approx(card["greedy_trace_accuracy"], abs=0.02)
    assert got["greedy_miracle_rate"] == pytest.approx(card["greedy_miracle_rate"], abs=0.02)


def test_the_shipped_judge_tells_right_steps_from_wrong_ones(no_builds):
    """One greedy critique per step (HF generation, the R-PRM prompt) of the first mini-ProcessBench items:
    the verdicts are right about as often as the card's greedy evaluation says (a random model writes no
    verdict at all)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rl_prm.score.prompt import judge_prompt
    from rl_prm.world.dpo import verdict_of
    from rl_prm.world.tasks import eval_items, processbench

    card = ship.card("judge")["processbench"]["greedy"]["step_accuracy"]
    d = ship.world_model("judge")
    tok, model = AutoTokenizer.from_pretrained(d), AutoModelForCausalLM.from_pretrained(d).eval()
    units = [(it["question"], it["steps"], k, it["label"] == -1 or k < it["label"])
             for it in eval_items(processbench("test", 12, seed=0)) for k in range(len(it["steps"]))]
    prompts = [tok.encode(judge_prompt(tok, q, steps, k), add_special_tokens=False) for q, steps, k, _ in units]
    torch.set_num_threads(1)
    texts = []
    for i in range(0, len(prompts), 16):
        batch = prompts[i: i + 16]
        T = max(map(len, batch))
        x = torch.tensor([[tok.pad_token_id] * (T - len(p)) + p for p in batch])
        m = torch.tensor([[0] * (T - len(p)) + [1] * len(p) for p in batch])
        with torch.no_grad():
            y = model.generate(input_ids=x, attention_mask=m, max_new_tokens=224, do_sample=False,
                               eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        texts += tok.batch_decode(y[:, T:], skip_special_tokens=True)
    right = [verdict_of(t) == ok for (_, _, _, ok), t in zip(units, texts)]
    yes = [r for r, u in zip(right, units) if u[3]]
    no = [r for r, u in zip(right, units) if not u[3]]
    assert yes and no
    assert 100 * sum(yes) / len(yes) >= card["correct_steps_yes"] - 20, (sum(yes), len(yes), card)
    assert 100 * sum(no) / len(no) >= card["error_steps_no"] - 25, (sum(no), len(no), card)


def test_heartbeat_prints_while_a_silent_phase_runs(capfd):
    from rl_prm.progress import heartbeat

    with heartbeat("[phase] waiting", every=0.05):
        time.sleep(0.3)
    lines = capfd.readouterr().out.splitlines()
    assert lines[0] == "[phase] waiting ..." and lines[-1].startswith("[phase] waiting: done in ")
    assert len([ln for ln in lines if ln.endswith(" s") and "done" not in ln]) >= 3
    with pytest.raises(RuntimeError):
        with heartbeat("[phase] failing", every=10):
            raise RuntimeError("x")
    assert "done" not in capfd.readouterr().out


def test_the_world_command_reuses_the_shipped_judges_evaluation_only_when_it_matches(tmp_path, monkeypatch):
    """`rl-prm world` on the shipped world reports the card's mini-ProcessBench evaluation (measured with the
    same settings when it was built) instead of spending minutes measuring it again, unless asked or unless a
    setting differs."""
    import argparse

    from rl_prm import argtypes
    from rl_prm.config import load_recipe
    from rl_prm.eval.processbench import plot_f1_vs_k
    from rl_prm.world.__main__ import ROOT, as_eval_result, card_eval

    monkeypatch.delenv("RL_PRM_WORLD", raising=False)
    recipe = ROOT / "recipes" / "tiny_cpu.yaml"
    args = argparse.Namespace(judge_eval_n=100, ks=argtypes.positive_ints("1,2,4,8"))
    pb = card_eval(args, load_recipe(recipe))
    assert pb is not None and pb["f1_per_k"]["8"] > 60 and pb["greedy"]["f1"] > 60
    plot_f1_vs_k(as_eval_result(pb), tmp_path / "f1.png")
    assert (tmp_path / "f1.png").stat().st_size > 1000
    assert card_eval(args, load_recipe(recipe, ["reward.prm.max_critique_tokens=100"])) is None
    assert card_eval(args, load_recipe(recipe, ["reward.prm.dtype=float32"])) is None
    assert card_eval(argparse.Namespace(judge_eval_n=50, ks=args.ks), load_recipe(recipe)) is None
    assert card_eval(argparse.Namespace(judge_eval_n=100, ks=[1, 2]), load_recipe(recipe)) is None
