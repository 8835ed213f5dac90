"""A worker moves its start-up objects out of the collector's full passes and collects its youngest objects less
often."""

from __future__ import annotations

import gc
import weakref

from membersync.heap import YOUNGEST_GENERATION_THRESHOLD, settle_startup_heap


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
