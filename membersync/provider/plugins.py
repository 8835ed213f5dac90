"""Loading a deployment's own providers: the `membersync.plugins` entry points and `MEMBERSYNC_PLUGINS`."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from membersync.errors import MembersyncError, PluginError
from membersync.provider.registry import ProviderRegistry

ENTRY_POINT_GROUP = "membersync.plugins"


@dataclass(frozen=True)
class LoadedPlugin:
    path: str
    origin: str
    provides: str


def _import(path: str) -> Any:
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise PluginError(f"plugin {path!r}: expected 'package.module:name'")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise PluginError(f"plugin {path!r} failed to import: {error}") from error


def _is_provider(target: Any) -> bool:
    return hasattr(target, "name") and hasattr(target, "sync") and hasattr(target, "refresh_interval")


def _install(path: str, origin: str, target: Any, registry: ProviderRegistry) -> LoadedPlugin:
    try:
        if _is_provider(target):
            provider = registry.register(target)
            return LoadedPlugin(path, origin, f"sync provider {provider.name!r}")
        if callable(target):
            register: Callable[[ProviderRegistry], Any] = target
            register(registry)
            return LoadedPlugin(path, origin, "registration function")
    except MembersyncError as error:
        raise PluginError(f"plugin {path!r}: {error}") from error
    raise PluginError(f"plugin {path!r}: not a sync provider nor a function taking the provider registry")


def load_plugins(registry: ProviderRegistry, paths: list[str]) -> list[LoadedPlugin]:
    """Register every plug-in; the first that fails raises `PluginError` naming it and the reason."""
    loaded = []
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            target = entry.load()
        except Exception as error:
            raise PluginError(f"plugin {entry.value!r} (entry point {entry.name!r}) failed to load: {error}") from error
        loaded.append(_install(entry.value, f"entry point {entry.name}", target, registry))
    for path in paths:
        loaded.append(_install(path, "MEMBERSYNC_PLUGINS", _import(path), registry))
    return loaded
