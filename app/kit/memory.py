"""The cyclic garbage collector and the whole-universe structures the service keeps.

A compiled index of a 500,000-instrument universe is millions of long-lived objects. Building
it allocates them fast, and every allocation burst triggers collections that traverse what
was already built: measured, collection was 60% of reading the snapshot and a quarter of
evaluating it. Nothing in these structures is cyclic garbage (plain tuples, dicts, frozen
dataclasses; reference counting frees them), so the collector is paused while one is built,
and what exists afterwards is frozen (``gc.freeze``): later collections skip it instead of
walking it again and again, which would otherwise be a pause of its own on the event loop.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_paused = 0


@contextmanager
def building_long_lived() -> Iterator[None]:
    """Pause cyclic collection while the block builds a large long-lived structure.

    Nests and works across threads (the collector is process-wide): it runs again when the
    last block ends, after freezing what exists then.
    """
    global _paused
    with _lock:
        _paused += 1
        gc.disable()
    try:
        yield
    finally:
        with _lock:
            _paused -= 1
            if _paused == 0:
                gc.freeze()
                gc.enable()
