"""Run code right after a given module is imported (whoever imports it, whenever).

    on_import("verl.trainer.ppo.v1", fn)   # fn(module) now if imported, else right after its import

rl_prm's verl plugin is imported in every verl process (Ray actors, vLLM workers); registrations or
patches that need a heavy module (vLLM's layers, verl's v1 trainer, the FSDP engine) hang on that
module's import instead of importing it in every process.
"""

from __future__ import annotations

import importlib.abc
import sys
from typing import Any, Callable

_ON_IMPORT: dict[str, list[Callable[[Any], None]]] = {}


class _AfterImport(importlib.abc.MetaPathFinder):
    """Wraps the loader of a watched module so the registered functions run after it executes."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in _ON_IMPORT:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is None or spec.loader is None:
                continue
            exec_module = spec.loader.exec_module

            def exec_and_run(module, _exec=exec_module, _name=fullname):
                _exec(module)
                for fn in _ON_IMPORT.get(_name, []):
                    fn(module)

            try:
                spec.loader.exec_module = exec_and_run  # a per-spec loader object (SourceFileLoader)
            except AttributeError:  # pragma: no cover - read-only loader: nothing we can do
                return None
            return spec
        return None


def on_import(module: str, fn: Callable[[Any], None]) -> None:
    """fn(module) now if `module` is already imported, else right after it is imported."""
    if module in sys.modules:
        fn(sys.modules[module])
        return
    _ON_IMPORT.setdefault(module, []).append(fn)
    if not any(isinstance(f, _AfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport())


__all__ = ["on_import"]
