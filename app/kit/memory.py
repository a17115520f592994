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
import time
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_paused = 0
_freeze_pending = False  # a long-lived structure was built while something else paused
_building = 0  # building_long_lived blocks under way
_paused_since = 0.0  # time.monotonic() when the collector was last paused or made up for
# Batches that overlap without end (several clients, back to back) would keep the collector
# paused for good: past this many seconds of pause without a build under way, the block
# ending collects once (young and old: the index is frozen, so a full collection walks only
# what is not), and the clock restarts.
OVERDUE_SECONDS = 2.0


@contextmanager
def building_long_lived() -> Iterator[None]:
    """Pause cyclic collection while the block builds a large long-lived structure.

    Nests and works across threads (the collector is process-wide): it runs again when the
    last block ends, after freezing what exists then.
    """
    global _paused, _freeze_pending, _building
    with _lock:
        _pause()
        _building += 1
    try:
        yield
    finally:
        with _lock:
            _paused -= 1
            _building -= 1
            _freeze_pending = True
            if _paused == 0:
                _resume()


@contextmanager
def collection_paused() -> Iterator[None]:
    """Pause cyclic collection while the block makes many short-lived, acyclic objects (a large
    batch of checks); nothing is frozen for it (what it made is freed by reference counting).

    Nests with ``building_long_lived`` and itself, across threads and across ``await``s (other
    requests meanwhile run without collections too: their cyclic garbage waits a moment, at
    most about ``OVERDUE_SECONDS`` while no build is under way).
    """
    global _paused, _paused_since
    with _lock:
        _pause()
    overdue = False
    try:
        yield
    finally:
        with _lock:
            _paused -= 1
            if _paused == 0:
                _resume()
            elif _building == 0 and time.monotonic() - _paused_since > OVERDUE_SECONDS:
                overdue = True
                _paused_since = time.monotonic()
        if overdue:
            gc.collect()  # (allowed while disabled; outside the lock: it may take a while)


def _pause() -> None:
    """The collector stops (under ``_lock``); the pause's clock starts with the first block."""
    global _paused, _paused_since
    if _paused == 0:
        _paused_since = time.monotonic()
    _paused += 1
    gc.disable()


def _resume() -> None:
    """The collector runs again (under ``_lock``), after freezing what a build left, if any."""
    global _freeze_pending
    if _freeze_pending:
        gc.freeze()
        _freeze_pending = False
    gc.enable()
