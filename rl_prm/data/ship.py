"""Regenerate the benchmark files shipped in ``rl_prm/data/benchmarks`` from the shared data folder.

    rl-prm data ship --from ../shared/data

Every shipped file is the byte-exact original, gzip-compressed deterministically (mtime=0, level 9),
so ``sha256(gunzip(shipped)) == sha256(original)`` as recorded in MANIFEST.json.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent / "benchmarks"
MANIFEST_NAME = "MANIFEST.json"
LICENSE_DIR = "LICENSES"

# shipped path (under benchmarks/) <- source path (under the shared data folder), license file
SHIPPED: list[tuple[str, str, str]] = [
    ("gsm8k/train.jsonl.gz", "gsm8k/train.jsonl", "grade-school-math.MIT.txt"),
    ("gsm8k/test.jsonl.gz", "gsm8k/test.jsonl", "grade-school-math.MIT.txt"),
    ("math500/test.jsonl.gz", "math500/test.jsonl", "prm800k.MIT.txt"),
    ("math/test.jsonl.gz", "math/test.jsonl", "math-evaluation-harness.MIT.txt"),
    ("math/train.json.gz", "deepscaler_math_train/math.json", "deepscaler.MIT.txt"),
    ("aime24/test.jsonl.gz", "aime24/test.jsonl", "Qwen2.5-Math-evaluation.MIT.txt"),
    ("amc23/test.jsonl.gz", "amc23/test.jsonl", "Qwen2.5-Math-evaluation.MIT.txt"),
    ("minerva_math/test.jsonl.gz", "minerva_math/test.jsonl", "Qwen2.5-Math-evaluation.MIT.txt"),
    ("olympiadbench/test.jsonl.gz", "olympiadbench/test.jsonl", "Qwen2.5-Math-evaluation.MIT.txt"),
    *[
        (f"processbench/{s}.json.gz", f"processbench/{s}.json", "")
        for s in ("gsm8k", "math", "olympiadbench", "omnimath")
    ],
]
PRMBENCH_GLOBS = ["prmbench/classified/*.jsonl", "prmbench/subset400/*.jsonl"]
PRMBENCH_LICENSE = "PRMBench.Apache-2.0.txt"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _count_rows(name: str, data: bytes) -> int:
    if name.endswith(".jsonl"):
        return sum(1 for line in data.decode("utf-8").splitlines() if line.strip())
    return len(json.loads(data.decode("utf-8")))


def gzip_bytes(data: bytes) -> bytes:
    """Deterministic gzip: no file name, mtime=0, level 9."""
    return gzip.compress(data, compresslevel=9, mtime=0)


def ship(src: str | Path, dst: str | Path = BENCH_DIR, verbose: bool = True) -> dict:
    """Copy the needed benchmark files from ``src`` (the shared data folder) into ``dst``.

    Returns the manifest dict (also written to ``dst/MANIFEST.json``).
    """
    src, dst = Path(src), Path(dst)
    if not (src / "MANIFEST.json").is_file():
        raise FileNotFoundError(f"{src} has no MANIFEST.json; expected the shared data folder (../shared/data)")
    shared = {e["file"]: e for e in json.loads((src / "MANIFEST.json").read_text())}

    jobs = list(SHIPPED)
    for pattern in PRMBENCH_GLOBS:
        for p in sorted(src.glob(pattern)):
            rel = p.relative_to(src).as_posix()
            jobs.append((rel + ".gz", rel, PRMBENCH_LICENSE))

    files = []
    for out_rel, in_rel, lic_file in jobs:
        raw = (src / in_rel).read_bytes()
        facts = shared.get(in_rel, {})
        sha = _sha256(raw)
        if facts.get("sha256") and facts["sha256"] != sha:
            raise ValueError(f"{in_rel}: sha256 {sha} differs from the shared MANIFEST ({facts['sha256']})")
        rows = _count_rows(in_rel, raw)
        if facts.get("rows") is not None and facts["rows"] != rows:
            raise ValueError(f"{in_rel}: {rows} rows, shared MANIFEST says {facts['rows']}")
        gz = gzip_bytes(raw)
        out = dst / out_rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(gz)
        files.append(
            {
                "file": out_rel,
                "original": in_rel,
                "source": facts.get("source", ""),
                "source_path": facts.get("path", ""),
                "license": facts.get("license", ""),
                "license_file": f"{LICENSE_DIR}/{lic_file}" if lic_file else None,
                "rows": rows,
                "bytes": len(raw),
                "sha256": sha,
                "gz_bytes": len(gz),
                "fields": facts.get("fields", []),
            }
        )
        if verbose:
            print(f"  {out_rel:<66} {rows:>6} rows {len(raw) / 1e6:7.2f} MB -> {len(gz) / 1e6:6.2f} MB")

    lic_dst = dst / LICENSE_DIR
    lic_dst.mkdir(parents=True, exist_ok=True)
    for lic in sorted((src / "licenses").glob("*.txt")):
        shutil.copyfile(lic, lic_dst / lic.name)

    manifest = {
        "about": "Benchmark data shipped with rl-prm: byte-exact originals, gzip-compressed (mtime=0). "
        "sha256/bytes/rows describe the uncompressed original. Regenerate with "
        "`rl-prm data ship --from ../shared/data`.",
        "notes": {
            "math/train.json.gz": "MATH train problems with final answers (no solutions), from DeepScaleR.",
            "processbench": "Apache-2.0 per the Hugging Face card Qwen/ProcessBench; the GitHub repo has no "
            "LICENSE file, so no license text is shipped for it.",
            "aime24/amc23": "problems (c) MAA; no explicit data license upstream (harness MIT).",
            "minerva_math": "no explicit license upstream (MIT OCW source is CC BY-NC-SA).",
        },
        "files": files,
        "total_gz_bytes": sum(f["gz_bytes"] for f in files),
    }
    (dst / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1, sort_keys=False) + "\n")
    if verbose:
        print(f"  total {sum(f['bytes'] for f in files) / 1e6:.1f} MB -> {manifest['total_gz_bytes'] / 1e6:.2f} MB compressed")
    return manifest


def load_manifest(dst: str | Path = BENCH_DIR) -> dict:
    return json.loads((Path(dst) / MANIFEST_NAME).read_text())


def verify_shipped(dst: str | Path = BENCH_DIR) -> list[str]:
    """Check every shipped file against the manifest's sha256; returns a list of problems (empty = ok)."""
    dst = Path(dst)
    problems = []
    for f in load_manifest(dst)["files"]:
        p = dst / f["file"]
        if not p.is_file():
            problems.append(f"missing {f['file']}")
            continue
        sha = _sha256(gzip.decompress(p.read_bytes()))
        if sha != f["sha256"]:
            problems.append(f"sha256 mismatch {f['file']}")
    return problems
