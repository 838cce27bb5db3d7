"""Recipe knobs declared once: a dataclass field with its default, help text and checks.

    @dataclass
    class RolloutConfig:
        n: int = knob(4, "samples per prompt", gt=0)
        mode: str = knob("min_form", "credit mode", choices=lambda: MODES.names())

`knob` is `dataclasses.field` with metadata that tools read: `describe(RecipeConfig)` prints every
key with its type, default and help (`rl-prm train --help-config`); `check_values(cfg, schema)`
enforces `choices` (a tuple or a callable returning the names of a registry, read lazily) and the
numeric bounds `gt`/`ge`/`le`/`lt`, naming the key. `backends` names the backends that honour a key
(default: all); rl_prm.config.rules refuses a non-default value on any other backend.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Callable, Iterator, Optional, Sequence, Union

Choices = Union[Sequence[str], Callable[[], Sequence[str]], None]


def knob(default: Any = dataclasses.MISSING, help: str = "", *, factory: Optional[Callable[[], Any]] = None,
         choices: Choices = None, gt: Optional[float] = None, ge: Optional[float] = None,
         le: Optional[float] = None, lt: Optional[float] = None, backends: Optional[Sequence[str]] = None,
         choices_help: str = "", accept: Optional[Callable[[Any], bool]] = None) -> Any:
    """A dataclass field carrying its help text and checks (see the module doc). `accept(value)`
    True admits a value outside `choices` (e.g. a file path); `choices_help` describes those."""
    md = {"help": help, "choices": choices, "gt": gt, "ge": ge, "le": le, "lt": lt, "accept": accept,
          "backends": tuple(backends) if backends else None, "choices_help": choices_help}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=md)
    return dataclasses.field(default=default, metadata=md)


@dataclasses.dataclass(frozen=True)
class Knob:
    key: str  # dotted recipe key
    type: str
    default: Any
    help: str
    meta: dict


def _type_name(tp: Any) -> str:
    if isinstance(tp, str):
        return tp
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Union and type(None) in args:
        return f"{_type_name([a for a in args if a is not type(None)][0])} | null"
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(_type_name(a) for a in args)}]"
    return getattr(tp, "__name__", str(tp))


def knobs(schema: type, prefix: str = "") -> Iterator[Knob]:
    """Every leaf field of a (nested) dataclass schema, in declaration order."""
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        tp = hints.get(f.name, f.type)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(tp):
            yield from knobs(tp, key + ".")
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = dataclasses.MISSING
        yield Knob(key, _type_name(tp), default, f.metadata.get("help", ""), dict(f.metadata))


def choices_of(meta: dict) -> Optional[list[str]]:
    c = meta.get("choices")
    if c is None:
        return None
    return list(c() if callable(c) else c)


def describe(schema: type) -> str:
    """Human-readable list of every key: `section.key  type = default  help [choices] [backends]`."""
    lines = []
    section = None
    for k in knobs(schema):
        top = k.key.split(".")[0]
        if top != section:
            section = top
            doc = (getattr(typing.get_type_hints(schema).get(top), "__doc__", "") or "").strip().splitlines()
            lines.append(f"\n{top}:" + (f"  {doc[0]}" if doc else ""))
        default = "(required)" if k.default in (dataclasses.MISSING, "???") else repr(k.default)
        extra = []
        ch = choices_of(k.meta)
        if ch:
            extra.append("choices: " + ", ".join(ch) + (f" {k.meta['choices_help']}" if k.meta.get("choices_help") else ""))
        if k.meta.get("backends"):
            extra.append("backends: " + ", ".join(k.meta["backends"]))
        tail = f"  [{'; '.join(extra)}]" if extra else ""
        lines.append(f"  {k.key} ({k.type}) = {default}\n      {k.help}{tail}")
    return "\n".join(lines).lstrip("\n") + "\n"


def _select(cfg: Any, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def check_values(cfg: Any, schema: type) -> None:
    """Raise ValueError naming the first key whose value breaks its knob's choices or bounds."""
    for k in knobs(schema):
        v = _select(cfg, k.key)
        if v is None:
            continue
        ch = choices_of(k.meta)
        values = list(v) if isinstance(v, (list, tuple)) or type(v).__name__ == "ListConfig" else [v]
        if ch is not None:
            accept = k.meta.get("accept") or (lambda _: False)
            bad = [x for x in values if x not in ch and not accept(x)]
            if bad:
                raise ValueError(f"{k.key}: unknown value {bad[0]!r}; known: {', '.join(ch)}")
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        for op, bound, ok in (("gt", k.meta.get("gt"), lambda a, b: a > b), ("ge", k.meta.get("ge"), lambda a, b: a >= b),
                              ("lt", k.meta.get("lt"), lambda a, b: a < b), ("le", k.meta.get("le"), lambda a, b: a <= b)):
            if bound is not None and not ok(v, bound):
                sym = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}[op]
                raise ValueError(f"{k.key} must be {sym} {bound:g}, got {v!r}")
