"""Where library output goes: the console shows our lines, vLLM / Ray / transformers chatter goes to log files.

    rl-prm train recipes/tiny_cpu.yaml              # quiet: engine and library output -> RUN_DIR/logs/*.log
    rl-prm --verbose train recipes/tiny_cpu.yaml    # (or RL_PRM_VERBOSE=1): the libraries print as they like

Every `rl-prm` command runs inside `session(command)` (rl_prm.cli). Quiet (the default), by where
the output is made:
  * Ray actors (the rollout engine, the R-PRM workers) get a log file when they are created
    (`log_file(name)`) and point their file descriptors 1 and 2 at it first thing
    (`redirect_process`), so their vLLM engine-core subprocesses inherit it; the driver joins Ray
    with log_to_driver=False (`ray_log_to_driver`).
  * An in-process engine (score, eval, bench): fds 1 and 2 point at LOGDIR/<name>.log while vLLM
    starts (`engine_output`), so its engine-core subprocess keeps that file; this process's 'vllm'
    logger writes there from then on (also after the session: the engine's shutdown lines).
  * This process: Python warnings and the vllm / transformers / ray / torch loggers go to
    LOGDIR/python.log (records made before the command picks its log dir are held in memory and
    written there once it does); Hugging Face progress bars are off (HF_HUB_DISABLE_PROGRESS_BARS).
LOGDIR is what the command sets (`set_dir`: train RUN_DIR/logs, eval OUT/logs), else
runs/logs/<command>-<time>/; it is created only when something is written, and the session's last
line names it. Outside a session (library use, tests) nothing is routed.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import sys
import time
from pathlib import Path
from typing import Iterator, Optional

# loggers of the libraries whose chatter goes to LOGDIR/python.log
LIBRARY_LOGGERS = ("vllm", "transformers", "ray", "torch", "py.warnings", "filelock", "urllib3", "datasets",
                   "huggingface_hub", "accelerate")
_ENV_QUIET = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TOKENIZERS_PARALLELISM": "false"}


class _Held(logging.handlers.MemoryHandler):
    """Holds records until a target file exists (at most `capacity`; the oldest are dropped)."""

    def emit(self, record: logging.LogRecord) -> None:
        if self.target is None and len(self.buffer) >= self.capacity:
            del self.buffer[0]
        super().emit(record)


class _Session:
    def __init__(self, command: str):
        self.default = Path("runs") / "logs" / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}"
        self.dir: Optional[Path] = None
        self.used: set[Path] = set()
        self.buffer = _Held(capacity=10_000, flushLevel=logging.CRITICAL + 1)
        self.file: Optional[logging.FileHandler] = None
        self.saved_loggers: dict[str, tuple[list, bool, int]] = {}
        self.saved_env: dict[str, Optional[str]] = {}


_session: Optional[_Session] = None


def verbose() -> bool:
    """True when RL_PRM_VERBOSE is 1/true/yes (set by `--verbose`): nothing is routed."""
    return os.environ.get("RL_PRM_VERBOSE", "").strip().lower() in ("1", "true", "yes")


def routing() -> bool:
    """True inside a quiet session (library output goes to log files)."""
    return _session is not None


@contextlib.contextmanager
def session(command: str, verbose_flag: bool = False) -> Iterator[None]:
    """Route library output for one CLI command (see the module doc); `verbose_flag` routes nothing
    and sets RL_PRM_VERBOSE=1 for the processes this command starts."""
    global _session
    if verbose_flag and not verbose():
        os.environ["RL_PRM_VERBOSE"] = "1"
        try:
            yield
        finally:
            os.environ.pop("RL_PRM_VERBOSE", None)
        return
    if verbose() or _session is not None:
        yield
        return
    s = _session = _Session(command)
    for k, v in _ENV_QUIET.items():
        s.saved_env[k] = os.environ.get(k)
        os.environ.setdefault(k, v)
    logging.captureWarnings(True)
    _take_loggers(s, s.buffer)
    try:
        yield
    finally:
        if s.buffer.buffer and s.file is None:  # chatter was held, no dir picked: the default one
            _open_file(s, s.default)
        _restore_loggers(s)
        logging.captureWarnings(False)
        for k, v in s.saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _session = None
        if s.used:
            where = ", ".join(str(d) for d in sorted(s.used))
            print(f"rl-prm: engine and library logs in {where} (--verbose prints them here)", file=sys.stderr,
                  flush=True)


def set_dir(path: str | os.PathLike) -> None:
    """This command's log directory (created when something is written). No-op outside a session."""
    if _session is not None:
        _session.dir = Path(path)
        if _session.file is not None or _session.buffer.buffer:
            _open_file(_session, _session.dir)


def log_dir() -> Optional[Path]:
    """The session's log directory, created; None when not routing."""
    s = _session
    if s is None:
        return None
    d = s.dir or s.default
    d.mkdir(parents=True, exist_ok=True)
    s.used.add(d.resolve())
    return d


def log_file(name: str) -> Optional[str]:
    """LOGDIR/<name>.log for an actor or engine (absolute), None when not routing."""
    d = log_dir()
    return None if d is None else str((d / f"{name}.log").resolve())


def ray_log_to_driver() -> bool:
    """Ray's log_to_driver for this process: off inside a quiet session (actors write their own files)."""
    return not routing()


def redirect_process(path: str | os.PathLike) -> None:
    """Point this process's fds 1 and 2 at `path` (appended) for good: what it and every child it
    starts print lands there. For actor processes, first thing in their constructor."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    logging.captureWarnings(True)  # warnings -> the 'py.warnings' logger -> stderr (the file)
    print(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()} writes here ====", flush=True)


@contextlib.contextmanager
def engine_output(name: str) -> Iterator[Optional[str]]:
    """While an in-process engine starts: fds 1 and 2 -> LOGDIR/<name>.log (its subprocesses keep
    the file), then this process's 'vllm' logger -> the same file. Yields the path (None when not
    routing). An exception raised inside gets a note naming the log."""
    path = log_file(name)
    if path is None:
        yield None
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield path
    except BaseException as e:
        e.add_note(f"engine log: {path}")
        raise
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (*saved, fd):
            os.close(f)
        _route_vllm_logger(path)


# ------------------------------------------------------------------------------------------------


def _take_loggers(s: _Session, handler: logging.Handler) -> None:
    """Library loggers -> `handler` only (their console handlers are set aside, restored at the end)."""
    try:  # transformers adds its console handler on first use: make it exist now, then set it aside
        import transformers.utils.logging as tlog

        tlog.get_logger()
    except Exception:  # noqa: BLE001 - transformers is optional here
        pass
    for name in LIBRARY_LOGGERS:
        lg = logging.getLogger(name)
        if name not in s.saved_loggers:
            s.saved_loggers[name] = (list(lg.handlers), lg.propagate, lg.level)
        for h in list(lg.handlers):
            lg.removeHandler(h)
        lg.addHandler(handler)
        lg.propagate = False


def _restore_loggers(s: _Session) -> None:
    for h in (s.buffer, s.file):
        if h is not None:
            h.flush()
    for name, (handlers, propagate, level) in s.saved_loggers.items():
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            lg.removeHandler(h)
        for h in handlers:
            lg.addHandler(h)
        lg.propagate, lg.level = propagate, level
    for h in (s.buffer, s.file):
        if h is not None:
            h.close()


def _open_file(s: _Session, d: Path) -> None:
    """LOGDIR/python.log becomes the target of the library loggers; held records are written there."""
    d.mkdir(parents=True, exist_ok=True)
    s.used.add(d.resolve())
    fh = logging.FileHandler(d / "python.log", encoding="utf-8", delay=True)
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    s.buffer.setTarget(fh)
    s.buffer.flush()
    if s.file is not None:
        s.file.close()
    s.file = fh


def _route_vllm_logger(path: str) -> None:
    """This process's 'vllm' logger (configured by vLLM when imported) -> `path`, for the rest of the
    process: the engine may outlive the session, and its shutdown lines belong in its log."""
    s = _session
    if s is None or "vllm" not in sys.modules:
        return
    lg = logging.getLogger("vllm")
    if any(getattr(h, "rl_prm", False) for h in lg.handlers):
        return
    s.saved_loggers.pop("vllm", None)  # an engine outlives the session (its shutdown logs too): keep the file
    for h in list(lg.handlers):
        lg.removeHandler(h)
    fh = logging.FileHandler(path, encoding="utf-8")
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    fh.rl_prm = True
    lg.addHandler(fh)
    lg.propagate = False
