"""The tenant registry: lifecycle, the warm path, ``switch``/``aswitch``, the bound tenant.

Tenant state is cached (:mod:`tenancy.state`) so that a warm switch makes no
database query and no network round trip. Every change made through Django
(this registry, the admin, ``Tenant.save()``) writes the fresh state when its
transaction commits; until then only that transaction sees it
(:mod:`tenancy.overlay`), and a rollback leaves the caches as they were.
``QuerySet.update()`` sends no signal: change tenants through the registry or
``save()``.

:func:`require_tenant_id` is the one answer to "which tenant is bound": the
scoped managers, the write guards, the permissions and ``require_tenant()``
all ask it.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextvars import Token
from typing import Any

from asgiref.sync import sync_to_async
from django.db import IntegrityError, transaction
from django.db.models.deletion import ProtectedError

from . import signals
from .conf import tenancy_settings
from .current import (
    _CONTEXT,
    RuntimeContext,
    bind_tenant,
    get_current_tenant_id,
    set_registered_tenant,
)
from .current import get_context as _get_context
from .exceptions import (
    TenantAlreadyRegisteredError,
    TenantHasDataError,
    TenantInactiveError,
    TenantInUseError,
    TenantNotRegisteredError,
    TenantRequiredError,
)
from .ids import is_valid_tenant_id, validate_tenant_id
from .outage import database_guard
from .overlay import cached, load, write, writes_pending
from .state import MISS, CoherentStore, LocalStore, TenantInfo, make_store
from .state import mark_used as _mark_used
from .stats.counters import _FOLD_AT, counters

__all__ = [
    "TenantContext",
    "TenantInfo",
    "bound_tenant_id",
    "require_tenant_id",
    "tenant_context",
]

_reset = _CONTEXT.reset
# The counters' deque and its append, bound once: a switch records itself in one C call.
_record_switch = counters.record_switch
_switch_events = counters._switches
_monotonic = time.monotonic
# What the warm path reads while a transaction holds uncommitted tenant changes:
# nothing, so every lookup takes the full path, which sees that transaction's view.
_NO_WARM: OrderedDict[str, TenantInfo] = OrderedDict()


def bound_tenant_id() -> str | None:
    """Return the bound tenant id, or ``None`` when no tenant is bound.

    ``None`` and the reserved ids (``default``) both mean "no tenant".
    """
    tenant_id = get_current_tenant_id()
    if tenant_id is None or tenant_id in tenancy_settings.RESERVED_TENANT_IDS:
        return None
    return tenant_id


def require_tenant_id() -> str:
    """Return the bound tenant id, or raise before any scoped SQL runs.

    ``TenantRequiredError`` when none is bound (``None`` or a reserved id such
    as ``default``), ``InvalidTenantIdError`` for a malformed id,
    ``TenantNotRegisteredError`` for an id no tenant is registered under. An
    inactive tenant is accepted: only trusted code binds one (a context bag,
    the admin); ``switch()`` and the middleware never do. The answer is kept on
    the bound snapshot, so a warm path costs one attribute read and no query.
    Every caller that needs the bound tenant (the scoped managers, the write
    guards, the permissions, ``Context.get_tenant_id()``, ``require_tenant()``)
    asks this function, so they all give the same answer.
    """
    ctx = _get_context()
    if ctx is None:
        raise TenantRequiredError()
    registered = ctx._registered_tenant
    if registered is not None:
        return registered
    tenant_id = ctx._data.get("tenant_id")
    if tenant_id is None or tenant_id in tenancy_settings.RESERVED_TENANT_IDS:
        raise TenantRequiredError()
    if tenant_context._lookup(tenant_id) is None:  # validates the format; cached
        raise TenantNotRegisteredError(tenant_id=tenant_id)
    set_registered_tenant(ctx, tenant_id)
    return tenant_id


_instances: weakref.WeakSet[TenantContext] = weakref.WeakSet()


class _Switch:
    """``with``/``async with`` block bound to one tenant; see :meth:`TenantContext.switch`.

    One object per block: ``switch()`` returns a fresh one per call, and the
    object keeps the token of its one entry. Entering it again while it is
    entered (nested, or from another task or thread) is a ``RuntimeError``.

    Entering a warm tenant is the hot path of the whole package: one dict
    lookup, one clock read, one read of the cached snapshot's CLOCK bit, the
    context the snapshot keeps (reused when nothing else is bound), one
    ``ContextVar.set`` and one ``deque.append``, written out in ``__enter__``
    because every Python call costs about as much as the set itself. Of the
    tenant's own memory it reads the snapshot it returns and the context that
    snapshot keeps, and it writes nothing shared, so its cost grows little
    with the number of tenants in use. Anything else (a shared cache, a miss,
    an inactive tenant, a malformed id) takes the full path through the
    registry, which raises.
    """

    __slots__ = ("_registry", "_tenant_id", "_token")

    def __init__(self, registry: TenantContext, tenant_id: str) -> None:
        self._registry = registry
        self._tenant_id = tenant_id
        self._token: Token[RuntimeContext | None] | None = None

    # The warm path is written out in each method: a Python call costs about as
    # much as the ContextVar.set itself.

    def __enter__(self) -> TenantInfo:
        if self._token is not None:
            raise _entered_twice()
        tenant_id = self._tenant_id
        registry = self._registry
        local = registry._local
        try:
            info = local.get(tenant_id)
        except TypeError:  # unhashable, so malformed: the full path says so
            info = None
        if (
            info is None
            or info._expires < (now := _monotonic())
            or now >= registry._recheck_at
            or not info.active
        ):
            return self._bind(registry.get_active_tenant(tenant_id))
        if not info._used:  # the CLOCK bit: written once per lap of the hand, not per switch
            _mark_used(info, True)
        bound = info._bound
        self._token = bind_tenant(info.bound_context() if bound is None else bound)
        _record_switch(info.tenant_id)
        if len(_switch_events) > _FOLD_AT:
            counters.fold()
        return info

    async def __aenter__(self) -> TenantInfo:
        if self._token is not None:
            raise _entered_twice()
        tenant_id = self._tenant_id
        registry = self._registry
        local = registry._local
        try:
            info = local.get(tenant_id)
        except TypeError:
            info = None
        if (
            info is None
            or info._expires < (now := _monotonic())
            or now >= registry._recheck_at
            or not info.active
        ):
            # A cold lookup reads the database off the event loop.
            return self._bind(await registry.aget_active_tenant(tenant_id))
        if not info._used:  # the CLOCK bit: written once per lap of the hand, not per switch
            _mark_used(info, True)
        bound = info._bound
        self._token = bind_tenant(info.bound_context() if bound is None else bound)
        _record_switch(info.tenant_id)
        if len(_switch_events) > _FOLD_AT:
            counters.fold()
        return info

    def _bind(self, info: TenantInfo) -> TenantInfo:
        if self._token is not None:  # entered meanwhile, while the cold lookup awaited
            raise _entered_twice()
        self._token = bind_tenant(info.bound_context())
        _record_switch(info.tenant_id)
        counters.fold_if_full()
        return info

    def __exit__(self, *exc_info: object) -> None:
        token = self._token
        if token is None:
            raise RuntimeError("This switch() block was left without being entered.")
        self._token = None
        try:
            _reset(token)
        finally:
            _record_switch(None)

    async def __aexit__(self, *exc_info: object) -> None:
        token = self._token
        if token is None:
            raise RuntimeError("This switch() block was left without being entered.")
        self._token = None
        try:
            _reset(token)
        finally:
            _record_switch(None)


def _entered_twice() -> RuntimeError:
    return RuntimeError(
        "This switch() block is already entered. Call switch(tenant_id) again for "
        "each block (it returns a new object per call) instead of entering one twice "
        "or sharing it between tasks or threads."
    )


class TenantContext:
    """Tenant lifecycle and switching for one database alias.

    ``tenancy.tenant_context`` is the instance for the ``default`` alias; its
    methods are also module-level functions of :mod:`tenancy`.
    """

    def __init__(self, using: str = "default") -> None:
        self.using = using
        self._store: LocalStore | CoherentStore | None = None
        # The local store's entries, read directly by a warm switch (the local copy
        # in front of a shared cache, too); _NO_WARM while a transaction holds
        # uncommitted tenant changes.
        self._local: OrderedDict[str, TenantInfo] = _NO_WARM
        # When the local entries must next be checked against other processes
        # (the shared state version); never, with a local-memory cache.
        self._recheck_at = 0.0
        self._store_lock = threading.Lock()
        _instances.add(self)

    def __repr__(self) -> str:
        return f"TenantContext(using={self.using!r})"

    # -- cached state ---------------------------------------------------------

    @property
    def store(self) -> LocalStore | CoherentStore:
        store = self._store
        if store is None:
            with self._store_lock:
                store = self._store
                if store is None:
                    store = self._store = make_store(self.using)
                    self._recheck_at = 0.0
        return store

    def reset_cache(self) -> None:
        """Forget every cached tenant and re-read the cache settings (tests, settings changes)."""
        self._local = _NO_WARM
        self._store = None
        self._recheck_at = 0.0

    def _fetch(self, tenant_id: str) -> TenantInfo | None:
        from .models.tenants import Tenant

        with database_guard():
            tenant = Tenant.objects.using(self.using).filter(tenant_id=tenant_id).first()
        return TenantInfo.from_model(tenant) if tenant is not None else None

    def _load(self, tenant_id: str) -> TenantInfo | None:
        """Read *tenant_id* from the database and keep it (in this transaction only, inside one)."""
        value: TenantInfo | None = load(
            self.store, tenant_id, lambda: self._fetch(tenant_id), self.using
        )
        return value

    def _refresh(self, store: LocalStore | CoherentStore) -> None:
        """Keep the warm path true: recheck other processes' changes when due; re-enable it."""
        if _monotonic() >= self._recheck_at:
            self._recheck_at = store.recheck()
        if self._local is _NO_WARM:
            with self._store_lock:
                if self._store is store and not writes_pending(store.name):
                    self._local = store.data

    def _peek(self, tenant_id: Any) -> Any:
        """Return the cached ``TenantInfo``, ``None`` for a known absence, or ``MISS``.

        Raises ``InvalidTenantIdError`` for a malformed id. Inside a transaction
        the answer is that transaction's (:func:`tenancy.overlay.cached`).
        """
        store = self.store
        self._refresh(store)
        validate_tenant_id(tenant_id)
        return cached(store, tenant_id, self.using)

    def is_cached(self, tenant_id: str) -> bool:
        """Return True when *tenant_id*'s state is known without a database query."""
        return self._peek(tenant_id) is not MISS

    def _lookup(self, tenant_id: Any) -> TenantInfo | None:
        info = self._peek(tenant_id)
        return self._load(tenant_id) if info is MISS else info

    def _warm(self, tenant_id: Any) -> TenantInfo | None:
        """Return the tenant if the local store holds it fresh and active, else ``None``.

        The hot path of every switch and request: one dict lookup, one clock
        read and the snapshot's CLOCK bit, no validation (only validated ids are ever
        stored). Anything else (a miss, an expired, absent or inactive tenant,
        a recheck due, a transaction with uncommitted tenant changes, a
        malformed or unhashable id) returns ``None`` for the full path, which
        validates, reads through and raises the right error.
        """
        local = self._local
        try:
            info = local.get(tenant_id)
        except TypeError:  # unhashable, so malformed
            return None
        if info is not None and info._expires >= (now := _monotonic()) and now < self._recheck_at:
            if info.active:
                if not info._used:
                    _mark_used(info, True)
                return info
        return None

    def _check_active(self, tenant_id: Any, info: TenantInfo | None) -> TenantInfo:
        if info is None:
            raise TenantNotRegisteredError(tenant_id=tenant_id)
        if not info.active:
            raise TenantInactiveError(tenant_id=tenant_id)
        return info

    def get_active_tenant(self, tenant_id: str) -> TenantInfo:
        """Return the tenant if it is registered and active, else raise.

        ``InvalidTenantIdError``, ``TenantNotRegisteredError`` or
        ``TenantInactiveError``; no database query once the tenant is cached.
        """
        return self._warm(tenant_id) or self._check_active(tenant_id, self._lookup(tenant_id))

    async def aget_active_tenant(self, tenant_id: str) -> TenantInfo:
        """Async :meth:`get_active_tenant`: a cold lookup reads the database off the loop."""
        warm = self._warm(tenant_id)
        if warm is not None:
            return warm

        info = self._peek(tenant_id)
        if info is MISS:
            # In the worker thread: its connection's transaction, if any, decides.
            info = await sync_to_async(self._lookup)(tenant_id)
        return self._check_active(tenant_id, info)

    def invalidate(self, tenant_id: str, fresh: TenantInfo | None) -> None:
        """Store *fresh* as *tenant_id*'s state once the transaction commits (at once outside one).

        Until then only the transaction that made the change sees it; while it
        is open, warm switches take the full path, which sees its view.
        """
        store = self.store
        with self._store_lock:
            if write(store, tenant_id, lambda: fresh, self.using, fresh):
                self._local = _NO_WARM

    # -- lifecycle --------------------------------------------------------------

    def register_tenant(
        self, tenant_id: str, name: str, metadata: Mapping[str, Any] | None = None
    ) -> TenantInfo:
        """Create a tenant, active by default; ``TenantAlreadyRegisteredError`` if it exists."""
        from .models.tenants import Tenant

        validate_tenant_id(tenant_id)
        if not isinstance(name, str) or not name.strip():
            raise ValueError("A tenant needs a non-empty name.")
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError("metadata must be a mapping (a JSON object), or None.")
        try:
            with transaction.atomic(using=self.using):
                tenant = Tenant.objects.using(self.using).create(
                    tenant_id=tenant_id, name=name.strip(), metadata=dict(metadata or {})
                )
        except IntegrityError:
            raise TenantAlreadyRegisteredError(tenant_id=tenant_id) from None
        info = TenantInfo.from_model(tenant)
        signals.tenant_registered.send(sender=type(self), tenant=info, using=self.using)
        return info

    def unregister_tenant(self, tenant_id: str) -> None:
        """Delete a tenant and everything it owned, so that a new one of the id starts empty.

        Refused while it is current (``TenantInUseError``) or while rows of
        tenant-scoped models reference it (``TenantHasDataError``), except the
        models marked ``deleted_with_tenant`` (conversation memory), whose rows
        are deleted with it. Memberships and statistics buckets go by cascade;
        receivers of ``tenant_unregistering`` delete the rest (runtime settings,
        this process's cached state), all in one transaction.
        """
        from .models.tenants import Tenant

        validate_tenant_id(tenant_id)
        if get_current_tenant_id() == tenant_id:
            raise TenantInUseError(tenant_id=tenant_id)
        tenant = Tenant.objects.using(self.using).filter(tenant_id=tenant_id).first()
        if tenant is None:
            raise TenantNotRegisteredError(tenant_id=tenant_id)
        owners = self.models_with_data(tenant_id)
        if owners:
            raise TenantHasDataError(tenant_id=tenant_id, models=owners)
        info = TenantInfo.from_model(tenant)
        try:
            with transaction.atomic(using=self.using):
                signals.tenant_unregistering.send(sender=type(self), tenant=info, using=self.using)
                for model in _scoped_models(deleted_with_tenant=True):
                    model._base_manager.using(self.using).filter(tenant_id=tenant_id).delete()
                tenant.delete(using=self.using)
        except ProtectedError as exc:  # rows written since the check above
            labels = sorted({obj._meta.label for obj in exc.protected_objects})
            raise TenantHasDataError(tenant_id=tenant_id, models=labels) from None
        signals.tenant_unregistered.send(sender=type(self), tenant=info, using=self.using)

    def models_with_data(self, tenant_id: str) -> list[str]:
        """Return the labels of tenant-scoped models whose rows of *tenant_id* keep it registered.

        Models marked ``deleted_with_tenant`` are not listed: their rows go with it.
        """
        return [
            model._meta.label
            for model in _scoped_models(deleted_with_tenant=False)
            if model._base_manager.using(self.using).filter(tenant_id=tenant_id).exists()
        ]

    def _set_active(self, tenant_id: str, active: bool) -> TenantInfo:
        from .models.tenants import Tenant

        validate_tenant_id(tenant_id)
        tenant = Tenant.objects.using(self.using).filter(tenant_id=tenant_id).first()
        if tenant is None:
            raise TenantNotRegisteredError(tenant_id=tenant_id)
        if tenant.active != active:
            tenant.active = active
            tenant.save(using=self.using, update_fields=["active", "updated_at"])
            signal = signals.tenant_activated if active else signals.tenant_deactivated
            info = TenantInfo.from_model(tenant)
            signal.send(sender=type(self), tenant=info, using=self.using)
            return info
        return TenantInfo.from_model(tenant)

    def activate_tenant(self, tenant_id: str) -> TenantInfo:
        """Mark a tenant active: new switches and requests accept it at once."""
        return self._set_active(tenant_id, True)

    def deactivate_tenant(self, tenant_id: str) -> TenantInfo:
        """Mark a tenant inactive: new switches and requests refuse it at once."""
        return self._set_active(tenant_id, False)

    # -- queries ------------------------------------------------------------------

    def is_tenant_registered(self, tenant_id: str) -> bool:
        """Return True if a tenant is registered under *tenant_id* (False if malformed)."""
        return is_valid_tenant_id(tenant_id) and self._lookup(tenant_id) is not None

    def is_tenant_active(self, tenant_id: str) -> bool:
        """Return True if *tenant_id* is registered and active (False if malformed)."""
        if not is_valid_tenant_id(tenant_id):
            return False
        info = self._lookup(tenant_id)
        return info is not None and info.active

    def get_tenant(self, tenant_id: str) -> TenantInfo | None:
        """Return the tenant's :class:`TenantInfo`, or ``None`` if it is not registered."""
        return self._lookup(tenant_id)

    def list_tenants(self, *, limit: int | None = None, offset: int = 0) -> list[TenantInfo]:
        """Return the registered tenants, ordered by id (reads the database).

        Every tenant by default; *limit* and *offset* return one page of them.
        :meth:`iter_tenants` walks them all in constant memory.
        """
        from .models.tenants import Tenant

        if offset < 0 or (limit is not None and limit < 0):
            raise ValueError("limit and offset must not be negative.")
        rows = Tenant.objects.using(self.using).order_by("tenant_id")
        end = None if limit is None else offset + limit
        return [TenantInfo.from_model(t) for t in rows[offset:end]]

    def iter_tenants(
        self, active: bool | None = None, *, chunk_size: int = 2000
    ) -> Iterator[TenantInfo]:
        """Yield the registered tenants ordered by id, *chunk_size* rows at a time.

        *active* keeps only active (``True``) or inactive (``False``) tenants.
        Memory stays constant whatever the number of tenants (keyset pages on
        the unique ``tenant_id``, not a server-side cursor: it works inside and
        outside transactions, on every database).
        """
        from .models.tenants import Tenant

        rows = Tenant.objects.using(self.using).order_by("tenant_id")
        if active is not None:
            rows = rows.filter(active=active)
        after = None
        while True:
            page = list(
                rows.filter(tenant_id__gt=after)[:chunk_size] if after else rows[:chunk_size]
            )
            for tenant in page:
                yield TenantInfo.from_model(tenant)
            if len(page) < chunk_size:
                return
            after = page[-1].tenant_id

    # -- switching ------------------------------------------------------------------

    def switch(self, tenant_id: str) -> _Switch:
        """Bind *tenant_id* for a ``with`` block, yielding its :class:`TenantInfo`.

        Unknown ids raise ``TenantNotRegisteredError``, inactive ones
        ``TenantInactiveError``, malformed ones ``InvalidTenantIdError``; nothing
        is bound then. Leaving the block restores the previous tenant, also on
        exceptions and when nested.
        """
        return _Switch(self, tenant_id)

    def aswitch(self, tenant_id: str) -> _Switch:
        """Bind *tenant_id* for an ``async with`` block; same rules as :meth:`switch`."""
        return _Switch(self, tenant_id)

    def get_current_tenant(self) -> str | None:
        """Return the bound tenant id, or ``None``."""
        return get_current_tenant_id()

    def require_tenant(self) -> str:
        """Return the bound tenant id, or raise ``TenantRequiredError``."""
        return require_tenant_id()

    def get_stats(self) -> dict[str, Any]:
        """Return tenant counts (database) and this process's switch counters."""
        from django.db.models import Count, Q

        from .models.tenants import Tenant

        totals = Tenant.objects.using(self.using).aggregate(
            total=Count("pk"), active=Count("pk", filter=Q(active=True))
        )
        return {
            "total_tenants": totals["total"],
            "active_tenants": totals["active"],
            "total_switches": counters.total_switches,
            "active_switches": counters.active_switches,
            "current_tenant": get_current_tenant_id(),
        }


def _scoped_models(*, deleted_with_tenant: bool) -> list[Any]:
    """Return the installed tenant-scoped models with this ``deleted_with_tenant`` mark."""
    from django.apps import apps

    return [
        model
        for model in apps.get_models()
        if getattr(model, "tenant_scoped", False)
        and bool(getattr(model, "deleted_with_tenant", False)) == deleted_with_tenant
    ]


tenant_context = TenantContext()


def invalidate_tenant(tenant_id: str, fresh: TenantInfo | None, using: str) -> None:
    """Invalidate *tenant_id* in every registry of database alias *using*."""
    for registry in list(_instances):
        if registry.using == using:
            registry.invalidate(tenant_id, fresh)


def reset_all_caches() -> None:
    """Forget cached tenants in every registry (called when cache settings change)."""
    for registry in list(_instances):
        registry.reset_cache()


# Module-level functions of the default registry (also exported from ``tenancy``).
register_tenant = tenant_context.register_tenant
unregister_tenant = tenant_context.unregister_tenant
activate_tenant = tenant_context.activate_tenant
deactivate_tenant = tenant_context.deactivate_tenant
is_tenant_registered = tenant_context.is_tenant_registered
is_tenant_active = tenant_context.is_tenant_active
get_tenant = tenant_context.get_tenant
list_tenants = tenant_context.list_tenants
iter_tenants = tenant_context.iter_tenants
switch = tenant_context.switch
aswitch = tenant_context.aswitch
get_current_tenant = tenant_context.get_current_tenant
require_tenant = tenant_context.require_tenant
get_stats = tenant_context.get_stats
