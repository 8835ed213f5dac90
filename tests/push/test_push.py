"""Pushing members in batches to the emulated destination: selection, batching, retries, failures, the
log events of a batch, and what counts as pushed. SQLite (+ SQLite limiter) and PostgreSQL (+ Redis)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import structlog
from sqlalchemy import delete, func, select, update

from membersync.clock import FrozenClock
from membersync.http import HttpClient
from membersync.jobs import ledger
from membersync.models import Job, JobStatus, Member, PushBatch, PushBatchMember, Tenant
from membersync.push import plan
from membersync.push.service import PushRun, start_push
from membersync.runtime import Runtime
from membersync.sandbox.push_destination import PushDestination as Emulator
from tests.factories import fail_twice_then_succeed, make_members, make_tenant
from tests.push.rows import push_attempts as _attempts
from tests.push.rows import push_batches as _batches
from tests.push.rows import push_jobs as _jobs
from tests.push.rows import pushed_members


async def _push(runtime: Runtime, tenant: Tenant, since: datetime | None = None) -> PushRun:
    async with runtime.unit_of_work() as session:
        destination = runtime.destinations.get("subscribers")
        return await start_push(session, destination, tenant.id, runtime.clock.now(), since=since)


async def _drain(runtime: Runtime, clock: FrozenClock, workers: int = 1) -> None:
    """Run every push job to the end, moving the clock to each next due time."""
    runners = [runtime.runner() for _ in range(workers)]
    while True:
        for runner in runners:
            await runner.run_until_idle()
        async with runtime.database.read_sessions() as session:
            due = await session.scalar(select(func.min(Job.run_at)).where(Job.status == JobStatus.QUEUED))
        if due is None:
            return
        clock.set(max(due, clock.now()))


async def _touch(runtime: Runtime, address: str, **values: Any) -> None:
    async with runtime.unit_of_work() as session:
        await session.execute(
            update(Member).where(Member.email == address).values(updated_at=runtime.clock.now(), **values)
        )


@pytest.mark.parametrize(("members", "batches"), [(0, []), (1, [1]), (999, [999]), (1000, [1000]), (1001, [1000, 1])])
def test_members_are_cut_into_batches_of_at_most_1000(members: int, batches: list[int]) -> None:
    assert [len(batch) for batch in plan.cut(list(range(members)), 1000)] == batches


def test_120000_members_make_120_full_batches_in_order() -> None:
    batches = plan.cut(list(range(120_000)), 1000)
    assert len(batches) == 120
    assert all(len(batch) == 1000 for batch in batches)
    assert [member for batch in batches for member in batch] == list(range(120_000))


def test_batches_are_spread_one_budget_slot_apart_after_those_waiting(clock: FrozenClock) -> None:
    now = clock.now()
    assert plan.schedule(3, now, timedelta(seconds=72)) == [now + timedelta(seconds=72 * i) for i in range(3)]
    assert plan.first_slot(now, None, timedelta(seconds=72)) == now
    assert plan.first_slot(now, now + timedelta(hours=1), timedelta(seconds=72)) == now + timedelta(seconds=3672)
    assert plan.first_slot(now, now - timedelta(hours=1), timedelta(seconds=72)) == now


def test_a_batch_turned_away_takes_the_freed_slot_unless_others_are_due_by_then(clock: FrozenClock) -> None:
    frees_at, spacing = clock.now(), timedelta(seconds=72)
    last = frees_at + timedelta(hours=2)
    assert plan.slot_after_denial(frees_at, False, last, spacing) == frees_at
    assert plan.slot_after_denial(frees_at, True, last, spacing) == last + spacing
    assert plan.slot_after_denial(frees_at, True, None, spacing) == frees_at


async def test_a_push_sends_changed_members_once_and_skips_bad_emails(
    pushing: Runtime, emulator: Emulator, clock: FrozenClock
) -> None:
    tenant = await make_tenant(pushing)
    await make_members(pushing, tenant, 5)
    await _touch(pushing, "member3@example.org", email="not-an-email", name="Broken")
    run = await _push(pushing, tenant)
    assert (run.selected, run.queued, len(run.batch_ids)) == (5, 4, 1)
    assert run.skipped == {"invalid email: not a valid email address: An email address must have an @-sign.": 1}
    await _drain(pushing, clock)
    stats = emulator.stats()
    assert (stats.accepted_requests, stats.accepted_subscribers) == (1, 4)
    [batch] = await _batches(pushing)
    assert (batch.status, batch.sent_count, batch.attempts, batch.member_count) == ("succeeded", 4, 1, 4)
    again = await _push(pushing, tenant)
    assert (again.selected, again.queued) == (1, 0)  # only the member still without a valid email
    clock.advance(minutes=1)
    await _touch(pushing, "member0@example.org", name="Ada Changed")
    changed = await _push(pushing, tenant)
    assert changed.queued == 1
    await _drain(pushing, clock)
    assert emulator.stats().accepted_subscribers == 5


async def test_a_member_changed_while_its_batch_is_in_flight_goes_in_the_next_push(
    pushing: Runtime, clock: FrozenClock
) -> None:
    tenant = await make_tenant(pushing)
    await make_members(pushing, tenant, 3)
    await _push(pushing, tenant)
    assert (await _push(pushing, tenant)).selected == 0  # in flight: left to its batch
    await _drain(pushing, clock)
    clock.advance(seconds=1)
    await _touch(pushing, "member1@example.org", name="Changed after the read")
    nxt = await _push(pushing, tenant)
    assert nxt.queued == 1
    first, second = await _batches(pushing)
    assert first.status == "succeeded"
    assert first.members_read_at is not None
    assert first.finished_at is not None
    assert first.members_read_at <= first.finished_at < clock.now()
    assert (second.status, second.member_count) == ("queued", 1)


async def test_only_a_succeeded_batch_to_the_same_destination_counts_as_pushed(
    pushing: Runtime, emulator: Emulator, clock: FrozenClock
) -> None:
    tenant = await make_tenant(pushing)
    await make_members(pushing, tenant, 3)
    await _push(pushing, tenant)
    await _drain(pushing, clock)
    assert {email for _, email in await pushed_members(pushing)} == {f"member{i}@example.org" for i in range(3)}
    async with pushing.unit_of_work() as session:
        await session.execute(update(PushBatch).values(destination="another"))
        await session.execute(update(PushBatchMember).values(destination="another"))
    assert (await _push(pushing, tenant)).queued == 3  # pushed elsewhere: not to this destination
    await _drain(pushing, clock)
    async with pushing.unit_of_work() as session:
        await session.execute(update(PushBatch).values(members_read_at=None))
    assert (await _push(pushing, tenant)).queued == 3  # accepted before read times were kept: pushed once more
    await _drain(pushing, clock)
    assert (await _push(pushing, tenant)).selected == 0
    assert emulator.stats().accepted_subscribers == 9


async def test_since_resends_members_changed_after_a_time(pushing: Runtime, clock: FrozenClock) -> None:
    tenant = await make_tenant(pushing)
    await make_members(pushing, tenant, 3)
    await _push(pushing, tenant)
    await _drain(pushing, clock)
    clock.advance(hours=1)
    await _touch(pushing, "member2@example.org")
    assert (await _push(pushing, tenant, since=clock.now() - timedelta(minutes=1))).queued == 1


async def test_a_batch_retries_twice_then_succeeds_with_one_idempotency_key(
    pushing: Runtime, emulator: Emulator, clock: FrozenClock
) -> None:
    tenant = await make_tenant(pushing)
    await make_members(pushing, tenant, 2)
    emulator.configure(fail_next=2)
    await _push(pushing, tenant)
    runner = pushing.runner()
    await fail_twice_then_succeed(runner, clock)
    [batch] = await _batches(pushing)
    assert (batch.status, batch.attempts, batch.last_status_code) == ("succeeded", 3, 202)
    attempts = await _attempts(pushing)
    assert [(a.attempt, a.status_code, a.outcome) for a in attempts] == [
        (1, 503, "retry"),
        (2, 503, "retry"),
        (3, 202, "accepted"),
    ]
    assert len({attempt.request_id for attempt in attempts}) == 3
    assert {push.idempotency_key for push in emulator.stats().received} == {batch.idempotency_key}


async def test_a_client_error_fails_at_once_and_retry_failed_sends_it_again(
    pushing: Runtime, emulator: Emulator, clock: FrozenClock
) -> None:
    tenant = await make_tenant(pushing)
    await make_members(pushing, tenant, 2)
    emulator.configure(fail_next=1, fail_status=400)
    await _push(pushing, tenant)
    assert (await pushing.runner().run_until_idle()).failed == 1
    [batch] = await _batches(pushing)
    [job] = await _jobs(pushing)
    assert (batch.status, batch.attempts, job.status, job.attempts) == ("failed", 1, JobStatus.FAILED, 1)
    assert batch.last_error is not None
    assert batch.last_error.startswith("HTTP 400")
    assert await pushed_members(pushing) == set()  # nothing is marked pushed that was not accepted
    assert batch.members_read_at is None
    assert (await _push(pushing, tenant)).selected == 0  # the failed batch keeps its members
    async with pushing.unit_of_work() as session:
        await ledger.retry_failed(session, clock.now())
    assert (await pushing.runner().run_until_idle()).succeeded == 1
    assert (await _batches(pushing))[0].status == "succeeded"
    assert emulator.stats().accepted_subscribers == 2


@pytest.mark.parametrize(("retry_after", "waited"), [(7, 7), (0, 5), (10**9, 24 * 3600)])
async def test_retry_after_is_honoured_within_bounds(
    pushing: Runtime, emulator: Emulator, clock: FrozenClock, retry_after: int, waited: int
) -> None:
    tenant = await make_tenant(pushing)
    await make_members(pushing, tenant, 1)
    emulator.configure(throttle_next=1, retry_after_seconds=retry_after)
    await _push(pushing, tenant)
    assert (await pushing.runner().run_until_idle()).retried == 1
    [job] = await _jobs(pushing)
    assert job.run_at == clock.now() + timedelta(seconds=waited)
    clock.advance(seconds=waited)
    assert (await pushing.runner().run_until_idle()).succeeded == 1


async def test_a_destination_that_is_down_fails_after_three_tries(pushing: Runtime, clock: FrozenClock) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    await pushing.http.aclose()
    from membersync.http import HttpClient

    pushing.http = HttpClient(httpx.AsyncClient(transport=httpx.MockTransport(refuse)))
    tenant = await make_tenant(pushing)
    await make_members(pushing, tenant, 2)
    await _push(pushing, tenant)
    await _drain(pushing, clock)
    [batch] = await _batches(pushing)
    [job] = await _jobs(pushing)
    assert (batch.status, batch.attempts, job.status) == ("failed", 3, JobStatus.FAILED)
    assert [attempt.outcome for attempt in await _attempts(pushing)] == ["retry", "retry", "failed"]
    assert batch.last_error is not None
    assert "no response" in batch.last_error


async def test_one_batch_logs_every_step_under_its_id(pushing: Runtime, emulator: Emulator, clock: FrozenClock) -> None:
    tenant = await make_tenant(pushing)
    await make_members(pushing, tenant, 2)
    emulator.configure(fail_next=1)
    with structlog.testing.capture_logs() as logs:
        run = await _push(pushing, tenant)
        await _drain(pushing, clock)
    [batch_id] = run.batch_ids
    events = [entry for entry in logs if entry.get("batch_id") == batch_id or entry.get("first_batch_id") == batch_id]
    assert [entry["event"] for entry in events] == [
        "push.batches_created",
        "push.request_sent",
        "push.response",
        "push.retry",
        "push.request_sent",
        "push.response",
        "push.batch_succeeded",
    ]
    created, sent, response = events[0], events[1], events[2]
    assert (created["members"], created["batches"], created["first_due"]) == (2, 1, run.first_due.isoformat())  # type: ignore[union-attr]
    assert (sent["size"], response["status"], response["request_id"]) == (2, 503, sent["request_id"])
    assert response["remote_request_id"].startswith("dst-")
    assert isinstance(response["duration_ms"], float)


def _recording(bodies: list[Any]) -> httpx.MockTransport:
    def accept(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(202, json={"accepted_batches": 1})

    return httpx.MockTransport(accept)


async def test_a_batch_sends_its_members_as_they_are_when_it_is_sent(pushing: Runtime, clock: FrozenClock) -> None:
    bodies: list[Any] = []
    await pushing.http.aclose()
    pushing.http = HttpClient(httpx.AsyncClient(transport=_recording(bodies)))
    tenant = await make_tenant(pushing)
    await make_members(pushing, tenant, 5)
    await _touch(pushing, "member3@example.org", family_name="Lovelace")
    await _push(pushing, tenant)
    await _touch(pushing, "member0@example.org", name="Renamed Before Sending", time_zone="Europe/Paris")
    await _touch(pushing, "member2@example.org", given_name="Grace", family_name="Hopper")
    async with pushing.unit_of_work() as session:
        await session.execute(delete(Member).where(Member.email == "member1@example.org"))
    await _drain(pushing, clock)
    [body] = bodies
    assert body["batches"][0]["subscribers"] == [
        {"email": "member0@example.org", "name": "Renamed Before Sending", "time_zone": "Europe/Paris"},
        {"email": "member2@example.org", "name": "Grace Hopper", "time_zone": "UTC"},
        {"email": "member3@example.org", "name": "Lovelace", "time_zone": "UTC"},
        {"email": "member4@example.org", "name": "", "time_zone": "UTC"},
    ]
    [batch] = await _batches(pushing)
    assert (batch.status, batch.sent_count) == ("succeeded", 4)


async def test_a_batch_that_is_gone_or_in_another_tenant_fails_without_a_request(
    pushing: Runtime, emulator: Emulator, clock: FrozenClock
) -> None:
    tenant = await make_tenant(pushing)
    await make_members(pushing, tenant, 2)
    await _push(pushing, tenant)
    other = await make_tenant(pushing, "other")
    async with pushing.unit_of_work() as session:
        await session.execute(update(Job).where(Job.name == "push.send_batch").values(tenant_id=other.id))
    report = await pushing.runner().run_until_idle()
    assert (report.claimed, report.failed) == (1, 1)
    [job] = await _jobs(pushing)
    assert job.last_error is not None
    assert "no longer exists" in job.last_error
    assert emulator.stats().accepted_requests == 0
