"""Which huey tasks a worker knows, with and without the scheduler."""

from __future__ import annotations

import pytest

from membersync.config import Settings
from membersync.worker import Worker

EXPECTED = {"jobs.run_batch", "scheduling.tick", "jobs.sweep"}


@pytest.mark.parametrize("periodic", [True, False])
def test_every_worker_can_run_the_periodic_tasks_but_only_schedulers_schedule_them(
    settings: Settings, periodic: bool
) -> None:
    worker = Worker(settings, threads=1, periodic=periodic)
    consumer = worker.build_consumer()
    # huey keys its registry by "<module of the function>.<task name>".
    registered = list(consumer.huey._registry._registry)
    assert all(any(key.endswith(f".{name}") for key in registered) for name in EXPECTED)
    assert consumer.periodic is periodic
    consumer.huey.storage.close()
