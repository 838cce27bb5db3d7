"""The layers a newcomer can see: the stages, backends and verl glue never import the miniature world (a
plugin) or the CLI, and no two rl_prm modules import each other in a cycle. Read from the source (AST)."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "rl_prm"
# the layers below the world and the CLI (module path prefixes, relative to rl_prm/)
LOWER = ("backends", "data", "models.py", "score", "credit", "update.py", "verl_ext", "eval", "metrics", "tasks.py",
         "generate.py", "steps.py", "registry.py", "config", "schema.py", "tracking", "checkpoint.py")
UPPER = ("rl_prm.world", "rl_prm.commands", "rl_prm.cli", "rl_prm.bench")


def _module(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every rl_prm module a file imports, at any depth (function-level imports included)."""
    out = set()
    mod = _module(path)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("rl_prm")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                pkg = mod.split(".")[: len(mod.split(".")) - node.level + (1 if path.name == "__init__.py" else 0)]
                base = ".".join(pkg + ([base] if base else []))
            if base.startswith("rl_prm"):
                out.add(base)
                out |= {f"{base}.{a.name}" for a in node.names}
    return out


def _files():
    return [p for p in PKG.rglob("*.py") if "shipped" not in p.parts]


def test_lower_layers_never_import_the_world_or_the_cli():
    bad = []
    for p in _files():
        rel = p.relative_to(PKG).as_posix()
        if not rel.startswith(LOWER):
            continue
        for name in sorted(_imports(p)):
            if name.startswith(UPPER):
                bad.append(f"rl_prm/{rel} imports {name}")
    assert not bad, "\n".join(bad)


def test_no_import_cycle_between_rl_prm_modules():
    modules = {_module(p): p for p in _files()}
    graph = {m: {n for n in _imports(p) if n in modules and n != m} for m, p in modules.items()}
    # a package's __init__ importing its own submodules is how it re-exports them: not a cycle
    graph = {m: {n for n in deps if not n.startswith(m + ".")} for m, deps in graph.items()}
    seen, stack, on_stack, cycles = {}, [], set(), []

    def visit(m: str) -> None:  # Tarjan's strongly connected components
        seen[m] = low = len(seen)
        low_of[m] = low
        stack.append(m)
        on_stack.add(m)
        for n in graph[m]:
            if n not in seen:
                visit(n)
                low_of[m] = min(low_of[m], low_of[n])
            elif n in on_stack:
                low_of[m] = min(low_of[m], seen[n])
        if low_of[m] == seen[m]:
            comp = []
            while True:
                n = stack.pop()
                on_stack.discard(n)
                comp.append(n)
                if n == m:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    low_of: dict[str, int] = {}
    for m in sorted(graph):
        if m not in seen:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)
