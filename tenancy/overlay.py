"""Cached state inside a database transaction: the transaction's own view, and nothing more.

While a connection is in an atomic block, nothing it reads or writes reaches a
store shared beyond it (:mod:`tenancy.state`) until the transaction commits,
and a rollback leaves every store as it was:

- a write (:func:`write`) is an ``on_commit`` callback that sets the fresh
  value in the store; until then it is only in this transaction's view, which
  answers this transaction's own lookups;
- a read that misses the store is kept in the view, not in the store, and is
  copied into the store (``load()``, never overwriting fresher state) when the
  transaction commits.

The view is rebuilt from the pending callbacks whenever Django replaces the
connection's list of them: at commit, at rollback, and when a savepoint is
rolled back (Django drops the callbacks registered inside it). So a rolled
back savepoint takes its writes out of the view as well, and nothing survives
the end of a transaction. Outside an atomic block a write is set at once.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

from django.db import connections, transaction

from .state import MISS

__all__ = ["cached", "load", "read_through", "write", "writes_pending"]

_views: weakref.WeakKeyDictionary[Any, _View] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


class _Write:
    """The ``on_commit`` callback of one write: set ``fresh()`` in ``store`` under ``key``.

    ``value`` is what this transaction sees meanwhile (:data:`MISS` when it is
    not known without a query: the view then reads the database). Run early
    (``captureOnCommitCallbacks(execute=True)`` in a test), it leaves the view:
    the store holds the change from then on.
    """

    __slots__ = ("done", "fresh", "key", "store", "value", "view")

    def __init__(self, store: Any, key: str, fresh: Callable[[], Any], value: Any) -> None:
        self.store = store
        self.key = key
        self.fresh = fresh
        self.value = value
        self.view: _View | None = None
        self.done = False

    def __call__(self) -> None:
        self.done = True
        try:
            value = self.fresh()
        except Exception:
            self.store.delete(self.key)  # never leave the old state behind
            raise
        finally:
            if self.view is not None:
                self.view.ran(self)
        self.store.set(self.key, value)


class _View:
    """What one transaction sees: its own writes and what it read, keyed ``(store name, key)``."""

    __slots__ = ("hooks", "names", "promoting", "stores", "values", "written")

    def __init__(self, hooks: list[Any]) -> None:
        self.hooks = hooks  # the connection's run_on_commit list this view belongs to
        self.values: dict[tuple[str, str], Any] = {}
        self.written: set[tuple[str, str]] = set()  # keys with pending writes
        self.names: set[str] = set()
        self.stores: dict[str, Any] = {}
        self.promoting = False

    def wrote(self, marker: _Write) -> None:
        if marker.done:
            return
        marker.view = self
        key = (marker.store.name, marker.key)
        self.written.add(key)
        self.names.add(key[0])
        if marker.value is MISS:
            self.values.pop(key, None)
        else:
            self.values[key] = marker.value

    def ran(self, marker: _Write) -> None:
        """Forget the writes of a key whose callback ran early: the store has the latest now.

        Callbacks run in order, so any earlier write of the key is in what it stored.
        """
        key = (marker.store.name, marker.key)
        self.written.discard(key)
        self.values.pop(key, None)

    def promote(self) -> None:
        """Copy what the transaction read (and did not write) into the stores, at commit."""
        for (name, key), value in list(self.values.items()):
            if (name, key) not in self.written:
                self.stores[name].load(key, lambda value=value: value)

    def pending(self, connection: Any, name: str) -> bool:
        """Return True while *connection*'s transaction holds uncommitted writes to *name*."""
        if not connection.in_atomic_block:
            return False
        hooks = connection.run_on_commit
        if hooks is self.hooks:
            return name in self.names
        return any(type(f) is _Write and f.store.name == name for _, f, _ in list(hooks))


def _view(connection: Any) -> _View:
    """Return the view of *connection*'s current transaction, rebuilt if Django moved on."""
    hooks = connection.run_on_commit
    view = _views.get(connection)
    if view is None or view.hooks is not hooks:
        view = _View(hooks)
        for _sids, func, _robust in hooks:
            if type(func) is _Write:
                view.wrote(func)
        with _lock:
            _views[connection] = view
    return view


def cached(store: Any, key: str, using: str) -> Any:
    """Return *key*'s value as the current transaction sees it without a query, or ``MISS``."""
    connection = connections[using]
    if not connection.in_atomic_block:
        return store.get(key)
    view = _view(connection)
    name_key = (store.name, key)
    value = view.values.get(name_key, MISS)
    if value is not MISS or name_key in view.written:
        return value
    return store.get(key)  # state this transaction did not touch: the committed one


def load(store: Any, key: str, fetch: Callable[[], Any], using: str) -> Any:
    """Return ``fetch()`` (after a miss) and keep it: in the store, or in the transaction's view."""
    connection = connections[using]
    if not connection.in_atomic_block:
        return store.load(key, fetch)
    value = fetch()
    view = _view(connection)
    name_key = (store.name, key)
    view.values[name_key] = value
    view.stores[store.name] = store
    if name_key not in view.written and not view.promoting:
        view.promoting = True
        transaction.on_commit(view.promote, using=using)
    return value


def read_through(store: Any, key: str, fetch: Callable[[], Any], using: str) -> Any:
    """Return *key*'s value, cached or fetched (see :func:`cached` and :func:`load`)."""
    value = cached(store, key, using)
    return load(store, key, fetch, using) if value is MISS else value


def write(store: Any, key: str, fresh: Callable[[], Any], using: str, value: Any = MISS) -> bool:
    """Set ``fresh()`` under *key* once the transaction on *using* commits (at once outside one).

    *value*, when known, is what the transaction sees meanwhile. Return True
    when the write waits for a commit.
    """
    connection = connections[using]
    marker = _Write(store, key, fresh, value)
    if not connection.in_atomic_block:
        transaction.on_commit(marker, using=using)  # runs now; refused in manual transactions
        return False
    view = _view(connection)
    transaction.on_commit(marker, using=using)
    view.wrote(marker)
    return True


def writes_pending(name: str) -> bool:
    """Return True while any connection's open transaction holds writes to the store *name*."""
    with _lock:
        views = list(_views.items())
    return any(view.pending(connection, name) for connection, view in views)
