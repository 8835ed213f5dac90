"""`apply_records` on SQLite and PostgreSQL: one path from a page of records to members, audit and conflicts."""

from __future__ import annotations

import gc
import json
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from membersync.db.engine import dialect_of
from membersync.errors import InvalidInput
from membersync.identity import normalize, repository
from membersync.identity.policy import MergePolicies
from membersync.identity.settings import IdentityOptions
from membersync.models import AuditEntry, Conflict, DuplicatePair, Member, SyncOperation, Tenant
from membersync.runtime import Runtime
from membersync.tracker.rules import ExternalIdTaken
from tests.factories import apply_page as _apply
from tests.factories import make_tenant
from tests.factories import mapped_record as _record


async def _all(runtime: Runtime, model: type[Any]) -> list[Any]:
    async with runtime.database.read_sessions() as session:
        return list((await session.scalars(select(model).order_by(model.id))).all())


async def test_new_records_create_members_links_and_audit(runtime: Runtime, tenant: Tenant) -> None:
    result = await _apply(
        runtime,
        tenant,
        [
            _record("C-1", email="Ada@Example.org ", full_name="Ada Lovelace", phone="020 7946 0018"),
            _record("C-2", email="grace@example.org", given_name="Grace", family_name="Hopper"),
        ],
    )
    assert (result.created, result.updated, result.unchanged, result.rejected) == (2, 0, 0, 0)
    ada, grace = await _all(runtime, Member)
    assert (ada.email, ada.given_name, ada.family_name, ada.phone) == (
        "ada@example.org",
        "Ada",
        "Lovelace",
        "+442079460018",
    )
    assert grace.name == "Grace Hopper"
    assert result.member_ids == (ada.id, grace.id)
    async with runtime.database.read_sessions() as session:
        found = await runtime.tracker.find_by_external_id(session, tenant.id, "C-2", "crm", "member")
    assert found is not None
    assert found.entity_id == str(grace.id)
    audit = await _all(runtime, AuditEntry)
    assert [entry.member_id for entry in audit] == [ada.id, grace.id]  # one entry per member the page created
    fields = {(entry.member_id, field) for entry in audit for field in entry.changes}
    assert fields >= {(ada.id, "email"), (grace.id, "given_name")}
    assert all(before is None for entry in audit for before, _ in entry.changes.values())
    assert {(entry.operation_id, entry.source) for entry in audit} == {(result.operation_id, "crm")}


async def test_a_page_is_applied_with_the_collector_paused(
    runtime: Runtime, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector_was_on: list[bool] = []
    normalise = normalize.normalize_record

    def watched(*args: Any, **kwargs: Any) -> Any:
        collector_was_on.append(gc.isenabled())
        return normalise(*args, **kwargs)

    monkeypatch.setattr("membersync.identity.service.normalize_record", watched)
    gc.enable()
    await _apply(runtime, tenant, [_record("C-1", email="ada@example.org"), _record("C-2", email="bo@example.org")])
    assert collector_was_on == [False, False]
    assert gc.isenabled()


async def test_new_members_take_ids_given_before_they_are_inserted(runtime: Runtime, tenant: Tenant) -> None:
    async with runtime.unit_of_work() as session:
        reserved = await repository.reserve_member_ids(session, 3)
    result = await _apply(runtime, tenant, [_record("C-1", email="ada@example.org"), _record("C-2", email="bo@x.org")])
    member_ids = [member.id for member in await _all(runtime, Member)]
    assert result.member_ids == tuple(member_ids)
    assert reserved == sorted(set(reserved))
    if runtime.database.engine.dialect.name == "postgresql":
        assert min(member_ids) > max(reserved)  # drawn from the sequence again, never reused
    else:
        assert member_ids == reserved[:2] == [1, 2]  # one past the highest id, as SQLite numbers rows


async def test_a_member_matched_but_gone_when_read_is_created_with_an_id_drawn_then(
    runtime: Runtime, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _apply(
        runtime, tenant, [_record("C-1", email="ada@example.org", full_name="Ada Lovelace", phone="+442079460018")]
    )

    async def gone(*args: Any, **kwargs: Any) -> list[Any]:
        return []  # deleted by another transaction between the candidate query and this read

    monkeypatch.setattr(repository, "members_by_id", gone)
    result = await _apply(
        runtime,
        tenant,
        [_record("P-1", email="ada@work.example", full_name="Ada Lovelace", phone="+442079460018")],
        "patreon",
    )
    assert result.created == 1
    assert result.member_ids[0] in {member.id for member in await _all(runtime, Member)}


async def test_a_page_whose_links_fail_while_its_audit_insert_runs_stores_nothing(
    runtime: Runtime, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise ExternalIdTaken("C-1 is another member's")

    monkeypatch.setattr("membersync.identity.writes.synced_rows", refuse)
    with pytest.raises(ExternalIdTaken, match="another member's"):
        await _apply(runtime, tenant, [_record("C-1", email="ada@example.org")])
    assert await _all(runtime, Member) == []
    assert await _all(runtime, AuditEntry) == []
    monkeypatch.undo()
    assert (await _apply(runtime, tenant, [_record("C-1", email="ada@example.org")])).created == 1


async def test_the_same_page_again_changes_nothing(runtime: Runtime, tenant: Tenant) -> None:
    page = [_record("C-1", email="ada@example.org", full_name="Ada Lovelace")]
    await _apply(runtime, tenant, page)
    audit_before = len(await _all(runtime, AuditEntry))
    again = await _apply(runtime, tenant, page)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 1)
    assert len(await _all(runtime, AuditEntry)) == audit_before


async def test_a_newer_value_updates_and_is_audited(runtime: Runtime, tenant: Tenant) -> None:
    await _apply(runtime, tenant, [_record("C-1", email="ada@example.org", membership_tier="silver")])
    result = await _apply(runtime, tenant, [_record("C-1", minutes=5, membership_tier="gold")])
    older = await _apply(runtime, tenant, [_record("C-1", minutes=1, membership_tier="bronze")])
    assert (result.updated, older.unchanged) == (1, 1)
    [member] = await _all(runtime, Member)
    assert member.tier == "gold"
    tier_entries = [
        entry.changes["membership_tier"]
        for entry in await _all(runtime, AuditEntry)
        if "membership_tier" in entry.changes
    ]
    assert tier_entries == [[None, "silver"], ["silver", "gold"]]
    async with runtime.database.read_sessions() as session:
        operation = await session.get(SyncOperation, older.operation_id)
    assert operation is not None
    assert operation.details is not None
    assert operation.details["kept"] == [
        {"record": 0, "field": "membership_tier", "reason": "older than the current value"}
    ]


async def test_a_field_changed_twice_in_a_page_is_audited_once_from_first_to_last(
    runtime: Runtime, tenant: Tenant
) -> None:
    await _apply(runtime, tenant, [_record("C-1", email="ada@example.org", membership_tier="silver")])
    page = [
        _record("C-1", minutes=5, membership_tier="gold", time_zone="Europe/London"),
        _record("C-1", minutes=10, membership_tier="platinum"),
    ]
    result = await _apply(runtime, tenant, page)
    assert result.updated == 2
    newest = (await _all(runtime, AuditEntry))[-1]
    assert (newest.operation_id, newest.source) == (result.operation_id, "crm")
    assert newest.changes == {"membership_tier": ["silver", "platinum"], "time_zone": [None, "Europe/London"]}


async def test_a_member_created_and_changed_in_one_page_is_audited_with_its_values_at_the_end(
    runtime: Runtime, tenant: Tenant
) -> None:
    page = [
        _record("C-1", email="ada@example.org", membership_tier="silver"),
        _record("C-1", minutes=5, membership_tier="gold", time_zone="Europe/London"),
    ]
    result = await _apply(runtime, tenant, page)
    assert (result.created, result.updated) == (1, 1)
    [entry] = await _all(runtime, AuditEntry)
    assert entry.changes == {
        "email": [None, "ada@example.org"],
        "membership_tier": [None, "gold"],
        "time_zone": [None, "Europe/London"],
    }


async def test_an_email_change_waits_in_a_conflict_that_newer_values_supersede(
    runtime: Runtime, tenant: Tenant
) -> None:
    await _apply(runtime, tenant, [_record("C-1", email="ada@example.org", full_name="Ada Lovelace")])
    first = await _apply(runtime, tenant, [_record("C-1", minutes=1, email="ada@new.example", phone="+442079460018")])
    await _apply(runtime, tenant, [_record("C-1", minutes=2, email="ada@newer.example")])
    await _apply(runtime, tenant, [_record("C-1", minutes=1, email="ada@stale.example")])
    assert (first.conflicted, first.updated) == (1, 0)
    [member] = await _all(runtime, Member)
    assert (member.email, member.phone) == ("ada@example.org", "+442079460018")
    [conflict] = await _all(runtime, Conflict)
    assert (conflict.field, conflict.current_value, conflict.incoming_value, conflict.status) == (
        "email",
        "ada@example.org",
        "ada@newer.example",
        "pending",
    )


async def test_a_record_without_email_for_a_new_member_is_rejected_alone(runtime: Runtime, tenant: Tenant) -> None:
    result = await _apply(
        runtime,
        tenant,
        [
            _record("C-1", full_name="No Email"),
            _record("C-2", email="not an email", full_name="Bad Email"),
            _record("C-3", email="ok@example.org", phone="not a phone", time_zone="Mars/Olympus"),
        ],
    )
    assert (result.created, result.rejected, result.rejected_fields) == (1, 2, 3)
    [member] = await _all(runtime, Member)
    assert (member.email, member.phone, member.time_zone) == ("ok@example.org", None, None)
    async with runtime.database.read_sessions() as session:
        operation = await session.get(SyncOperation, result.operation_id)
    assert operation is not None
    assert operation.details is not None
    assert {entry["field"] for entry in operation.details["rejected_fields"]} == {"email", "phone", "time_zone"}
    assert [entry["record"] for entry in operation.details["rejected_records"]] == [0, 1]


async def test_phone_and_fuzzy_name_matches(runtime: Runtime, tenant: Tenant) -> None:
    await _apply(
        runtime,
        tenant,
        [_record("C-1", email="ada@example.org", given_name="Ada", family_name="Lovelace", phone="+442079460018")],
    )
    by_phone = await _apply(
        runtime,
        tenant,
        [_record("P-1", email=None, phone="+442079460018", membership_tier="gold")],
        source="patreon",
    )
    assert by_phone.updated == 1
    maybe = await _apply(
        runtime,
        tenant,
        [_record("P-2", email="a.lovelace@elsewhere.example", given_name="Ada", family_name="Lovelace")],
        source="patreon",
    )
    assert (maybe.created, maybe.possible_duplicates) == (1, 1)
    [pair] = await _all(runtime, DuplicatePair)
    assert pair.reasons
    assert pair.status == "pending"


async def test_a_fuzzy_match_merges_into_the_whole_stored_member(runtime: Runtime, tenant: Tenant) -> None:
    address = {"line1": "12 St James's Square", "postal_code": "SW1Y 4JH"}
    first = _record("C-1", email="ada@example.org", given_name="Ada", family_name="Lovelace", address=address)
    await _apply(runtime, tenant, [first])
    # Another email, but the same name and postal code: a second signal, so the name alone decides.
    again = _record("P-9", 5, email="countess@elsewhere.example", full_name="Ada Lovelace", address=address)
    result = await _apply(runtime, tenant, [again, _record("P-10", 5, email="new@example.org")], source="patreon")
    assert (result.created, result.updated + result.conflicted) == (1, 1)
    [ada, _] = await _all(runtime, Member)
    assert result.member_ids[0] == ada.id
    assert (ada.email, ada.name, ada.address) == ("ada@example.org", "Ada Lovelace", address)
    [operation] = [op for op in await _all(runtime, SyncOperation) if op.id == result.operation_id]
    [decision, _] = operation.details["decisions"]
    assert decision["kind"] == "fuzzy"
    assert "postal code matches" in decision["reasons"]


async def test_each_name_block_gives_at_most_its_lowest_ids_as_candidates(runtime: Runtime, tenant: Tenant) -> None:
    page = [_record(f"C-{n}", email=f"m{n}@example.org", given_name="Ada", family_name="Lovelace") for n in range(6)]
    page.append(_record("C-9", email="other@example.org", given_name="Ada", family_name="Byron", phone="+442079460018"))
    page += [_record(f"D-{n}", email=f"g{n}@example.org", given_name="Grace", family_name="Hopper") for n in range(2)]
    await _apply(runtime, tenant, page)
    members = await _all(runtime, Member)
    [key] = {member.name_key for member in members[:6]}
    [small_key] = {member.name_key for member in members[7:]}
    async with runtime.unit_of_work() as session:
        rows = await repository.match_candidates(
            session, tenant.id, phones=["+442079460018"], name_keys=[key, small_key, "n:none"], per_name_key=3
        )
        phone_only = await repository.match_candidates(
            session, tenant.id, phones=["+442079460018"], name_keys=[key], per_name_key=0
        )
    expected = [*(member.id for member in members[:3]), members[6].id, *(member.id for member in members[7:])]
    assert sorted(row.id for row in rows) == expected
    assert {row.name_key for row in rows} == {key, small_key, members[6].name_key}
    assert [row.id for row in phone_only] == [members[6].id]


async def test_candidates_are_found_by_index_probes_with_or_without_statistics(
    runtime: Runtime, tenant: Tenant
) -> None:
    """A table being filled has no statistics; PostgreSQL then joined the page's keys to every member of the tenant."""
    names = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "John", "Radia", "Tim"]
    page = [
        _record(
            f"C-{n}",
            email=f"m{n}@example.org",
            phone=f"+4420794{n:05d}",
            given_name=names[n % 10],
            family_name=f"{names[n // 10 % 10]}son{n}",
        )
        for n in range(2000)
    ]
    await _apply(runtime, tenant, page)
    async with runtime.unit_of_work() as session:
        dialect = dialect_of(session)
        for analysed in (False, True):
            if analysed:
                await session.execute(text("ANALYZE members"))
            plan = await _candidates_plan(session, dialect, tenant.id)
            assert plan
            assert all("INDEX" in step for step in plan), plan


# As many as a page of a thousand records has: the planner weighs a join of every member against this many probes.
PROBED_PHONES = [f"+4420795{n:05d}" for n in range(1000)]
PROBED_NAME_KEYS = [f"n:{n:03d}a" for n in range(1000)]


async def _candidates_plan(session: AsyncSession, dialect: str, tenant_id: int) -> list[str]:
    """How the candidates statement reads members: one line per read, upper case."""
    compiled = repository.candidates_statement(dialect).compile(dialect=session.get_bind().dialect)
    values: dict[str, Any] = {"in_tenant": tenant_id, "per_name_key": 200, "past_block": 199}
    connection = await session.connection()
    if dialect == "postgresql":
        values |= {"phones": PROBED_PHONES, "name_keys": PROBED_NAME_KEYS}
        sql = "EXPLAIN (FORMAT JSON) " + compiled.string
        [[plan]] = (await connection.exec_driver_sql(sql, compiled.construct_params(values))).all()
        return [
            f"{node['Node Type']} {node.get('Index Name', '')}".upper()
            for node in _plan_nodes(plan[0]["Plan"])
            if node.get("Relation Name") == "members"
        ]
    values |= {"phones": json.dumps(PROBED_PHONES), "name_keys": json.dumps(PROBED_NAME_KEYS)}
    bound = compiled.construct_params(values)
    positional = tuple(bound[name] for name in compiled.positiontup or ())
    rows = (await connection.exec_driver_sql("EXPLAIN QUERY PLAN " + compiled.string, positional)).all()
    return [row[-1].upper() for row in rows if row[-1].split()[:2][-1] in {"members", "earlier"}]


def _plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(found for child in node.get("Plans", []) for found in _plan_nodes(child))]


async def test_tenants_never_match_each_other(runtime: Runtime, tenant: Tenant) -> None:
    other = await make_tenant(runtime, "other")
    await _apply(runtime, tenant, [_record("C-1", email="ada@example.org")])
    result = await _apply(runtime, other, [_record("C-1", email="ada@example.org")])
    assert result.created == 1
    assert {member.tenant_id for member in await _all(runtime, Member)} == {tenant.id, other.id}


async def test_a_page_takes_a_bounded_number_of_queries(runtime: Runtime, tenant: Tenant) -> None:
    page = [_record(f"C-{n}", email=f"m{n}@example.org", full_name=f"Member Number{n}", phone=None) for n in range(300)]
    await _apply(runtime, tenant, page[:150])
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    engine = runtime.database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        result = await _apply(runtime, tenant, page)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert (result.created, result.unchanged) == (150, 150)
    assert len(statements) <= 15, statements


async def test_policies_are_configurable(runtime: Runtime, tenant: Tenant) -> None:
    options = IdentityOptions(policies=MergePolicies.from_dict({"fields": {"email": "newest_wins"}}))
    await _apply(runtime, tenant, [_record("C-1", email="ada@example.org")], options=options)
    result = await _apply(runtime, tenant, [_record("C-1", minutes=1, email="ada@new.example")], options=options)
    assert result.updated == 1
    [member] = await _all(runtime, Member)
    assert member.email == "ada@new.example"


async def test_too_many_records_or_an_unknown_source_are_refused(runtime: Runtime, tenant: Tenant) -> None:
    with pytest.raises(InvalidInput, match="records: at most"):
        await _apply(runtime, tenant, [_record(None, email="x@example.org")] * 5001)
    with pytest.raises(InvalidInput, match="source"):
        await _apply(runtime, tenant, [_record(None, email="x@example.org")], source="nowhere")
    async with runtime.database.read_sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Member)) == 0


async def test_hostile_values_are_rejected_with_reasons_and_nothing_else_is_lost(
    runtime: Runtime, tenant: Tenant
) -> None:
    await _apply(runtime, tenant, [_record("C-1", email="ada@example.org", full_name="Ada Lovelace")])
    result = await _apply(
        runtime,
        tenant,
        [
            _record(
                "C-1",
                minutes=1,
                email="ada@ex\u0430mple.org",  # a Cyrillic a
                full_name="x" * 1_000_000,
                membership_status="s" * 40,
                phone=["+44"],
                time_zone=42,
                consent_email="perhaps",
                membership_tier="gold",
            )
        ],
    )
    assert (result.updated, result.rejected_fields) == (1, 6)
    [member] = await _all(runtime, Member)
    assert (member.email, member.name, member.tier, member.status) == (
        "ada@example.org",
        "Ada Lovelace",
        "gold",
        "active",
    )


async def test_the_tenants_stored_settings_are_used(runtime: Runtime, tenant: Tenant) -> None:
    async with runtime.unit_of_work() as session:
        stored = await session.get(Tenant, tenant.id)
        assert stored is not None
        stored.identity_settings = {"policies": {"fields": {"email": "newest_wins"}}, "default_region": "US"}
    await _apply(runtime, tenant, [_record("C-1", email="ada@example.org", phone="(202) 555-0143")])
    result = await _apply(runtime, tenant, [_record("C-1", minutes=1, email="ada@new.example")])
    assert result.updated == 1
    [member] = await _all(runtime, Member)
    assert (member.email, member.phone) == ("ada@new.example", "+12025550143")
