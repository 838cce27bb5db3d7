"""Model specs in a recipe (`model.policy`, `model.judge`, `model.ref_policy`) -> local model dirs.

    resolve_model("world", "judge")                    # the miniature world's judge (shipped, sha256-checked)
    resolve_model("/path/to/dir", "policy")            # a local HF model dir, as given
    resolve_model("Qwen/Qwen2.5-Math-1.5B", "policy")  # a hub id: its snapshot dir in the HF cache
    check_model("Qwen/Qwen2.5-Math-7B", "policy")      # no download: what will happen (ModelUnavailable if it cannot)
    plan_hub_model("Qwen/Qwen2.5-Math-7B")             # dry run: files and bytes a fetch would download

Hub ids resolve as transformers, vLLM and verl resolve them (huggingface_hub.snapshot_download): the
first use downloads the repo into the standard HF cache ($HF_HUB_CACHE, default $HF_HOME/hub) with a
progress bar; later uses ask the Hub for its newest revision and read the cached files (an unreachable
Hub falls back to the cached copy, with a note). HF_HUB_OFFLINE=1 reads the cache only; HF_ENDPOINT
and HF_TOKEN are honoured. Fetched: what our stack loads. Skipped: other frameworks' files (flax, tf,
onnx, gguf, ...) and, when the repo has safetensors, pickle weights (*.bin, *.pt, *.pth).

huggingface_hub and tqdm are imported inside the functions that use them (about 0.1-0.3 s each): this
module is imported to look up a built-in name (the world's plugin registers its models here) and by
`rl-prm models` before it knows it will need the Hub.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional

from rl_prm.registry import Registry
from rl_prm.score.oracle import ORACLE
from rl_prm.tiny import judge_path, policy_path

# name -> (kind -> model dir). Shipped in the package or built offline on first use (never downloaded).
# Plugins add theirs (rl_prm.registry: the world's "world").
BUILT: Registry[Callable[[str], Path]] = Registry("built-in model", plugins=True)
OTHER_FRAMEWORKS = ("*.msgpack", "*.h5", "*.ot", "*.onnx", "*.onnx_data", "*.tflite", "*.gguf", "*.mlmodel",
                    "onnx/*", "openvino/*", "coreml/*")
PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth")
_TRUE = ("1", "ON", "YES", "TRUE")


class ModelUnavailable(ValueError):
    """A recipe's model cannot be had (bad dir, not cached offline, no such repo, failed download): the
    message is one line naming the model key and spec."""


@BUILT.register("tiny")
def _tiny(kind: str) -> Path:
    """rl_prm.tiny: random plumbing models (the judge is overfit on synthetic critiques)."""
    return judge_path() if kind == "judge" else policy_path()


def _not_the_oracle(spec: str, kind: str) -> None:
    """`model.judge: oracle` is a scorer (rl_prm.score.oracle: the train task's step checker), not a model."""
    if spec == ORACLE:
        raise ModelUnavailable(f"model.{kind} 'oracle' is not a model: the oracle judge scores steps with the train "
                               "task's step checker (model.judge only, local backend)")


def is_hub_id(spec: str) -> bool:
    """A Hub repo id ("org/name" or a legacy "name"), not a built-in name or a path on this machine."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id  # ~0.1 s (module doc)

    if spec in BUILT or spec.startswith(("/", "./", "../", "~")) or Path(spec).exists():
        return False
    try:
        validate_repo_id(spec)
    except HFValidationError:
        return False
    return True


def hub_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is on: huggingface_hub's setting at import, or the env now."""
    from huggingface_hub import constants  # (module doc)

    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return bool(constants.is_offline_mode()) or env.upper() in _TRUE


def hub_cache() -> str:
    from huggingface_hub import constants  # (module doc)

    return constants.HF_HUB_CACHE


def hub_endpoint() -> str:
    from huggingface_hub import constants  # (module doc)

    return constants.ENDPOINT


def ignore_patterns(files: list[str]) -> list[str]:
    """Files of a repo we do not fetch: other frameworks' weights; pickle weights next to safetensors."""
    pats = list(OTHER_FRAMEWORKS)
    if any(f.endswith(".safetensors") for f in files):
        pats += PICKLE_WEIGHTS
    return pats


def dir_size(path: str | os.PathLike) -> int:
    """Bytes of the files under `path` (symlinks into the HF blob store followed)."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def human_size(n: int) -> str:
    from tqdm import tqdm  # ~0.1 s (module doc)

    return tqdm.format_sizeof(n, suffix="B", divisor=1024)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def cached_snapshot(repo_id: str) -> Optional[str]:
    """The complete cached snapshot dir of `repo_id` (its main revision), or None; never uses the network."""
    from huggingface_hub import get_cached_repo_tree, snapshot_download  # ~0.3 s (module doc)

    try:
        pats = ignore_patterns([f.path for f in get_cached_repo_tree(repo_id)])
    except Exception:  # noqa: BLE001 - no cached tree listing: snapshot_download checks what it can
        pats = None
    try:
        return snapshot_download(repo_id, local_files_only=True, ignore_patterns=pats)
    except Exception:  # noqa: BLE001 - not cached, or cached partly (LocalEntryNotFoundError / IncompleteSnapshotError)
        return None


def _hub_files(repo_id: str, kind: str, files_metadata: bool = False) -> Any:
    """The Hub's model info of `repo_id` (siblings = its files); ModelUnavailable for a missing/gated repo.
    Other failures (Hub unreachable, 5xx) propagate."""
    # ~0.3 s (module doc)
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        return HfApi().model_info(repo_id, files_metadata=files_metadata)
    except GatedRepoError:
        raise ModelUnavailable(f"model.{kind} {repo_id!r}: a gated repo on the Hub ({hub_endpoint()}): accept its "
                               "terms on the model page and log in (`hf auth login`, or set HF_TOKEN)") from None
    except (RepositoryNotFoundError, RevisionNotFoundError):
        raise ModelUnavailable(f"model.{kind} {repo_id!r}: no such model on the Hub ({hub_endpoint()}); check the "
                               "id (a private repo needs `hf auth login` or HF_TOKEN)") from None


def _not_cached(repo_id: str, kind: str, why: str) -> ModelUnavailable:
    return ModelUnavailable(f"model.{kind} {repo_id!r}: not in the local HF cache ({hub_cache()}) and {why}; fetch it "
                      "with network access first (`rl-prm models pull RECIPE`)")


def fetch_hub_model(repo_id: str, kind: str) -> str:
    """The snapshot dir of hub repo `repo_id`, downloading it (progress bar) when the cache lacks it or the
    Hub has a newer revision. ModelUnavailable (one line naming the id) when it cannot be had."""
    from huggingface_hub import snapshot_download  # ~0.3 s (module doc)

    cached = cached_snapshot(repo_id)
    if hub_offline():
        if cached is None:
            raise _not_cached(repo_id, kind, "HF_HUB_OFFLINE=1 stops downloads")
        return cached
    try:
        info = _hub_files(repo_id, kind)
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 - Hub unreachable / down: the cached copy, as huggingface_hub does
        if cached is None:
            why = f"the Hub ({hub_endpoint()}) cannot be reached ({_first_line(e)})"
            raise _not_cached(repo_id, kind, why) from None
        print(f"model.{kind} {repo_id}: the Hub ({hub_endpoint()}) cannot be reached ({_first_line(e)}); "
              f"using the cached copy {cached}", file=sys.stderr, flush=True)
        return cached
    files = [s.rfilename for s in info.siblings or []]
    if "config.json" not in files:
        raise ModelUnavailable(f"model.{kind} {repo_id!r}: the Hub repo has no config.json (not a transformers model)")
    bar: dict[str, Any] = {}
    if cached is None:
        print(f"model.{kind} {repo_id}: downloading from {hub_endpoint()} into {hub_cache()} (first use; "
              "HF_HUB_OFFLINE=1 keeps a run offline)", file=sys.stderr, flush=True)
        from tqdm.auto import tqdm  # (module doc)

        bar["tqdm_class"] = tqdm  # a plain tqdm: the first download shows its bar even with HF bars off (quiet console)
    try:
        return snapshot_download(repo_id, ignore_patterns=ignore_patterns(files), **bar)
    except Exception as e:  # noqa: BLE001 - interrupted transfer, disk full, ...: say which model and how far
        raise ModelUnavailable(f"model.{kind} {repo_id!r}: download from {hub_endpoint()} into {hub_cache()} "
                               f"failed ({_first_line(e)}); run it again to resume") from None


def resolve_model(spec: str, kind: str) -> str:
    """A local model dir for a recipe model spec: a BUILT name (shipped, or built/cached offline), a local HF model dir
    as given, or a hub id (fetch_hub_model). `kind`: policy | judge | ref_policy."""
    _not_the_oracle(spec, kind)
    if spec in BUILT:
        return str(BUILT.get(spec)(kind))
    if is_hub_id(spec):
        return fetch_hub_model(spec, kind)
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise ModelUnavailable(f"model.{kind} {spec!r}: no such model directory (and not a Hub id)")
    if not (path / "config.json").is_file():
        raise ModelUnavailable(f"model.{kind} {spec!r}: directory has no config.json (not an HF model dir)")
    return str(path)


def check_model(spec: str, kind: str) -> str:
    """For a run whose workers load `spec` themselves (verl on a cluster: each node resolves hub ids into its
    own HF cache): a one-line note of what will happen, without downloading. ModelUnavailable when it cannot
    work: a bad local dir; offline and not cached; no such repo on the Hub."""
    _not_the_oracle(spec, kind)
    if spec in BUILT:
        return f"model.{kind} {spec}: built-in ({resolve_model(spec, kind)})"
    if not is_hub_id(spec):
        return f"model.{kind} {resolve_model(spec, kind)}: a local model dir (every node needs it at this path)"
    cached = cached_snapshot(spec)
    if hub_offline():
        if cached is None:
            raise _not_cached(spec, kind, "HF_HUB_OFFLINE=1 stops downloads")
        return f"model.{kind} {spec}: cached here ({cached}); HF_HUB_OFFLINE=1: every node needs it in its HF cache"
    try:
        _hub_files(spec, kind)
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 - a driver without network may still run workers that have it
        return (f"model.{kind} {spec}: could not check it on the Hub ({hub_endpoint()}: {_first_line(e)}); verl's "
                "workers download it on first use")
    where = f"cached here ({cached})" if cached else "not cached here"
    return (f"model.{kind} {spec}: on the Hub, {where}; verl's workers download it into each node's HF cache on "
            "first use (`rl-prm models pull RECIPE` on each node, or a shared HF_HOME, fetches it ahead)")


def plan_hub_model(repo_id: str, kind: str = "policy") -> dict[str, Any]:
    """What fetch_hub_model would do, without downloading: {"cached": dir | None, "files": n | None,
    "download_bytes": int | None, "total_bytes": int | None, "note": str}. ModelUnavailable for a missing repo."""
    from huggingface_hub import snapshot_download  # ~0.3 s (module doc)

    cached = cached_snapshot(repo_id)
    out: dict[str, Any] = {"cached": cached, "files": None, "download_bytes": None, "total_bytes": None}
    if hub_offline():
        out["note"] = "HF_HUB_OFFLINE=1: " + ("read from the cache" if cached else "not cached, cannot be fetched")
        return out
    try:
        files = [s.rfilename for s in _hub_files(repo_id, kind).siblings or []]
        plan = snapshot_download(repo_id, ignore_patterns=ignore_patterns(files), dry_run=True)
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 - no Hub from here: say so, size unknown
        out["note"] = (f"the Hub ({hub_endpoint()}) cannot be reached from here ({_first_line(e)}): "
                       + ("runs use the cached copy" if cached else "size unknown; a pull needs network access"))
        return out
    out.update(files=len(plan), total_bytes=sum(f.file_size or 0 for f in plan),
               download_bytes=sum(f.file_size or 0 for f in plan if f.will_download))
    skipped = len(files) - len(plan)
    out["note"] = (f"{len(plan)} files, {human_size(out['download_bytes'])} to download of "
                   f"{human_size(out['total_bytes'])}"
                   + (f" ({skipped} files of other weight formats skipped)" if skipped else ""))
    return out


def recipe_models(cfg: Any) -> list[tuple[str, str]]:
    """(kind, spec) of every model a recipe loads: the policy, the judge when reward.prm.enabled (and not the
    oracle, which is no model), the reference policy when set."""
    out = [("policy", cfg.model.policy)]
    if cfg.reward.prm.enabled and cfg.model.judge != ORACLE:
        out.append(("judge", cfg.model.judge))
    if cfg.model.get("ref_policy"):
        out.append(("ref_policy", cfg.model.ref_policy))
    return out
