"""Every dotted `rl_prm.` name written in the package's source (docstrings, comments, strings), in
docs/*.md and in README.md resolves to a Python object, so a moved or removed name cannot leave a
stale reference behind (issue #39).

A name resolves when its longest prefix that is a module imports (importlib) and the rest are
attributes of it (class attributes included, e.g. rl_prm.credit.StepBatch.from_spans; dataclass /
annotated fields count as attributes of their class). Names that are legitimately not Python objects
are in ALLOWED, each with its reason. All stale names are reported at once as `file:line -> name`.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import re
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOT_RUN = object()  # stands for a `__main__` module that exists: importing it would run it
NAME = re.compile(r"(?<![\w.])rl_prm(?:\.[A-Za-z_][A-Za-z0-9_]*)+")

# name -> why it is written but is not a Python object. Keep it short: a name here is never checked.
ALLOWED: dict[str, str] = {
    "rl_prm.plugins": "entry-point group name (pyproject [project.entry-points.\"rl_prm.plugins\"], "
                      "rl_prm.registry.PLUGIN_GROUP), not a module",
}


def _sources() -> list[Path]:
    files = sorted((ROOT / "rl_prm").rglob("*.py")) + sorted((ROOT / "docs").rglob("*.md"))
    readme = ROOT / "README.md"
    return files + ([readme] if readme.exists() else [])


def _occurrences() -> dict[str, list[str]]:
    """name -> ["path:line", ...] over all scanned files."""
    out: dict[str, list[str]] = {}
    for path in _sources():
        rel = path.relative_to(ROOT).as_posix()
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for m in NAME.finditer(line):
                out.setdefault(m.group(0), []).append(f"{rel}:{i}")
    return out


def _has_field(cls: type, attr: str) -> bool:
    """A declared field without a class-level value (dataclass field without default, annotation)."""
    if dataclasses.is_dataclass(cls) and any(f.name == attr for f in dataclasses.fields(cls)):
        return True
    if attr in getattr(cls, "model_fields", {}):  # pydantic
        return True
    return any(attr in getattr(k, "__annotations__", {}) for k in getattr(cls, "__mro__", ()))


@lru_cache(maxsize=None)
def _module(name: str):
    """(module, None) if `name` is an importable module, (None, None) if there is no such module,
    (None, reason) if the module exists but fails to import."""
    if name.rsplit(".", 1)[-1] == "__main__":  # never run a __main__; it exists if it can be found
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        return (NOT_RUN, None) if found else (None, None)
    try:
        return importlib.import_module(name), None
    except ModuleNotFoundError as e:
        if e.name and (name == e.name or name.startswith(e.name + ".")):
            return None, None  # `name` (or a parent of it) is not a module: try a shorter prefix
        return None, f"importing {name} failed: {type(e).__name__}: {e}"
    except Exception as e:  # noqa: BLE001 - reported as a failure, with the reason
        return None, f"importing {name} failed: {type(e).__name__}: {e}"


def resolve(name: str) -> str | None:
    """None if `name` resolves, else why not."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        mod, err = _module(prefix)
        if err:
            return err
        if mod is None:
            continue
        obj, where = mod, prefix
        for attr in parts[n:]:
            if obj is NOT_RUN:
                return f"{where} is a __main__ module (not imported), cannot look up {attr}"
            try:
                obj = getattr(obj, attr)
            except AttributeError:
                if isinstance(obj, type) and _has_field(obj, attr) and attr == parts[-1]:
                    return None
                return f"{where} has no submodule or attribute {attr!r}"
            where = f"{where}.{attr}"
        return None
    return "no such module"


def test_every_rl_prm_name_in_docs_and_comments_resolves():
    occ = _occurrences()
    assert occ, "no rl_prm names found: the scan is broken"
    stale = []
    for name in sorted(occ):
        if name in ALLOWED:
            continue
        why = resolve(name)
        if why:
            stale += [f"{loc} -> {name} ({why})" for loc in occ[name]]
    assert not stale, f"{len(stale)} stale rl_prm name(s) (point them at where the object lives now):\n" + "\n".join(stale)


def test_allow_list_stays_minimal():
    """An allowed name is still written somewhere and still does not resolve (else drop it)."""
    occ = _occurrences()
    unused = [n for n in ALLOWED if n not in occ]
    resolvable = [n for n in ALLOWED if resolve(n) is None]
    assert not unused, f"ALLOWED names no longer written anywhere: {unused}"
    assert not resolvable, f"ALLOWED names that now resolve (remove them from ALLOWED): {resolvable}"


def test_resolver_tells_stale_from_live():
    assert resolve("rl_prm.credit.StepBatch.from_spans") is None  # class attribute
    assert resolve("rl_prm.credit") is None  # package
    assert resolve("rl_prm.world.no_such_module") is not None
    assert resolve("rl_prm.credit.NoSuchName") is not None
    assert resolve("rl_prm.credit.StepBatch.no_such_attr") is not None
    assert [m.group(0) for m in NAME.finditer("see rl_prm.credit.StepBatch. and my_rl_prm.x, rl_prm.a.b()")] == [
        "rl_prm.credit.StepBatch", "rl_prm.a.b"]
