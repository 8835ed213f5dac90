"""A record sent again as it was last applied is recognised by its fingerprint and skipped; anything that
could change what it does (new values or times, other settings, a merge, a failed or re-synced link) applies
it again. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from membersync.identity.fingerprint import fingerprint_of, options_digest
from membersync.identity.schemas import MappedRecord
from membersync.identity.settings import IdentityOptions, options_from
from membersync.models import AuditEntry, ExternalLink, Member, SyncOperation, Tenant
from membersync.runtime import Runtime
from membersync.tracker.entities import EntityRef
from tests.factories import RECORDS_T0 as T0
from tests.factories import apply_page as _apply
from tests.factories import make_tenant
from tests.factories import mapped_record as _record

DIGEST = options_digest(IdentityOptions())


async def tenant(runtime: Runtime) -> Tenant:
    runtime.tracker.registry.register_source("crm")
    runtime.tracker.registry.register_source("patreon")
    return await make_tenant(runtime)


async def _fingerprints(runtime: Runtime) -> dict[str, str | None]:
    async with runtime.database.read_sessions() as session:
        links = (await session.scalars(select(ExternalLink))).all()
    return {f"{link.source}:{link.external_id}": link.fingerprint for link in links}


async def _audit_count(runtime: Runtime) -> int:
    async with runtime.database.read_sessions() as session:
        return len((await session.scalars(select(AuditEntry))).all())


def test_a_fingerprint_ignores_key_order_and_follows_values_times_and_settings() -> None:
    one = _record("C-1", email="ada@example.org", given_name="Ada")
    same = MappedRecord(values={"given_name": "Ada", "email": "ada@example.org"}, external_id="C-1", changed_at=T0)
    assert fingerprint_of(one, DIGEST) == fingerprint_of(same, DIGEST)
    others = [
        _record("C-1", email="ada@example.org", given_name="Adah"),
        _record("C-1", minutes=1, email="ada@example.org", given_name="Ada"),
        _record("C-2", email="ada@example.org", given_name="Ada"),
        MappedRecord(values=one.values, external_id="C-1", changed_at=T0, field_changed_at={"email": T0}),
    ]
    assert len({fingerprint_of(record, DIGEST) for record in [one, *others]}) == 5
    stricter = options_digest(options_from({"policies": {"fields": {"given_name": "manual"}}}))
    assert fingerprint_of(one, stricter) != fingerprint_of(one, DIGEST)


def test_a_fingerprint_is_the_same_text_from_release_to_release() -> None:
    """A changed digest would make every stored record look new once: any change to it must be deliberate (and
    bump FINGERPRINT_VERSION)."""
    record = MappedRecord(
        values={"email": "Zoë@example.org", "n": 1.5, "t": datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=2)))},
        external_id="C-1",
        changed_at=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        field_changed_at={"email": datetime(2026, 1, 1)},
    )
    assert fingerprint_of(record, "opt") == "32f348268726de3c3eb6c97363ddf592"


def test_values_without_a_stable_text_form_are_never_fingerprinted() -> None:
    def attributes(**values: Any) -> MappedRecord:
        return MappedRecord({f"attributes.{key}": value for key, value in values.items()}, "C-1", T0)

    assert fingerprint_of(attributes(x=object()), DIGEST) is None
    assert fingerprint_of(attributes(x={1: "a", "b": 2}), DIGEST) is None
    looped: list[Any] = []
    looped.append(looped)
    assert fingerprint_of(attributes(x=looped), DIGEST) is None
    stable = attributes(x=Decimal("1.50"), y={"b", "a"})
    assert fingerprint_of(stable, DIGEST) == fingerprint_of(stable, DIGEST) is not None


async def test_the_same_record_again_is_unchanged_without_writing(runtime: Runtime, tenant: Tenant) -> None:
    page = [
        _record("C-1", email="ada@example.org", given_name="Ada", phone="+442079460018"),
        _record("C-2", email="grace@example.org", given_name="Grace"),
    ]
    first = await _apply(runtime, tenant, page)
    stored = await _fingerprints(runtime)
    assert all(stored.values())
    audit = await _audit_count(runtime)
    again = await _apply(runtime, tenant, [page[1], _record("C-3", email="alan@example.org"), page[0]])
    assert (again.created, again.updated, again.unchanged) == (1, 0, 2)
    assert again.member_ids[0] == first.member_ids[1]
    assert again.member_ids[2] == first.member_ids[0]
    assert again.member_ids[1] not in first.member_ids
    assert await _audit_count(runtime) == audit + 1  # only the new member
    assert (await _fingerprints(runtime))["crm:C-1"] == stored["crm:C-1"]
    async with runtime.database.read_sessions() as session:
        operation = await session.get(SyncOperation, again.operation_id)
    assert operation is not None
    assert operation.details is not None
    assert operation.details["counts"]["unchanged"] == 2


async def test_a_resent_record_does_not_undo_a_later_local_edit(runtime: Runtime, tenant: Tenant) -> None:
    record = _record("C-1", email="ada@example.org", given_name="Ada")
    await _apply(runtime, tenant, [record])
    local = MappedRecord(values={"email": "ada@example.org", "given_name": "Augusta"}, changed_at=T0 + timedelta(1))
    edited = await _apply(runtime, tenant, [local], source="local")
    assert edited.updated == 1
    again = await _apply(runtime, tenant, [record])
    assert again.unchanged == 1
    async with runtime.database.read_sessions() as session:
        member = await session.scalar(select(Member))
    assert member is not None
    assert member.given_name == "Augusta"


async def test_new_settings_apply_every_record_again(runtime: Runtime, tenant: Tenant) -> None:
    record = _record("C-1", email="ada@example.org", given_name="Ada")
    await _apply(runtime, tenant, [record])
    local = MappedRecord(values={"email": "ada@example.org", "given_name": "Augusta"}, changed_at=T0 + timedelta(1))
    await _apply(runtime, tenant, [local], source="local")
    async with runtime.unit_of_work() as session:
        stored = await session.get(Tenant, tenant.id)
        assert stored is not None
        priority = {"policy": "source_priority", "sources": ["crm", "local"]}
        stored.identity_settings = {"policies": {"fields": {"given_name": priority}}}
    again = await _apply(runtime, tenant, [record])
    assert again.updated == 1
    async with runtime.database.read_sessions() as session:
        member = await session.scalar(select(Member))
    assert member is not None
    assert member.given_name == "Ada"


async def test_a_link_synced_without_a_fingerprint_applies_the_record_again(runtime: Runtime, tenant: Tenant) -> None:
    record = _record("C-1", email="ada@example.org", given_name="Ada")
    [member_id] = (await _apply(runtime, tenant, [record])).member_ids
    async with runtime.unit_of_work() as session:
        ref = EntityRef("member", str(member_id), tenant.id)
        await runtime.tracker.mark_synced(session, ref, "C-1", "crm", runtime.clock.now())
    assert (await _fingerprints(runtime))["crm:C-1"] is None
    await _apply(runtime, tenant, [record])
    assert (await _fingerprints(runtime))["crm:C-1"] == fingerprint_of(record, DIGEST)


async def test_a_failed_link_is_not_trusted(runtime: Runtime, tenant: Tenant) -> None:
    record = _record("C-1", email="ada@example.org", given_name="Ada")
    [member_id] = (await _apply(runtime, tenant, [record])).member_ids
    async with runtime.unit_of_work() as session:
        await runtime.tracker.mark_failed(
            session, EntityRef("member", str(member_id), tenant.id), "crm", "timeout", runtime.clock.now()
        )
    async with runtime.database.read_sessions() as session:
        found = await runtime.tracker.find_many_linked(session, tenant.id, ["C-1"], "crm", "member")
    assert found["C-1"].fingerprint is None
    assert found["C-1"].entity.entity_id == str(member_id)
