from __future__ import annotations

from datetime import timedelta

import pytest

from membersync.errors import DuplicateSyncProvider, ProviderDeclarationError, ProviderNotFound
from membersync.models import Tenant
from membersync.provider.base import BaseSyncProvider
from membersync.provider.registry import ProviderRegistry
from membersync.testing import FakeSyncProvider


class Alpha(BaseSyncProvider):
    name = "alpha"


class AlsoAlpha(BaseSyncProvider):
    name = "alpha"


def test_registering_the_same_class_twice_is_harmless() -> None:
    registry = ProviderRegistry()
    registry.register(Alpha)
    registry.register(Alpha)
    assert [provider.name for provider in registry.all()] == ["alpha"]


def test_two_classes_with_one_name_raise_naming_both() -> None:
    registry = ProviderRegistry()
    registry.register(Alpha)
    with pytest.raises(DuplicateSyncProvider, match=r"Alpha.*AlsoAlpha"):
        registry.register(AlsoAlpha)


@pytest.mark.parametrize(
    ("provider", "field"),
    [
        (FakeSyncProvider(""), "name"),
        (FakeSyncProvider("Bad-Name"), "name"),
        (FakeSyncProvider("x" * 65), "name"),
        (FakeSyncProvider("ok", refresh=timedelta(0)), "refresh_interval"),
        (FakeSyncProvider("ok", refresh=timedelta(seconds=-1)), "refresh_interval"),
        (FakeSyncProvider("ok", login_age=timedelta(0)), "max_age_on_login"),
    ],
)
def test_bad_declarations_are_refused_naming_provider_and_field(provider: FakeSyncProvider, field: str) -> None:
    with pytest.raises(ProviderDeclarationError, match=rf"FakeSyncProvider\): {field} "):
        ProviderRegistry().register(provider)


def test_a_refresh_interval_that_is_not_a_timedelta_is_refused() -> None:
    provider = FakeSyncProvider("ok")
    provider.refresh_interval = 3600  # type: ignore[assignment]
    with pytest.raises(ProviderDeclarationError, match="refresh_interval must be a positive timedelta"):
        ProviderRegistry().register(provider)


def test_available_for_tenant_skips_gated_providers() -> None:
    registry = ProviderRegistry()
    registry.register(FakeSyncProvider("on"))
    registry.register(FakeSyncProvider("off", available_for_tenant=False))
    tenant = Tenant(id=1, slug="t", name="t")
    assert [provider.name for provider in registry.available_for_tenant(tenant)] == ["on"]


def test_unknown_provider_names_the_known_ones() -> None:
    registry = ProviderRegistry()
    registry.register(Alpha)
    with pytest.raises(ProviderNotFound, match=r"'beta' \(known: alpha\)"):
        registry.get("beta")


def test_base_defaults_follow_the_seed() -> None:
    provider = Alpha()
    assert provider.max_age_on_login is None
    assert provider.is_available_for_tenant(Tenant(id=1, slug="t", name="t"))
