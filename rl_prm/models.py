"""Model specs in a recipe (`model.policy`, `model.judge`, `model.ref_policy`) -> local model dirs.

    resolve_model("world", "judge")        # the miniature world's judge (built offline, cached)
    resolve_model("/path/to/dir", "policy")
    resolve_model("Qwen/Qwen2.5-Math-1.5B", "policy")
"""

from __future__ import annotations

from pathlib import Path


def resolve_model(spec: str, kind: str) -> str:
    """"tiny" -> the tiny model's dir (built/cached offline); "world" -> the world's policy/judge; a
    local dir as given; an HF id if it is already in the local HF cache."""
    if spec == "tiny":
        from rl_prm.tiny import judge_path, policy_path

        return str(policy_path() if kind == "policy" or kind == "ref_policy" else judge_path())
    if spec == "world":
        if kind == "judge":
            from rl_prm.world.judge import judge_path as world_judge
            return str(world_judge())
        from rl_prm.world.policy import policy_path as world_policy
        return str(world_policy())
    if Path(spec).is_dir():
        if not (Path(spec) / "config.json").is_file():
            raise ValueError(f"model.{kind} {spec!r}: directory has no config.json (not an HF model dir)")
        return spec
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(spec, local_files_only=True)
    except Exception:  # noqa: BLE001 - any failure means: not available offline
        raise ValueError(f"model.{kind} {spec!r}: not a local model directory and not in the local HF cache "
                         "(rl-prm never downloads weights at run time; download it first)") from None
