"""Keeping a long-running process's garbage collector off its hot paths."""

from __future__ import annotations

import gc

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
