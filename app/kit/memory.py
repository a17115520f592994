"""The cyclic garbage collector and the whole-universe structures the service keeps.

A compiled index of a 500,000-instrument universe is millions of long-lived objects. Building
it allocates them fast, and every allocation burst triggers collections that traverse what
was already built: measured, collection was 60% of reading the snapshot and a quarter of
evaluating it. Nothing in these structures is cyclic garbage (plain tuples, dicts, frozen
dataclasses; reference counting frees them), so the collector is paused while one is built,
and what exists afterwards is frozen (``gc.freeze``): later collections skip it instead of
walking it again and again, which would otherwise be a pause of its own on the event loop.

A large batch of checks is the same story on a smaller scale: its 10,000 decisions are some
100,000 short-lived containers (payloads, requests, log entries, rendered rows), all acyclic,
alive together for the request; collections triggered while they exist walk them again and
again (measured: a fifth of the batch's server time, most of it one full collection). The
collector is paused while a batch is answered (``collection_paused``), without freezing.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_paused = 0
_freeze_pending = False  # a long-lived structure was built while something else paused


@contextmanager
def building_long_lived() -> Iterator[None]:
    """Pause cyclic collection while the block builds a large long-lived structure.

    Nests and works across threads (the collector is process-wide): it runs again when the
    last block ends, after freezing what exists then.
    """
    global _paused, _freeze_pending
    with _lock:
        _paused += 1
        gc.disable()
    try:
        yield
    finally:
        with _lock:
            _paused -= 1
            _freeze_pending = True
            if _paused == 0:
                _resume()


@contextmanager
def collection_paused() -> Iterator[None]:
    """Pause cyclic collection while the block makes many short-lived, acyclic objects (a large
    batch of checks); nothing is frozen for it (what it made is freed by reference counting).

    Nests with ``building_long_lived`` and itself, across threads and across ``await``s (other
    requests meanwhile run without collections too: their cyclic garbage waits a moment).
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
                _resume()


def _resume() -> None:
    """The collector runs again (under ``_lock``), after freezing what a build left, if any."""
    global _freeze_pending
    if _freeze_pending:
        gc.freeze()
        _freeze_pending = False
    gc.enable()
