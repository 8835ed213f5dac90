"""Keeping a long-running process's garbage collector off its hot paths."""

from __future__ import annotations

import contextlib
import functools
import gc
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, ParamSpec, TypeVar

# Applying a page of 1,000 records allocates a few hundred thousand short-lived containers. At CPython's default
# of 700 the youngest generation is collected thousands of times a run, every tenth pass promotes survivors, and
# the promotions bring on full passes over every cached profile and validation result (about 40 ms each on a
# 2-CPU VM, a sixth of a run of new records). Reference counting frees these objects anyway: they hold no cycles.
YOUNGEST_GENERATION_THRESHOLD = 10_000


def settle_startup_heap() -> None:
    """Collect once, move every object alive now (modules, settings, the runtime) to the permanent generation, and
    collect the youngest generation every `YOUNGEST_GENERATION_THRESHOLD` allocations rather than every 700.

    A worker builds about 150,000 start-up objects and keeps them for its whole life; without the freeze, every
    full collection walks them all again, about 90 ms on a 2-CPU VM, and a worker sending push batches meets one
    every twenty batches or so.
    """
    gc.collect()
    gc.freeze()
    youngest, middle, oldest = gc.get_threshold()
    gc.set_threshold(max(youngest, YOUNGEST_GENERATION_THRESHOLD), middle, oldest)


class _CollectorPause:
    """The collector stays off while any thread or task is inside `collector_paused`, and comes back on when the
    last one leaves, if it was on when the first came in."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inside = 0
        self._was_enabled = False

    def enter(self) -> None:
        with self._lock:
            if self._inside == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._inside += 1

    def leave(self) -> None:
        with self._lock:
            self._inside -= 1
            if self._inside == 0 and self._was_enabled:
                gc.enable()


_PAUSE = _CollectorPause()
_P = ParamSpec("_P")
_R = TypeVar("_R")


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic collection inside: for work that builds a large, short-lived, acyclic object graph and holds all
    of it until it ends (a page of records being applied).

    The collector's passes during such work find nothing to free: they walk the objects alive, promote them to
    older generations and bring on full passes: 7 % of the time of a run of 20,000 new records, 2.5 % with the
    pause. Reference counting still frees what the work drops; any cycles it makes wait for the first collection
    after it, so memory is bounded by one unit of work. The collector is process-wide: other threads go without it
    for as long too.
    """
    _PAUSE.enter()
    try:
        yield
    finally:
        _PAUSE.leave()


def pauses_collector(function: Callable[_P, Coroutine[Any, Any, _R]]) -> Callable[_P, Coroutine[Any, Any, _R]]:
    """`collector_paused` around each call of a coroutine function, ending once the call is over: by then its
    frame and the objects only it held are gone, so the first collection after the pause does not walk them."""

    @functools.wraps(function)
    async def paused(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with collector_paused():
            return await function(*args, **kwargs)

    return paused
