"""Content digests: of a file (sha256, read in blocks) and of a JSON-able value (stable: keys sorted).

    sha256_file("model.safetensors")          # hex digest, as `sha256sum` prints it
    json_digest({"steps": 1000}, 16)          # the first 16 hex digits of sha256(json.dumps(value, sort_keys=True))
"""

from __future__ import annotations

import hashlib
import json
import os


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def json_digest(value, n: int = 16) -> str:
    """The first ``n`` hex digits of the sha256 of ``value`` as sorted-key JSON (str() for what JSON lacks)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:n]
