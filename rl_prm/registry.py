"""A tiny decorator registry (verl's `register_adv_est` style), used for every pluggable mode.

A registry made with plugins=True also holds what plugin packages register: the modules named in the
entry-point group PLUGIN_GROUP ("rl_prm.plugins", pyproject.toml [project.entry-points."rl_prm.plugins"])
are imported on the first lookup of a name the registry does not hold (or on names()); each registers
its names when imported. The miniature world (rl_prm.world.plugin) is one: its task and its models.
"""

from __future__ import annotations

from importlib import metadata
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> object table filled with a decorator.

    >>> MODES = Registry("credit mode")
    >>> @MODES.register("sum")
    ... def _sum(x): return x
    >>> MODES.get("sum") is _sum
    True
    """

    def __init__(self, kind: str, plugins: bool = False):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._plugins = plugins

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        if name not in self._items:
            self._load_plugins()
        try:
            return self._items[name]
        except KeyError:
            hint = (f" (plugins register through the {PLUGIN_GROUP!r} entry points: after updating rl-prm, "
                    "reinstall it, e.g. `pip install -e .`)" if self._plugins else "")
            raise ValueError(
                f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._items)) or '(none)'}{hint}"
            ) from None

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        if name not in self._items:
            self._load_plugins()
        return name in self._items

    def _load_plugins(self) -> None:
        if self._plugins:
            load_plugins()


PLUGIN_GROUP = "rl_prm.plugins"
_loaded = False


def load_plugins() -> None:
    """Import every module of the PLUGIN_GROUP entry points, once per process."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for ep in metadata.entry_points(group=PLUGIN_GROUP):
        ep.load()
