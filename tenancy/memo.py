"""Bounded memo tables of the hot path: past its limit a table drops its oldest entry.

The context snapshots bound by ``switch()``, the log-field templates and the
row-level-security statement prefixes are each memoised per tenant. A table
that emptied itself when full would rebuild every entry of a working set
larger than its limit, again and again; these drop one entry at a time
instead, so a working set smaller than the limit is never rebuilt.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar

__all__ = ["MEMO_LIMIT", "remember"]

K = TypeVar("K")
V = TypeVar("V")

#: Entries a memo table keeps: a hot set of 16,384 tenants is never rebuilt.
MEMO_LIMIT = 16_384


def remember(table: OrderedDict[K, V], key: K, value: V, limit: int = MEMO_LIMIT) -> V:
    """Store *value* under *key* in *table* and return it, dropping the oldest past *limit*.

    Safe to call from several threads at once: at worst an entry is dropped
    twice over, and a memo table rebuilds what it lacks.
    """
    while len(table) >= limit:
        try:
            table.popitem(last=False)
        except KeyError:  # emptied meanwhile by another thread
            break
    table[key] = value
    return value
