"""The cyclic collector's pauses (app.kit.memory): nesting, and what is frozen when."""

from __future__ import annotations

import gc
import time
from typing import Any

import pytest

from app.kit import memory
from app.kit.memory import building_long_lived, collection_paused


def test_a_paused_collection_resumes_without_freezing() -> None:
    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    with collection_paused():
        assert not gc.isenabled()
        made = [[n] for n in range(1000)]  # short-lived containers, as a batch makes
        with collection_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pause still holds
    assert gc.isenabled()
    assert gc.get_freeze_count() == frozen  # nothing of the batch was frozen
    del made


def test_a_build_ending_inside_a_pause_is_frozen_when_the_pause_ends() -> None:
    """A compilation finishing while a batch is answered: the collector stays paused for the
    batch, and what the build made is frozen once the last pause ends (not lost)."""
    gc.unfreeze()
    with collection_paused():
        with building_long_lived():
            built = [{"template": n} for n in range(1000)]
        assert not gc.isenabled()
        assert gc.get_freeze_count() == 0  # not yet: the batch's pause still holds
    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(built)
    gc.unfreeze()


def test_a_build_freezes_at_its_end_when_nothing_else_pauses() -> None:
    gc.unfreeze()
    with building_long_lived():
        assert not gc.isenabled()
        built = [{"template": n} for n in range(1000)]
    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(built)
    gc.unfreeze()


def test_pauses_that_overlap_without_end_still_collect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches back to back from several clients keep the collector paused: once the pause is
    overdue (and no build is under way), a batch ending collects; a build's pause is left
    alone."""
    monkeypatch.setattr(memory, "OVERDUE_SECONDS", 0.0)
    collections: list[int] = []

    def seen(phase: str, info: dict[str, Any]) -> None:
        if phase == "stop":
            collections.append(info["generation"])

    gc.callbacks.append(seen)
    try:
        with collection_paused():
            with collection_paused():
                time.sleep(0.01)
            assert collections == [2]  # the inner batch ended overdue: one full collection
            assert not gc.isenabled()
            with building_long_lived(), collection_paused():
                time.sleep(0.01)
            assert collections == [2]  # a build under way: never collected under it
        assert gc.isenabled()
    finally:
        gc.callbacks.remove(seen)
        gc.unfreeze()
