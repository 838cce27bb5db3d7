"""Hub ids resolve as transformers / vLLM / verl resolve them, tested against a loopback HTTP server that
serves the tiny policy as a Hub repo (huggingface_hub honours HF_ENDPOINT).

The server implements the routes huggingface_hub.snapshot_download uses (huggingface_hub 2.x):
    GET  /api/models/{repo}[/revision/{rev}]   model info: sha, siblings (files; sizes with ?blobs=True)
    GET  /api/models/{repo}/tree/{rev}         recursive file listing (path, size, oid)
    HEAD /{repo}/resolve/{rev}/{file}          X-Repo-Commit, ETag, Content-Length
    GET  /{repo}/resolve/{rev}/{file}          the bytes
An unknown repo answers 404 with X-Error-Code: RepoNotFound, as the Hub does.

huggingface_hub reads HF_HOME / HF_ENDPOINT / HF_HUB_OFFLINE at import, so every resolution runs in a
fresh `python` (the CLI a user runs, or one call of rl_prm.models).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

REPO = "rlprm-test/tiny-policy"
EXTRA = {"flax_model.msgpack": b"not for torch" * 100, "pytorch_model.bin": b"pickle duplicate" * 100}


class FakeHub:
    """A Hub endpoint on 127.0.0.1 serving `repos` ({repo id: {path in repo: bytes}}); `log` holds
    (method, path) of every request."""

    def __init__(self, repos: dict[str, dict[str, bytes]]):
        self.repos = repos
        self.sha = {r: hashlib.sha1(repr(sorted(f)).encode() + r.encode()).hexdigest() for r, f in repos.items()}
        self.log: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_GET(self):
                hub.handle(self, body=True)

            def do_HEAD(self):
                hub.handle(self, body=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _send(self, h, status: int, data: bytes, body: bool, headers: dict[str, str]) -> None:
        h.send_response(status)
        for k, v in {"Content-Length": str(len(data)), **headers}.items():
            h.send_header(k, v)
        h.end_headers()
        if body:
            h.wfile.write(data)

    def _json(self, h, obj, body: bool) -> None:
        self._send(h, 200, json.dumps(obj).encode(), body, {"Content-Type": "application/json"})

    def _missing(self, h, body: bool, code: str, repo: str = "") -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": code, "Content-Type": "application/json"}
        if repo in self.sha:
            headers["X-Repo-Commit"] = self.sha[repo]
        self._send(h, 404, json.dumps({"error": code}).encode(), body, headers)

    def _split_repo(self, rest: str, marker: str) -> tuple[str, str]:
        """'org/name/<marker>/tail' -> ('org/name', 'tail'); no marker -> (rest, '')."""
        if f"/{marker}/" in rest:
            repo, tail = rest.split(f"/{marker}/", 1)
            return repo, tail
        return rest.rstrip("/"), ""

    def handle(self, h, body: bool) -> None:
        path = unquote(urlsplit(h.path).path)
        query = urlsplit(h.path).query
        self.log.append((h.command, path))
        if path.startswith("/api/models/"):
            rest = path[len("/api/models/"):]
            if "/tree/" in rest:
                repo, rev = self._split_repo(rest, "tree")
                if repo not in self.repos:
                    return self._missing(h, body, "RepoNotFound")
                if rev not in ("main", self.sha[repo]):
                    return self._missing(h, body, "RevisionNotFound", repo)
                return self._json(h, [{"type": "file", "path": f, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                                      for f, b in sorted(self.repos[repo].items())], body)
            repo, rev = self._split_repo(rest, "revision")
            if repo not in self.repos:
                return self._missing(h, body, "RepoNotFound")
            if rev and rev not in ("main", self.sha[repo]):
                return self._missing(h, body, "RevisionNotFound", repo)
            sized = "blobs=True" in query
            siblings = [{"rfilename": f, **({"size": len(b), "blobId": hashlib.sha1(b).hexdigest()} if sized else {})}
                        for f, b in sorted(self.repos[repo].items())]
            return self._json(h, {"id": repo, "modelId": repo, "sha": self.sha[repo], "private": False,
                                  "siblings": siblings}, body)
        repo, tail = self._split_repo(path.lstrip("/"), "resolve")
        if not tail or repo not in self.repos:
            return self._missing(h, body, "RepoNotFound")
        rev, _, filename = tail.partition("/")
        if rev not in ("main", self.sha[repo]):
            return self._missing(h, body, "RevisionNotFound", repo)
        if filename not in self.repos[repo]:
            return self._missing(h, body, "EntryNotFound", repo)
        data = self.repos[repo][filename]
        etag = f'"{hashlib.sha256(data).hexdigest()}"'
        self._send(h, 200, data, body, {"X-Repo-Commit": self.sha[repo], "ETag": etag,
                                        "Content-Type": "application/octet-stream"})


def _repo_files(model_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(model_dir)): p.read_bytes() for p in sorted(model_dir.rglob("*")) if p.is_file()}


def _env(hf_home: Path, hub: FakeHub | None, offline: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING")) and k != "TRANSFORMERS_OFFLINE"}
    env.update(HF_HOME=str(hf_home), HF_HUB_OFFLINE="1" if offline else "0", NO_PROXY="127.0.0.1,localhost",
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1",  # as rl-prm's quiet console sets it
               HF_ENDPOINT=hub.url if hub else "http://127.0.0.1:9")
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=180,
                          cwd=str(Path(__file__).resolve().parents[1]))


def _resolve(spec: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """rl_prm.models.resolve_model (what the local backend calls) in a fresh interpreter; prints the dir,
    or one line for a ValueError (exit 2)."""
    code = ("import sys\nfrom rl_prm.models import resolve_model\ntry:\n"
            "    print(resolve_model(sys.argv[1], 'policy'))\n"
            "except ValueError as e:\n    print(e, file=sys.stderr); sys.exit(2)\n")
    return _run(["-c", code, spec], env)


@pytest.fixture()
def hub(tiny_policy_dir):
    files = {**_repo_files(Path(tiny_policy_dir)), **EXTRA}
    server = FakeHub({REPO: files})
    yield server
    server.stop()


def test_hub_id_downloads_once_then_serves_from_cache_and_offline_errors_name_the_id(hub, tmp_path, tiny_policy_dir):
    hf_home = tmp_path / "hf_home"
    env = _env(hf_home, hub, offline=False)

    # 1. first use: `rl-prm models pull` downloads into $HF_HOME/hub, printing where and how big
    r = _run(["-m", "rl_prm", "models", "pull", "recipes/tiny_cpu.yaml", f"model.policy={REPO}", "model.judge=tiny",
              "data.train=tiny_arith", "data.test=tiny_arith"], env)
    assert r.returncode == 0, r.stderr
    snap = hf_home / "hub" / "models--rlprm-test--tiny-policy" / "snapshots" / hub.sha[REPO]
    assert f"model.policy {REPO}: {snap}" in r.stdout
    assert "model.judge tiny: built-in (shipped in the package or made on this machine, never downloaded)" in r.stdout
    assert "downloading from" in r.stderr and hub.url in r.stderr  # says where from, the first time
    assert "Download complete" in r.stderr  # with a progress bar (also when a quiet console turns HF's bars off)
    src = Path(tiny_policy_dir)
    for f in ("config.json", "model.safetensors", "tokenizer.json"):
        assert (snap / f).read_bytes() == (src / f).read_bytes()
    gets = {p.rsplit("/", 1)[-1] for m, p in hub.log if m == "GET" and "/resolve/" in p}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= gets
    # other frameworks' files and pickle duplicates of the safetensors weights are skipped
    assert not (set(EXTRA) & gets) and not any((snap / f).exists() for f in EXTRA)

    # 2. the snapshot dir loads as the local backend loads a model dir
    from transformers import AutoConfig, AutoTokenizer

    assert AutoConfig.from_pretrained(snap).model_type == "qwen2"
    assert AutoTokenizer.from_pretrained(snap)("1 + 1").input_ids

    # 3. second use with the server stopped: the cached snapshot, no download
    hub.stop()
    n_requests = len(hub.log)
    r = _resolve(REPO, env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(snap) and "cached copy" in r.stderr and "Download" not in r.stderr
    assert len(hub.log) == n_requests
    # ... and offline
    r = _resolve(REPO, _env(hf_home, None, offline=True))
    assert r.returncode == 0 and r.stdout.strip() == str(snap), r.stderr

    # 4. HF_HUB_OFFLINE=1 and an id that is not cached: one line naming the id, no traceback
    r = _resolve("rlprm-test/never-downloaded", _env(hf_home, None, offline=True))
    assert r.returncode == 2
    assert "'rlprm-test/never-downloaded'" in r.stderr and "HF_HUB_OFFLINE=1" in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_repo_and_dry_run(hub, tmp_path):
    env = _env(tmp_path / "hf_home", hub, offline=False)
    # a repo the Hub does not have: one line naming it, exit code 2
    r = _run(["-m", "rl_prm", "models", "pull", "recipes/tiny_cpu_vr_only.yaml",
              "model.policy=rlprm-test/no-such-model", "data.train=tiny_arith", "data.test=tiny_arith"], env)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("rl-prm models: model.policy 'rlprm-test/no-such-model': "
                                                        "no such model on the Hub")

    # --dry-run: the files and bytes it would fetch, and nothing downloaded
    r = _run(["-m", "rl_prm", "models", "pull", "recipes/tiny_cpu_vr_only.yaml", f"model.policy={REPO}",
              "data.train=tiny_arith", "data.test=tiny_arith", "--dry-run"], env)
    assert r.returncode == 0, r.stderr
    files = hub.repos[REPO]
    kept = [f for f in files if f not in EXTRA]
    assert f"model.policy {REPO}: would fetch into the HF cache; not cached; {len(kept)} files" in r.stdout
    assert f"({len(EXTRA)} files of other weight formats skipped)" in r.stdout
    assert "model.judge: skipped (reward.prm.enabled=false)" in r.stdout
    assert not any(m == "GET" and "/resolve/" in p for m, p in hub.log)
    assert not list((tmp_path / "hf_home").rglob("model.safetensors"))


def test_verl_backend_hub_ids(hub, tmp_path):
    """verl backend: a cluster run hands verl the id after checking it (no download; a note or one error
    line); a one-node CPU run fetches it into this machine's HF cache (model_path(fetch=True))."""
    env = _env(tmp_path / "hf_home", hub, offline=False)
    code = ("import sys\nfrom rl_prm.backends.verl_backend import check_model, model_path\n"
            "here = sys.argv[2] == 'here'\ntry:\n    check_model(sys.argv[1], 'judge', here)\n"
            "    print(model_path(sys.argv[1], 'judge'), model_path(sys.argv[1], 'judge', fetch=here))\n"
            "except ValueError as e:\n    print(e, file=sys.stderr); sys.exit(2)\n")
    r = _run(["-c", code, REPO, "cluster"], env)
    assert r.returncode == 0, r.stderr
    assert "on the Hub, not cached here" in r.stderr and "verl's workers download it" in r.stderr
    assert r.stdout.split() == [REPO, REPO] and not any("/resolve/" in p for _, p in hub.log)
    r = _run(["-c", code, "rlprm-test/no-such-model", "cluster"], env)
    assert r.returncode == 2 and "'rlprm-test/no-such-model'" in r.stderr and "Traceback" not in r.stderr
    r = _run(["-c", code, REPO, "cluster"], _env(tmp_path / "hf_home", None, offline=True))
    assert r.returncode == 2 and "HF_HUB_OFFLINE=1" in r.stderr and REPO in r.stderr

    r = _run(["-c", code, REPO, "here"], env)
    assert r.returncode == 0, r.stderr
    snap = tmp_path / "hf_home" / "hub" / "models--rlprm-test--tiny-policy" / "snapshots" / hub.sha[REPO]
    assert r.stdout.split() == [REPO, str(snap)] and (snap / "model.safetensors").is_file()


def test_model_specs_resolve_without_network(tiny_policy_dir, tmp_path):
    """Built-in names and local dirs never touch the Hub; a path that is neither a dir nor an id is named."""
    from rl_prm.models import is_hub_id, resolve_model

    assert resolve_model("tiny", "policy") == str(tiny_policy_dir)
    assert resolve_model(str(tiny_policy_dir), "policy") == str(tiny_policy_dir)
    assert is_hub_id("Qwen/Qwen2.5-Math-1.5B") and is_hub_id("gpt2")
    assert not is_hub_id("tiny") and not is_hub_id(str(tiny_policy_dir)) and not is_hub_id("./models/x")
    with pytest.raises(ValueError, match=r"model.judge '\./nope/x': no such model directory"):
        resolve_model("./nope/x", "judge")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        resolve_model(str(tmp_path / "empty"), "policy")


def test_train_with_an_uncached_hub_id_offline_exits_2_naming_it(tmp_path, capsys, monkeypatch):
    """The local backend resolves the hub id before any engine starts: one line, exit code 2."""
    from rl_prm.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rc = main(["train", str(Path(__file__).resolve().parents[1] / "recipes" / "tiny_cpu.yaml"),
               f"run.output_dir={tmp_path}", "model.policy=rlprm-test/never-downloaded", "model.judge=tiny"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err
    assert "rl-prm train: model.policy 'rlprm-test/never-downloaded': not in the local HF cache" in err
