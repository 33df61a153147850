"""The bounded caches every rendering cache is: least recently used, or oldest, out first."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class LRU:
    """At most ``size`` entries, or entries weighing at most ``size`` when ``weigh`` is given
    (bytes, say); the least recently used go first when a new one would pass the bound.

    A worker renders on one thread; the web process may render previews on several, so
    writes take a lock and a read tolerates an entry evicted under it.
    """

    __slots__ = ("size", "_weigh", "_data", "_weight", "_lock")

    def __init__(self, size: int, *, weigh: Callable[[Any, Any], int] | None = None) -> None:
        if size <= 0:
            raise ValueError("a cache needs a positive bound")
        self.size = size
        self._weigh = weigh
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._weight = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable, default: Any = None) -> Any:
        data = self._data
        try:
            data.move_to_end(key)
            return data[key]
        except KeyError:  # absent (or evicted by another thread just now): a miss
            return default

    def __contains__(self, key: Hashable) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def put(self, key: Hashable, value: Any) -> Any:
        weight = self._weigh(key, value) if self._weigh else 1
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._weight -= self._weigh(key, old) if self._weigh else 1
            self._data[key] = value
            self._weight += weight
            while self._weight > self.size and len(self._data) > 1:
                k, v = self._data.popitem(last=False)
                self._weight -= self._weigh(k, v) if self._weigh else 1
        return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._weight = 0

    @property
    def weight(self) -> int:
        return self._weight


class FIFO(LRU):
    """An :class:`LRU` whose lookups do not reorder it: the oldest entry goes first. For the
    caches a digest looks up hundreds of times (articles, pieces, fragments, encoded
    chunks), where entries recur evenly through an edition: a lookup is then the dict's own
    ``get`` (~0.1 us), not a method and a reordering (~1 us; ~50 us a digest, measured)."""

    __slots__ = ("get",)

    def __init__(self, size: int, *, weigh: Callable[[Any, Any], int] | None = None) -> None:
        super().__init__(size, weigh=weigh)
        self.get = self._data.get  # type: ignore[method-assign]
