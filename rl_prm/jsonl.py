"""Reading JSONL files users hand us: every line accounted for, no byte sequence crashes the reader.

    for line in read_lines(path):        # one Line per physical line, in order (also blank ones)
        line.lineno, line.value, line.error     # error: None, or why the line is unusable (one line)
    for lineno, row in read_objects(path):      # strict: JSON objects, blank lines skipped;
        ...                                     # anything else raises InputError("PATH:LINE: why")

A line is unusable when it is blank, longer than `max_line_bytes` (skipped without being held in
memory), not UTF-8 (a UTF-8 byte-order mark on line 1 is allowed), not JSON (NaN and Infinity are
not JSON), nested deeper than the parser goes, or holds text that is not valid Unicode (a lone
surrogate written as a \\ud800 escape, which no UTF-8 writer or tokenizer accepts).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, BinaryIO, Iterator, Optional

MAX_LINE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Line:
    lineno: int  # 1-based
    value: Any  # the parsed JSON value (None when error)
    error: Optional[str]  # why the line is unusable, None when it parsed
    blank: bool = False


class InputError(ValueError):
    """A bad line of a user's file: the message is `PATH:LINE: what is wrong`."""

    def __init__(self, path: str | os.PathLike, lineno: int, msg: str):
        super().__init__(f"{path}:{lineno}: {msg}")
        self.path, self.lineno = str(path), lineno


def read_lines(path: str | os.PathLike, limit: Optional[int] = None,
               max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[Line]:
    """One `Line` per physical line of `path` (the first `limit` lines when given)."""
    with open(path, "rb") as f:
        lineno = 0
        while limit is None or lineno < limit:
            raw = f.readline(max_line_bytes + 1)
            if not raw:
                return
            lineno += 1
            if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
                n = len(raw) + _skip_rest(f)
                yield Line(lineno, None, f"longer than {max_line_bytes} bytes ({n} bytes); not read")
                continue
            yield parse_line(raw, lineno)


def parse_line(raw: bytes, lineno: int = 1) -> Line:
    """The `Line` for one line's bytes (with or without its newline)."""
    body = raw.rstrip(b"\r\n")
    if lineno == 1 and body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    if not body.strip():
        return Line(lineno, None, "blank line", blank=True)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        return Line(lineno, None, f"not UTF-8 (byte 0x{body[e.start]:02x} at byte {e.start + 1})")
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        return Line(lineno, None, f"not JSON ({e.msg} at column {e.colno})")
    except RecursionError:
        return Line(lineno, None, "not JSON this reader can use (nested too deeply)")
    except ValueError as e:  # NaN / Infinity, or an integer with more digits than Python converts
        return Line(lineno, None, f"not JSON ({e})")
    bad = _invalid_text(value)
    if bad is not None:
        return Line(lineno, None, f"text is not valid Unicode (lone surrogate \\u{ord(bad):04x})")
    return Line(lineno, value, None)


def read_objects(path: str | os.PathLike, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line; raises InputError at the first bad one."""
    for line in read_lines(path, max_line_bytes=max_line_bytes):
        if line.blank:
            continue
        if line.error is not None:
            raise InputError(path, line.lineno, line.error)
        if not isinstance(line.value, dict):
            raise InputError(path, line.lineno, f"expected a JSON object, got {json_type(line.value)}")
        yield line.lineno, line.value


def json_type(v: Any) -> str:
    """The JSON name of a parsed value's type ("object", "array", "string", "number", "boolean", "null")."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    return {dict: "object", list: "array", str: "string"}.get(type(v), type(v).__name__)


def dumps_line(obj: Any) -> str:
    """One JSONL line for `obj` (non-ASCII text kept as is when it encodes, escaped otherwise)."""
    s = json.dumps(obj, ensure_ascii=False, allow_nan=False)
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        s = json.dumps(obj, ensure_ascii=True, allow_nan=False)
    return s + "\n"


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _skip_rest(f: BinaryIO, chunk: int = 1 << 20) -> int:
    """Read past the rest of the current line; returns the bytes skipped."""
    n = 0
    while True:
        block = f.readline(chunk)
        n += len(block)
        if not block or block.endswith(b"\n"):
            return n


def _invalid_text(value: Any) -> Optional[str]:
    """The first lone surrogate in any string (keys included) of a parsed JSON value, else None."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError as e:
                return v[e.start]
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return None
