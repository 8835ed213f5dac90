"""Error types. Each carries the HTTP status it maps to; its docstring is the default message."""

from __future__ import annotations


class MembersyncError(Exception):
    """Something went wrong in membersync."""

    status_code = 500

    def __init__(self, message: str | None = None) -> None:
        self.message = message or (self.__doc__ or type(self).__name__).strip()
        super().__init__(self.message)


class NotFound(MembersyncError):
    """Not found."""

    status_code = 404


class MemberNotFound(NotFound):
    """Member not found."""


class TenantNotFound(NotFound):
    """Tenant not found."""


class ProviderNotFound(NotFound):
    """Sync provider not found."""


class Conflict(MembersyncError):
    """The request conflicts with the current state."""

    status_code = 409


class TenantExists(Conflict):
    """A tenant with this slug already exists."""


class InvalidInput(MembersyncError):
    """Invalid input."""

    status_code = 422


class Unauthorized(MembersyncError):
    """Missing or invalid API token."""

    status_code = 401


class ProviderDeclarationError(MembersyncError):
    """A sync provider is declared wrongly."""


class DuplicateSyncProvider(MembersyncError):
    """Two different provider classes share one name."""


class PluginError(MembersyncError):
    """A plug-in failed to load."""


class DatabaseNotMigrated(MembersyncError):
    """The database schema is not up to date: run `membersync db upgrade`."""


class LockNotAcquired(MembersyncError):
    """The lock is held elsewhere and was not released in time."""
