"""Sync providers: the contract a provider author implements, its registry and its context."""

from membersync.provider.base import BaseSyncProvider, SyncProvider
from membersync.provider.context import SyncContext
from membersync.provider.registry import ProviderRegistry

__all__ = ["BaseSyncProvider", "ProviderRegistry", "SyncContext", "SyncProvider"]
