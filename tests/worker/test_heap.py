"""A worker moves its start-up objects out of the collector's full passes and collects its youngest objects less
often."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from collections.abc import Iterator

import pytest

from membersync.heap import YOUNGEST_GENERATION_THRESHOLD, collector_paused, pauses_collector, settle_startup_heap


class _Node:
    def __init__(self) -> None:
        self.me = self


def test_settling_collects_garbage_freezes_the_objects_alive_now_and_raises_the_youngest_threshold() -> None:
    kept: list[object] = [object()]
    garbage = _Node()
    gone = weakref.ref(garbage)
    del garbage
    thresholds = gc.get_threshold()
    gc.set_threshold(700, *thresholds[1:])
    try:
        settle_startup_heap()
        assert gone() is None  # a reference cycle is collected, not frozen for the process's life
        assert gc.get_freeze_count() > 0
        assert all(item is not kept for item in gc.get_objects())  # frozen: full collections skip it
        assert gc.get_threshold() == (YOUNGEST_GENERATION_THRESHOLD, *thresholds[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


@pytest.fixture
def collector_on() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.enable()
    yield
    if not was_enabled:
        gc.disable()


def test_the_collector_is_off_inside_a_pause_and_on_again_after(collector_on: None) -> None:
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_the_collector_comes_back_on_after_a_pause_that_raised(collector_on: None) -> None:
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("the page failed")
    assert gc.isenabled()


def test_the_collector_stays_off_until_the_last_of_overlapping_pauses_ends(collector_on: None) -> None:
    entered, release = threading.Event(), threading.Event()

    def other_thread() -> None:
        with collector_paused():
            entered.set()
            release.wait(timeout=10)

    thread = threading.Thread(target=other_thread)
    thread.start()
    assert entered.wait(timeout=10)
    with collector_paused():
        pass
    assert not gc.isenabled()  # the other thread is still inside its pause
    release.set()
    thread.join(timeout=10)
    assert gc.isenabled()


def test_a_pause_leaves_a_collector_that_was_off_off(collector_on: None) -> None:
    gc.disable()
    with collector_paused():
        pass
    assert not gc.isenabled()


def test_a_coroutine_function_that_pauses_the_collector_runs_with_it_off(collector_on: None) -> None:
    @pauses_collector
    async def page(size: int) -> tuple[int, bool]:
        await asyncio.sleep(0)
        return size, gc.isenabled()

    assert asyncio.run(page(3)) == (3, False)
    assert gc.isenabled()
