"""Field-by-field differences between two policy documents (pure; no I/O).

Rules, exceptions and position limits are matched by id (their order carries no meaning); every
other field is compared by path. Documents are compared as stored: a field one version states and
the other leaves to its default shows as added or removed (for an overlay that is a real change:
a field left out is inherited from the base).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

COLLECTIONS = ("rules", "exceptions", "position_limits")

Change = Literal["added", "removed", "changed"]
_ABSENT = object()


@dataclass(frozen=True)
class FieldChange:
    path: str
    change: Change
    before: Any
    after: Any


@dataclass(frozen=True)
class ItemChanges:
    id: str
    changes: list[FieldChange]


@dataclass(frozen=True)
class CollectionDiff:
    added: list[Mapping[str, Any]] = field(default_factory=list)
    removed: list[Mapping[str, Any]] = field(default_factory=list)
    changed: list[ItemChanges] = field(default_factory=list)


@dataclass(frozen=True)
class DocumentDiff:
    collections: dict[str, CollectionDiff]
    changes: list[FieldChange]

    @property
    def empty(self) -> bool:
        return not self.changes and not any(
            c.added or c.removed or c.changed for c in self.collections.values()
        )


def _is_scalar_list(value: Any) -> bool:
    return isinstance(value, list) and not any(isinstance(v, dict | list) for v in value)


def _walk(before: Any, after: Any, path: str) -> Iterator[FieldChange]:
    if before is _ABSENT and after is _ABSENT:
        return
    if before is _ABSENT:
        yield FieldChange(path, "added", None, after)
    elif after is _ABSENT:
        yield FieldChange(path, "removed", before, None)
    elif isinstance(before, dict) and isinstance(after, dict):
        for key in [*before, *(k for k in after if k not in before)]:
            yield from _walk(
                before.get(key, _ABSENT), after.get(key, _ABSENT), f"{path}.{key}" if path else key
            )
    elif (
        isinstance(before, list)
        and isinstance(after, list)
        and not (_is_scalar_list(before) and _is_scalar_list(after))
    ):
        for index in range(max(len(before), len(after))):
            yield from _walk(
                before[index] if index < len(before) else _ABSENT,
                after[index] if index < len(after) else _ABSENT,
                f"{path}.{index}",
            )
    elif before != after or type(before) is not type(after):
        yield FieldChange(path, "changed", before, after)


def _by_id(document: Mapping[str, Any], name: str) -> dict[str, Mapping[str, Any]]:
    items = document.get(name)
    if not isinstance(items, list):
        return {}
    return {item["id"]: item for item in items if isinstance(item, dict) and "id" in item}


def diff_documents(before: Mapping[str, Any], after: Mapping[str, Any]) -> DocumentDiff:
    """What changed from ``before`` to ``after`` (two stored documents)."""
    collections: dict[str, CollectionDiff] = {}
    for name in COLLECTIONS:
        old, new = _by_id(before, name), _by_id(after, name)
        collections[name] = CollectionDiff(
            added=[new[i] for i in new if i not in old],
            removed=[old[i] for i in old if i not in new],
            changed=[
                ItemChanges(i, changes)
                for i in new
                if i in old and (changes := list(_walk(old[i], new[i], "")))
            ],
        )
    rest_before = {k: v for k, v in before.items() if k not in COLLECTIONS}
    rest_after = {k: v for k, v in after.items() if k not in COLLECTIONS}
    return DocumentDiff(collections=collections, changes=list(_walk(rest_before, rest_after, "")))
