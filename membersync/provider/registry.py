"""The provider registry: idempotent registration, duplicate names refused, declarations checked."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from membersync.clock import Clock
from membersync.errors import DuplicateSyncProvider, ProviderDeclarationError, ProviderNotFound
from membersync.models import Tenant
from membersync.provider.base import SyncProvider

NAME_PATTERN = re.compile(r"^[a-z0-9_]{1,64}$")


def _label(provider: object) -> str:
    cls = type(provider)
    return f"{cls.__module__}.{cls.__qualname__}"


def _refuse(provider: object, field: str, problem: str) -> ProviderDeclarationError:
    name = getattr(provider, "name", None)
    return ProviderDeclarationError(f"sync provider {name!r} ({_label(provider)}): {field} {problem}")


def validate_provider(provider: object) -> None:
    """Raise `ProviderDeclarationError` naming the provider and the field when a declaration is wrong."""
    name = getattr(provider, "name", None)
    if not isinstance(name, str) or not name:
        raise _refuse(provider, "name", "must be a non-empty string")
    if not NAME_PATTERN.match(name):
        raise _refuse(provider, "name", "must match [a-z0-9_] and be at most 64 characters")
    interval = getattr(provider, "refresh_interval", None)
    if not isinstance(interval, timedelta) or interval <= timedelta(0):
        raise _refuse(provider, "refresh_interval", f"must be a positive timedelta, got {interval!r}")
    login_age = getattr(provider, "max_age_on_login", None)
    if login_age is not None and (not isinstance(login_age, timedelta) or login_age <= timedelta(0)):
        raise _refuse(provider, "max_age_on_login", f"must be None or a positive timedelta, got {login_age!r}")
    for method in ("members_to_sync", "is_available_for_tenant", "sync"):
        if not callable(getattr(provider, method, None)):
            raise _refuse(provider, method, "must be a method")


class ProviderRegistry:
    def __init__(self, clock: Clock | None = None) -> None:
        self._providers: dict[str, SyncProvider] = {}
        self._clock = clock

    def register(self, provider: type[Any] | SyncProvider) -> SyncProvider:
        """Register a provider class (instantiated without arguments) or a configured instance.

        Registering the same class again replaces its instance and is otherwise harmless; a different
        class under a name already taken raises `DuplicateSyncProvider`.
        """
        instance: Any = provider() if isinstance(provider, type) else provider
        validate_provider(instance)
        existing = self._providers.get(instance.name)
        if existing is not None and type(existing) is not type(instance):
            raise DuplicateSyncProvider(
                f"sync provider name {instance.name!r} is taken by {_label(existing)}; "
                f"{_label(instance)} cannot register under it"
            )
        if self._clock is not None and hasattr(instance, "clock"):
            instance.clock = self._clock
        self._providers[instance.name] = instance
        return instance  # type: ignore[no-any-return]

    def get(self, name: str) -> SyncProvider:
        try:
            return self._providers[name]
        except KeyError:
            known = ", ".join(sorted(self._providers)) or "none registered"
            raise ProviderNotFound(f"unknown sync provider {name!r} (known: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._providers

    def __len__(self) -> int:
        return len(self._providers)

    def all(self) -> list[SyncProvider]:
        return [self._providers[name] for name in sorted(self._providers)]

    def available_for_tenant(self, tenant: Tenant) -> list[SyncProvider]:
        return [provider for provider in self.all() if provider.is_available_for_tenant(tenant)]

    def clear(self) -> None:
        self._providers.clear()
