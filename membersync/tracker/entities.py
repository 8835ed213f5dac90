"""Tracked entity types and sources: members are built in; a host application registers its own tables."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, Subquery

from membersync.errors import InvalidInput
from membersync.models import Member

LOCAL_SOURCE = "local"
NAME_PATTERN = re.compile(r"^[a-z0-9_]{1,64}$")


@dataclass(frozen=True)
class EntityRef:
    """A local entity, by type, id and tenant: what the tracker links to external records."""

    entity_type: str
    entity_id: str
    tenant_id: int


@dataclass(frozen=True)
class LinkedRecord:
    """The entity an external record is linked to, and the fingerprint of that record as last applied."""

    entity: EntityRef
    fingerprint: str | None


@dataclass(frozen=True)
class TrackOptions:
    """Which local events of an entity type the tracker follows (the seed's track_created/updated/deleted).

    - `track_created`: an entity never linked with a source counts as needing sync to it (local creations
      go upstream); off, only entities already linked there are considered.
    - `track_updated`: an entity whose `updated_at` is later than its link's `synced_at` needs sync again;
      off, local edits are left to `mark_pending`.
    - `track_deleted`: `Tracker.entity_deleted` stamps `deleted_at` on the entity's links and fires
      `link_deleted`; off, its links are left as they are.

    Deletions seen in a source (`mark_deleted`) are always recorded.
    """

    track_created: bool = True
    track_updated: bool = True
    track_deleted: bool = True


@dataclass(frozen=True)
class EntityType:
    name: str
    model: type[Any]
    id_attribute: str = "id"
    tenant_attribute: str = "tenant_id"
    options: TrackOptions = TrackOptions()


@dataclass
class TrackerRegistry:
    """Entity types by model and by name, and the source names links may use."""

    types: dict[str, EntityType] = field(default_factory=dict)
    sources: set[str] = field(default_factory=set)
    # More source names known elsewhere (the sync providers' names), looked up when checked.
    known_sources: Callable[[], Iterable[str]] | None = None

    def all_sources(self) -> set[str]:
        return self.sources | set(self.known_sources() if self.known_sources is not None else ())

    def register_entity(self, model: type[Any], name: str, **kwargs: Any) -> EntityType:
        check_name("entity_type", name)
        entity_type = EntityType(name=name, model=model, **kwargs)
        self.types[name] = entity_type
        return entity_type

    def register_source(self, name: str) -> None:
        check_name("source", name)
        self.sources.add(name)

    def ref(self, entity: Any) -> EntityRef:
        """An `EntityRef` for a registered model instance (or the ref itself)."""
        if isinstance(entity, EntityRef):
            self.entity_type(entity.entity_type)
            return entity
        for entity_type in self.types.values():
            if isinstance(entity, entity_type.model):
                entity_id = getattr(entity, entity_type.id_attribute)
                tenant_id = getattr(entity, entity_type.tenant_attribute)
                return EntityRef(entity_type.name, str(entity_id), int(tenant_id))
        raise InvalidInput(f"entity: {type(entity).__name__} is not a registered entity type")

    def entity_type(self, name: str) -> EntityType:
        if name not in self.types:
            raise InvalidInput(f"entity_type: unknown entity type {name!r}")
        return self.types[name]

    def check_source(self, source: str) -> str:
        sources = self.all_sources()
        if source not in sources:
            known = ", ".join(sorted(sources)) or "none registered"
            raise InvalidInput(f"source: unknown source {source!r} (known: {known})")
        return source


def check_name(field_name: str, value: str) -> str:
    if not NAME_PATTERN.match(value or ""):
        raise InvalidInput(f"{field_name}: {value!r} must be 1-64 characters of a-z, 0-9 and '_'")
    return value


def default_registry(known_sources: Callable[[], Iterable[str]] | None = None) -> TrackerRegistry:
    registry = TrackerRegistry(known_sources=known_sources)
    registry.register_entity(Member, "member")
    # Edits made in membersync itself (the API, a reviewer) are a source like any other.
    registry.register_source(LOCAL_SOURCE)
    return registry


@dataclass(frozen=True)
class SelectedLinks:
    """The links of one source a query names, for `mark_synced_selected`: `rows` yields (entity id, external
    id) of entities of `entity_type` in tenant `tenant_id`."""

    tenant_id: int
    source: str
    entity_type: str
    rows: Select[str, str]

    def pairs(self) -> Subquery:
        return self.rows.subquery("selected")
