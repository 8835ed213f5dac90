"""Conditions on a tracked model, to use inside other queries: `select(Member).where(needs_sync(...))`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, String, and_, cast, exists
from sqlalchemy.orm import aliased

from membersync.models import ExternalLink
from membersync.tracker.entities import EntityType, TrackerRegistry


def _entity_type(registry: TrackerRegistry, model: type[Any]) -> EntityType:
    for entity_type in registry.types.values():
        if entity_type.model is model:
            return entity_type
    raise ValueError(f"{model.__name__} is not a registered entity type")


def _link_of(registry: TrackerRegistry, model: type[Any], source: str | None) -> tuple[Any, list[ColumnElement[bool]]]:
    entity_type = _entity_type(registry, model)
    link = aliased(ExternalLink)
    on = [
        link.tenant_id == getattr(model, entity_type.tenant_attribute),
        link.entity_type == entity_type.name,
        link.entity_id == cast(getattr(model, entity_type.id_attribute), String),
    ]
    if source is not None:
        on.append(link.source == registry.check_source(source))
    return link, on


def synced_with(registry: TrackerRegistry, model: type[Any], source: str) -> ColumnElement[bool]:
    """Entities with a live, synced link in `source`."""
    link, on = _link_of(registry, model, source)
    return exists().where(*on, link.status == "synced", link.deleted_at.is_(None))


def needs_sync(registry: TrackerRegistry, model: type[Any], source: str) -> ColumnElement[bool]:
    """Entities never synced with `source`, pending or failed there, or changed locally since their last sync,
    as the entity type's `TrackOptions` say."""
    options = _entity_type(registry, model).options
    link, on = _link_of(registry, model, source)
    fresh = [link.status == "synced", link.deleted_at.is_(None)]
    updated_at = getattr(model, "updated_at", None)
    if updated_at is not None and options.track_updated:
        fresh.append(link.synced_at >= updated_at)
    stale = ~exists().where(*on, and_(*fresh))
    if options.track_created:
        return stale
    _, linked = _link_of(registry, model, source)
    return and_(exists().where(*linked), stale)


def failed_in(
    registry: TrackerRegistry, model: type[Any], source: str | None = None, min_retries: int = 1
) -> ColumnElement[bool]:
    """Entities whose last sync with `source` (any source when None) failed, at least `min_retries` times."""
    link, on = _link_of(registry, model, source)
    return exists().where(*on, link.status == "failed", link.retry_count >= min_retries)
