"""A worker moves its start-up objects out of the collector's full passes."""

from __future__ import annotations

import gc
import weakref

from membersync.heap import settle_startup_heap


class _Node:
    def __init__(self) -> None:
        self.me = self


def test_settling_collects_garbage_then_freezes_the_objects_alive_now() -> None:
    kept: list[object] = [object()]
    garbage = _Node()
    gone = weakref.ref(garbage)
    del garbage
    try:
        settle_startup_heap()
        assert gone() is None  # a reference cycle is collected, not frozen for the process's life
        assert gc.get_freeze_count() > 0
        assert all(item is not kept for item in gc.get_objects())  # frozen: full collections skip it
    finally:
        gc.unfreeze()
