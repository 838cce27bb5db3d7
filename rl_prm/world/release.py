"""Making the shipped world (the layout of rl_prm.world.ship): its build hash, its cards, `rl-prm world build`.

    build_hash()                          # the hash of the world's build configuration (a few seconds)
    build_world(out)                      # build or reuse policy + judge, evaluate the judge, write out/
    write_world(policy_dir, judge_dir, out, judge_eval=..., hash_parts=...)   # the layout from built dirs

The build hash covers what decides the built models: the SFT and DPO configs (PolicySFTConfig,
JudgeConfig, the architectures with them), WORLD_VERSION, TEACHER_VERSION, rl_prm.tiny.build's
BUILD_VERSION and VOCAB_SIZE, PROBLEM_SPEC, the Qwen2 config arguments, the tokenizer (vocabulary,
merges, chat template) and a digest of a fixed sample of the generated training data as token ids
(policy SFT examples; judge units with their teacher critiques), which a change of the generator or
teacher code changes. The training loops' code (optimizer, losses) is not in it. Each shipped card
holds the hash of its build; tests/test_world_ship.py fails when the code's hash differs.

The builders cache by their configs and version constants (rl_prm.world.cache), not by the data
digest: after a change of generator or teacher code that no version constant names, a rebuild must
not reuse the cache (`rl-prm world build --fresh`, or bump WORLD_VERSION / TEACHER_VERSION).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from rl_prm.config import load_recipe
from rl_prm.digest import json_digest
from rl_prm.tiny.build import BUILD_VERSION, VOCAB_SIZE, build_tokenizer, model_config_args
from rl_prm.machine import library_versions
from rl_prm.world.cache import WORLD_VERSION, build_facts, world_cache_dir
from rl_prm.world.judge import JudgeConfig, encode_example, judge_path, sft_judge_path
from rl_prm.world.judge_eval import SAMPLED_TEMPERATURE, eval_summary, evaluate_judge
from rl_prm.world.judge_units import synthetic_units
from rl_prm.world.policy import PolicySFTConfig, policy_path, sft_example_ids
from rl_prm.world.ship import PARTS, SHIPPED_DIR, SUMS, write_sums
from rl_prm.world.tasks import PROBLEM_SPEC, policy_examples
from rl_prm.world.teacher import TEACHER_VERSION

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RECIPE = ROOT / "recipes" / "tiny_cpu.yaml"  # its reward.prm settings are the judge eval's
SAMPLE = 200  # generated training examples (policy) and judge units hashed into the build hash
EVAL_KS = (1, 2, 4, 8)
NOT_COPIED = ("READY", "build.json")  # cache bookkeeping; the card replaces build.json


@lru_cache(maxsize=1)
def _tokenizer():
    """rl_prm.tiny's tokenizer as the builders train with it (trained from scratch: a few seconds)."""
    return build_tokenizer()


def tokenizer_digest(tok) -> str:
    """The tokenizer's vocabulary, merges, special tokens and chat template, hashed."""
    saved = json.loads(tok.backend_tokenizer.to_str())
    merges = [m if isinstance(m, str) else " ".join(m) for m in saved["model"].get("merges", [])]
    added = [(t["id"], t["content"], t["special"]) for t in saved.get("added_tokens", [])]
    return json_digest({"vocab": sorted(tok.get_vocab().items()), "merges": merges, "chat_template": tok.chat_template,
                        "added": added, "eos": tok.eos_token, "pad": tok.pad_token})


def data_digest(tok, policy: PolicySFTConfig, judge: JudgeConfig, n: int = SAMPLE) -> str:
    """A fixed sample of the generated training data as the builders encode it, hashed: ``n`` policy SFT
    examples (prompt + solution ids) and ``n`` judge SFT examples (R-PRM prompt + teacher critique ids,
    critique start and key positions)."""
    examples = policy_examples("train", n, seed=policy.seed, flawed_fraction=policy.flawed_fraction,
                               miracle_fraction=policy.miracle_fraction, miracle_weights=tuple(policy.miracle_weights))
    pol = [sft_example_ids(tok, ex) for ex in examples]
    jud = [encode_example(tok, *u) for u in synthetic_units(n, judge.sft.seed, judge.sft.mix)]
    return json_digest({"policy": pol, "judge": jud})


def build_hash_parts(policy: PolicySFTConfig = PolicySFTConfig(), judge: JudgeConfig = JudgeConfig()) -> dict:
    """{"config", "tokenizer", "data"}: the hashes the build hash is made of (module doc)."""
    tok = _tokenizer()
    config = {"world_version": WORLD_VERSION, "teacher_version": TEACHER_VERSION, "tiny_build_version": BUILD_VERSION,
              "vocab_size": VOCAB_SIZE, "problem_spec": PROBLEM_SPEC, "policy": asdict(policy), "judge": asdict(judge),
              "model_config": model_config_args(tok, policy.arch)}
    return {"config": json_digest(config), "tokenizer": tokenizer_digest(tok), "data": data_digest(tok, policy, judge)}


def combined_hash(parts: dict) -> str:
    return json_digest(parts)


def build_hash(policy: PolicySFTConfig = PolicySFTConfig(), judge: JudgeConfig = JudgeConfig()) -> str:
    """The world's build hash (module doc)."""
    return combined_hash(build_hash_parts(policy, judge))


def stale_message(shipped: dict, now: dict) -> str:
    """Why the shipped world no longer matches the code, and what to do (``shipped``/``now``: hash parts)."""
    changed = [k for k in now if shipped.get(k) != now[k]] or ["unknown"]
    return (f"the shipped world (rl_prm/world/shipped/, build hash {combined_hash(shipped)}) was built from another "
            f"build configuration than this code's (build hash {combined_hash(now)}; changed: {', '.join(changed)}): "
            "run `rl-prm world build` and commit rl_prm/world/shipped/ (after a change of generator or teacher code "
            "that no version constant names, `rl-prm world build --fresh`, so that no cached build is reused)")


def _without_paths(facts):
    """``facts`` with this machine's cache paths ("init": the model a stage started from) cut to their dir names."""
    if isinstance(facts, dict):
        return {k: Path(v).name if k == "init" and isinstance(v, str) else _without_paths(v) for k, v in facts.items()}
    return facts


def check_out(out: Path) -> None:
    """ValueError when ``out`` cannot take the layout: a file, or a non-empty dir that is not a world build."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: a file, not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / SUMS).is_file():
        raise ValueError(f"--out {out}: a non-empty directory that is not a world build (no {SUMS}); pick a new "
                         "or empty directory")


def write_world(policy_dir: Path, judge_dir: Path, out: Path, *, judge_eval: dict, hash_parts: dict,
                stages_s: dict | None = None) -> Path:
    """Write the shipped layout into ``out`` (replacing a previous world build there, atomically by
    rename): each built dir's files but the cache's bookkeeping, its card (build.json: its build facts
    with this machine's paths cut, the build hash and its parts, library versions; the judge's with
    ``judge_eval`` and ``stages_s``, seconds per stage), SHA256SUMS. Returns ``out``."""
    out = Path(out)
    check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    os.chmod(tmp, 0o755)  # mkdtemp's 0o700 would hide an installed package's world from other users
    try:
        for part, src in zip(PARTS, (Path(policy_dir), Path(judge_dir))):
            if not (src / "config.json").is_file() or not (src / "model.safetensors").is_file():
                raise ValueError(f"{src}: not a built model (no config.json or model.safetensors)")
            (tmp / part).mkdir()
            for f in sorted(src.iterdir()):
                if f.is_file() and f.name not in NOT_COPIED:
                    shutil.copyfile(f, tmp / part / f.name)
            facts = _without_paths(build_facts(src))
            versions = facts.pop("versions", None) or library_versions()  # a build made before builds recorded them
            card = {"name": part, "build_hash": combined_hash(hash_parts), "build_hash_parts": hash_parts,
                    "built_from": src.name, "versions": versions, **facts}
            if part == "judge":
                card["processbench"] = judge_eval
                card["stages_s"] = stages_s or {}
            (tmp / part / "build.json").write_text(json.dumps(card, indent=1, default=str) + "\n")
        write_sums(tmp)
        old = out.with_name(f".{out.name}-old-{os.getpid()}")
        if out.exists():
            os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


@contextlib.contextmanager
def fresh_cache() -> Iterator[Path]:
    """$RL_PRM_CACHE pointed at an empty temporary dir (deleted after) while the block runs."""
    saved = os.environ.get("RL_PRM_CACHE")
    d = Path(tempfile.mkdtemp(prefix="rl_prm-world-build-"))
    os.environ["RL_PRM_CACHE"] = str(d)
    try:
        yield d
    finally:
        if saved is None:
            os.environ.pop("RL_PRM_CACHE", None)
        else:
            os.environ["RL_PRM_CACHE"] = saved
        shutil.rmtree(d, ignore_errors=True)


def build_world(out: Path = SHIPPED_DIR, *, fresh: bool = False, recipe: Path = DEFAULT_RECIPE,
                judge_eval_n: int = 100) -> Path:
    """Build (or reuse, from $RL_PRM_CACHE/tiny/world/) the world's policy, SFT judge and DPO judge
    with their default configs, evaluate the judge on mini-ProcessBench (K = 1, 2, 4, 8 critiques
    sampled at SAMPLED_TEMPERATURE, and one greedy critique; ``recipe``'s reward.prm max_critique_tokens
    and dtype), and write the layout into ``out`` (``write_world``). ``fresh``: build in an empty
    temporary cache. ValueError (before anything is built) for an ``out`` or ``recipe`` that cannot work."""
    out = Path(out)
    check_out(out)
    prm = load_recipe(recipe).reward.prm
    t0 = time.perf_counter()
    parts = build_hash_parts()
    with fresh_cache() if fresh else contextlib.nullcontext():
        how = "empty: a build from scratch" if fresh else "cached models are reused; --fresh builds from scratch"
        print(f"[world build] build hash {combined_hash(parts)}; cache {world_cache_dir()} ({how})", flush=True)
        stages: dict[str, float] = {}

        def stage(name: str, fn) -> Path:
            t = time.perf_counter()
            print(f"[world build] {name} ...", flush=True)
            d = fn()
            took = time.perf_counter() - t
            built = (d / "build.json").stat().st_mtime >= time.time() - took - 1
            print(f"[world build] {name}: {d} ({'built' if built else 'cached'}, {took:.0f} s)", flush=True)
            stages[name] = round(build_facts(d).get("build_s", took), 1)
            return d

        pol = stage("policy", policy_path)
        stage("judge_sft", lambda: sft_judge_path(policy=pol))
        jud = stage("judge_dpo", lambda: judge_path(policy=pol))
        t = time.perf_counter()
        r = evaluate_judge(jud, n=judge_eval_n, ks=EVAL_KS, temperature=SAMPLED_TEMPERATURE,
                           max_critique_tokens=prm.max_critique_tokens, dtype=prm.dtype)
        stages["judge_eval"] = round(time.perf_counter() - t, 1)
        write_world(pol, jud, out, judge_eval=eval_summary(r, SAMPLED_TEMPERATURE, prm.dtype), hash_parts=parts,
                    stages_s=stages)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"[world build] wrote {out} ({size / 2**20:.1f} MiB) in {time.perf_counter() - t0:.0f} s: judge F1 "
          + " / ".join(f"{v}" for v in r["f1_per_k"].values()) + f" at K = {', '.join(map(str, EVAL_KS))}, greedy "
          f"{r['greedy']['f1']}" + ("; commit rl_prm/world/shipped/" if out.resolve() == SHIPPED_DIR else ""),
          flush=True)
    return out
