"""Sample counts per stack in two arrays: the parser's compact form of a profile's stacks."""

from __future__ import annotations

from array import array
from collections.abc import ItemsView, Iterator, Mapping, ValuesView
from typing import Any, Generic, TypeVar

Stack = TypeVar("Stack", bound=tuple[Any, ...])

_MAX_COUNT = (1 << 63) - 1


class StackCounts(Mapping[Stack, int], Generic[Stack]):
    """Sample counts per stack in two arrays: the parser's form of ``StackProfile.stacks``.

    A dict of 20,000 stacks takes 650 KB; the stacks (shared with the other profiles)
    and their counts side by side take half, and a fleet's report holds every host's.
    Iterating is as fast as a dict's; the first lookup by stack builds an index.
    """

    __slots__ = ("_counts", "_index", "_stacks")

    def __init__(self, stacks: list[Stack], counts: list[int]) -> None:
        """``stacks``: distinct; ``counts``: theirs, each within 64 bits (see :meth:`of`)."""
        self._stacks = stacks
        self._counts = array("q", counts)
        self._index: dict[Stack, int] | None = None

    @classmethod
    def of(cls, stacks: list[Stack], counts: list[int]) -> Mapping[Stack, int]:
        """The distinct ``stacks`` and their ``counts`` compacted, or as a dict when a count
        does not fit 64 bits (device output is untrusted)."""
        if any(count > _MAX_COUNT or count < -_MAX_COUNT for count in counts):
            return dict(zip(stacks, counts, strict=True))
        return cls(stacks, counts)

    def __getitem__(self, stack: Stack) -> int:
        if self._index is None:
            self._index = {s: i for i, s in enumerate(self._stacks)}
        return self._counts[self._index[stack]]

    def __iter__(self) -> Iterator[Stack]:
        return iter(self._stacks)

    def __len__(self) -> int:
        return len(self._stacks)

    def items(self) -> ItemsView[Stack, int]:
        return _Items(self)

    def values(self) -> ValuesView[int]:
        return _Values(self)

    def __repr__(self) -> str:
        return f"StackCounts({dict(self.items())!r})"


class _Items(ItemsView[Stack, int]):
    _mapping: StackCounts[Stack]

    def __iter__(self) -> Iterator[tuple[Stack, int]]:
        return zip(self._mapping._stacks, self._mapping._counts, strict=True)


class _Values(ValuesView[int]):
    _mapping: StackCounts[Any]

    def __iter__(self) -> Iterator[int]:
        return iter(self._mapping._counts)
