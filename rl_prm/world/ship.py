"""The miniature world as shipped in the package, and which world `model.policy: world` /
`model.judge: world` load.

    world_model("judge")        # the judge's dir, every file sha256-checked (ShippedWorldError names a bad one)
    card("judge")               # its build card (build.json)

Layout of rl_prm/world/shipped/ (a data folder, written by `rl-prm world build`, rl_prm.world.release):

    policy/      model.safetensors (float32), config.json, generation_config.json, tokenizer files, build.json
    judge/       the same; its build.json also holds the judge's mini-ProcessBench evaluation
    SHA256SUMS   "<sha256>  <part>/<file>" for every file above

$RL_PRM_WORLD picks the world that runs load:
    unset        the shipped one (no build step)
    build        the local build in $RL_PRM_CACHE/tiny/world/ (rl_prm.world.policy / .judge: built on first
                 use, tens of minutes on a CPU, then reused)
    DIR          a directory holding the layout above (`rl-prm world build --out DIR`)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from rl_prm.digest import sha256_file

SHIPPED_DIR = Path(__file__).resolve().with_name("shipped")
PARTS = ("policy", "judge")
SUMS = "SHA256SUMS"
ENV = "RL_PRM_WORLD"
BUILD = "build"  # RL_PRM_WORLD=build: the local build (rl_prm.world.policy / .judge)


class ShippedWorldError(ValueError):
    """A world's model cannot be loaded (a file missing or failing its sha256 check): one line naming it."""


def world_source() -> str | Path:
    """Where the world's models come from: BUILD, or the root of a shipped layout (module doc)."""
    where = os.environ.get(ENV, "").strip()
    if where == BUILD:
        return BUILD
    return Path(where).expanduser() if where else SHIPPED_DIR


def part_of(kind: str) -> str:
    """The world model of a recipe's model kind: judge -> "judge", policy / ref_policy -> "policy"."""
    return "judge" if kind == "judge" else "policy"


def read_sums(root: Path) -> dict[str, str]:
    """{relative path: sha256} from root/SHA256SUMS."""
    out = {}
    for line in (root / SUMS).read_text().splitlines():
        if line.strip():
            digest, rel = line.split(maxsplit=1)
            out[rel.strip()] = digest
    return out


def write_sums(root: Path) -> None:
    """root/SHA256SUMS over every file under root's parts."""
    files = sorted(f for part in PARTS for f in (root / part).iterdir() if f.is_file())
    (root / SUMS).write_text("".join(f"{sha256_file(f)}  {f.relative_to(root).as_posix()}\n" for f in files))


def _repair_hint(root: Path) -> str:
    if root == SHIPPED_DIR:
        return ("restore it (reinstall rl-prm, or `git checkout rl_prm/world/shipped` in a clone), rebuild it with "
                f"`rl-prm world build`, or set {ENV}={BUILD} to build and use a local one")
    return f"rebuild it with `rl-prm world build --out {root}`, or unset {ENV} to load the shipped world"


def check(root: Path, part: str) -> Path:
    """root/part, after checking every file SHA256SUMS lists under it; ShippedWorldError naming the first
    file missing or failing its sha256 check."""
    if not (root / SUMS).is_file():
        what = "the shipped world is missing" if root == SHIPPED_DIR else f"{ENV}={root} is not a world build"
        raise ShippedWorldError(f"{what} ({root / SUMS} not found): {_repair_hint(root)}")
    listed = {rel: digest for rel, digest in read_sums(root).items() if rel.startswith(part + "/")}
    if not listed:
        raise ShippedWorldError(f"{root / SUMS} lists no {part}/ files: {_repair_hint(root)}")
    for rel, want in sorted(listed.items()):
        f = root / rel
        if not f.is_file():
            raise ShippedWorldError(f"{f} is missing: {_repair_hint(root)}")
        got = sha256_file(f)
        if got != want:
            raise ShippedWorldError(f"{f} is corrupt (sha256 {got[:12]}..., {SUMS} says {want[:12]}...): "
                                    f"{_repair_hint(root)}")
    return root / part


def world_model(kind: str) -> Path:
    """The model dir `model.<kind>: world` loads (kind: policy | judge | ref_policy), from where
    $RL_PRM_WORLD says (module doc); a shipped layout is sha256-checked first (``check``)."""
    src = world_source()
    if src == BUILD:  # the builders import the training code (numpy, tqdm, ...): not for `rl-prm world --help`
        if part_of(kind) == "judge":
            from rl_prm.world.judge import judge_path

            return judge_path()
        from rl_prm.world.policy import policy_path

        return policy_path()
    return check(src, part_of(kind))


def card(part: str, root: Path | None = None) -> dict:
    """The build card (build.json) of a shipped part ("policy" or "judge")."""
    return json.loads(((root or SHIPPED_DIR) / part / "build.json").read_text())
