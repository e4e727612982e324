"""Pass names -> pass classes, filled lazily from the entry-point group ``optllm.plugins``.

Every entry point of the group names an object mapping pass names to zero-argument loaders
that return the pass class (or to the class itself)::

    # pyproject.toml of a plugin
    [project.entry-points."optllm.plugins"]
    my_plugin = "my_plugin:PASSES"

    # my_plugin/__init__.py
    PASSES = {"my-pass": lambda: __import__("my_plugin.passes").passes.MyPass}

Built-in passes register the same way (``builtin = "optllm.passes.builtin:PASSES"``), so the
plugin path is exercised by every run. Loaders run only when a pass is used: listing names
imports no pass module, and a broken plugin fails only when one of its passes is asked for.
``load_plugin(path_or_module)`` adds a ``.py`` file or an importable module that defines
``PASSES`` the same way or registers classes with ``@register_pass``. Two sources giving the
same name is an error naming both.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from optllm.ir.diagnostics import OptllmError
from optllm.ir.ops import declared_in
from optllm.passes.base import Pass

GROUP = "optllm.plugins"
PassLoader = Callable[[], "type[Pass]"]
_NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*\Z")


class RegistryError(OptllmError):
    """Two sources claiming one pass name, or a malformed registration."""


class PluginError(RegistryError):
    """A plugin (file, module or entry point) that cannot be loaded."""


class UnknownPassError(RegistryError):
    """A pass name no source registers; carries close matches for the message."""

    def __init__(self, name: str, suggestions: list[str], notes: list[str]) -> None:
        self.name = name
        self.suggestions = suggestions
        hint = f" (did you mean {', '.join(repr(s) for s in suggestions)}?)" if suggestions else ""
        msg = f"unknown pass '{name}'{hint}; `opt-llm --list-passes` lists the available passes"
        super().__init__("\n".join([msg, *notes]))


class EntryPointLike(Protocol):
    name: str
    value: str

    def load(self) -> Any: ...


@dataclass
class _Entry:
    loader: PassLoader
    source: str
    origin: Any = None  # the object the plugin listed (a loader or a class): the same object
    cls: type[Pass] | None = None  # listed again through another route is not a clash


def _installed_entry_points() -> list[EntryPointLike]:
    return list(importlib.metadata.entry_points(group=GROUP))


def _entry_point_source(ep: EntryPointLike) -> str:
    dist = getattr(ep, "dist", None)
    owner = f" of the distribution '{dist.name}'" if dist is not None else ""
    return f"entry point '{ep.name} = {ep.value}'{owner}"


def _as_loader(value: Any, name: str, source: str) -> PassLoader:
    if isinstance(value, type) and issubclass(value, Pass):
        return lambda: value
    if not callable(value):
        raise PluginError(f"{source}: the entry for pass '{name}' is neither a loader nor a Pass class")
    return value  # type: ignore[no-any-return]


def _check_class(cls: Any, name: str, source: str) -> type[Pass]:
    if not (isinstance(cls, type) and issubclass(cls, Pass)):
        raise PluginError(f"{source}: the loader of pass '{name}' returned {cls!r}, not a Pass subclass")
    if cls.name != name:
        raise PluginError(f"{source}: pass '{name}' is registered with a class named '{cls.name}'")
    params = cls.__dict__.get("__dataclass_params__")  # the class itself must be decorated
    if params is None or not params.frozen:
        raise PluginError(f"{source}: pass class {cls.__qualname__} must be a @dataclass(frozen=True)")
    return cls


class PassRegistry:
    """Pass names from entry points plus explicit registrations and loaded plugin files."""

    def __init__(self, entry_points: Callable[[], Iterable[EntryPointLike]] = _installed_entry_points) -> None:
        self._entry_points = entry_points
        self._entries: dict[str, _Entry] = {}
        self._clashes: dict[str, list[str]] = {}
        self._broken: list[str] = []
        self._plugins: dict[str, list[str]] = {}
        self._discovered = False

    # -- filling --------------------------------------------------------------------------------
    def discover(self) -> None:
        """Read the ``optllm.plugins`` entry points once (their objects, not the passes)."""
        if self._discovered:
            return
        self._discovered = True
        seen: set[tuple[str, str]] = set()
        for ep in self._entry_points():
            if (ep.name, ep.value) in seen:  # one distribution visible twice on sys.path
                continue
            seen.add((ep.name, ep.value))
            source = _entry_point_source(ep)
            try:
                table = ep.load()
                if not isinstance(table, Mapping):
                    raise PluginError(f"it names {type(table).__name__}, not a mapping of pass names to loaders")
                for name, value in table.items():
                    self.add(name, _as_loader(value, name, source), source, strict=False, origin=value)
            except Exception as e:  # a broken plugin must not break the others
                self._broken.append(f"{source} failed to load: {type(e).__name__}: {e}")

    def add(self, name: str, loader: PassLoader, source: str, *, strict: bool = True, origin: Any = None) -> None:
        """Register ``name``; a clash with another source raises (``strict``) or is recorded."""
        if not _NAME.match(name):
            raise RegistryError(f"{source}: pass name '{name}' is not kebab-case (like 'fold-residual')")
        origin = loader if origin is None else origin
        old = self._entries.get(name)
        if old is not None and old.origin is origin:
            return
        if old is not None and old.source != source:
            if strict:
                raise RegistryError(f"pass '{name}' is registered twice: by {old.source} and by {source}")
            self._clashes.setdefault(name, [old.source]).append(source)
            return
        self._entries[name] = _Entry(loader, source, origin)

    def register(self, cls: type[Pass], source: str | None = None) -> type[Pass]:
        """Register a pass class under ``cls.name`` (usable as a class decorator)."""
        self.discover()
        where = source or f"{cls.__module__}.{cls.__qualname__} ({declared_in(cls)})"
        name = cls.name
        _check_class(cls, name, where)
        self.add(name, lambda: cls, where, origin=cls)
        return cls

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)
        self._clashes.pop(name, None)

    # -- lookup ---------------------------------------------------------------------------------
    def names(self) -> list[str]:
        self.discover()
        return sorted(self._entries)

    def source(self, name: str) -> str:
        self.discover()
        return self._entries[name].source if name in self._entries else "?"

    def __contains__(self, name: object) -> bool:
        self.discover()
        return name in self._entries

    @property
    def broken(self) -> list[str]:
        """Messages for entry points whose object could not be loaded."""
        self.discover()
        return list(self._broken)

    def get(self, name: str) -> type[Pass]:
        """The pass class for ``name``, loading its plugin on first use."""
        self.discover()
        if name in self._clashes:
            raise RegistryError(f"pass '{name}' is registered twice: by {' and by '.join(self._clashes[name])}")
        entry = self._entries.get(name)
        if entry is None:
            close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.6)
            raise UnknownPassError(name, close, self._broken)
        if entry.cls is None:
            try:
                cls = entry.loader()
            except Exception as e:
                raise PluginError(f"pass '{name}' from {entry.source} failed to load: "
                                  f"{type(e).__name__}: {e}") from e
            entry.cls = _check_class(cls, name, entry.source)
        return entry.cls

    # -- plugins ----------------------------------------------------------------------------------
    def load_plugin(self, path_or_module: str) -> list[str]:
        """Import a plugin ``.py`` file or module; return the pass names it added (sorted)."""
        self.discover()
        is_file = path_or_module.endswith(".py") or "/" in path_or_module or Path(path_or_module).is_file()
        key = str(Path(path_or_module).resolve()) if is_file else path_or_module
        if key in self._plugins:
            return list(self._plugins[key])
        before = set(self._entries)
        module = _import_file(Path(path_or_module)) if is_file else _import_module(path_or_module)
        source = f"plugin {path_or_module}"
        table = getattr(module, "PASSES", {})
        if not isinstance(table, Mapping):
            raise PluginError(f"{source}: PASSES must map pass names to loaders, got {type(table).__name__}")
        for name, value in table.items():
            self.add(name, _as_loader(value, name, source), source, origin=value)
        names = sorted(set(self._entries) - before)
        self._plugins[key] = names
        return names


def _import_file(path: Path) -> Any:
    if not path.is_file():
        raise PluginError(f"plugin file '{path}' does not exist")
    mod_name = f"optllm_plugin_{re.sub(r'[^0-9A-Za-z_]', '_', path.stem)}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"cannot import plugin file '{path}'")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except OptllmError:
        sys.modules.pop(mod_name, None)
        raise
    except Exception as e:
        sys.modules.pop(mod_name, None)
        raise PluginError(f"plugin file '{path}' failed to load: {type(e).__name__}: {e}") from e
    return module


def _import_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except OptllmError:
        raise
    except Exception as e:
        raise PluginError(f"plugin module '{name}' failed to load: {type(e).__name__}: {e}") from e


REGISTRY = PassRegistry()


def register_pass(cls: type[Pass]) -> type[Pass]:
    """Class decorator: register a pass in the default registry (for plugin files and tests)."""
    return REGISTRY.register(cls)


def get_pass(name: str) -> type[Pass]:
    return REGISTRY.get(name)


def pass_names() -> list[str]:
    return REGISTRY.names()


def load_plugin(path_or_module: str) -> list[str]:
    """Load a pass plugin (``.py`` file or module name) into the default registry."""
    return REGISTRY.load_plugin(path_or_module)
