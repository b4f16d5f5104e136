"""Signals sent by the tenant registry.

Each is sent after the change is saved, with ``sender`` the registry class,
``tenant`` the new :class:`~tenancy.TenantInfo` and ``using`` the database alias.
Receivers must not raise: the change has already happened (``tenant_unregistering``,
sent before it, is the exception).
"""

from django.dispatch import Signal

#: A tenant was created by ``register_tenant()``.
tenant_registered = Signal()
#: ``unregister_tenant()`` is about to delete a tenant (``tenant`` is its last state).
#: Sent inside the unregister's transaction on ``using``, before the tenant row and
#: the rows of ``deleted_with_tenant`` models are deleted: receivers delete what
#: they keep for the tenant (rows; state of this process through
#: ``transaction.on_commit``), so that an id registered again starts empty. An
#: exception raised by a receiver aborts the unregister and rolls everything back.
tenant_unregistering = Signal()
#: A tenant was deleted by ``unregister_tenant()`` (``tenant`` is its last state).
tenant_unregistered = Signal()
#: ``activate_tenant()`` turned an inactive tenant active.
tenant_activated = Signal()
#: ``deactivate_tenant()`` turned an active tenant inactive.
tenant_deactivated = Signal()
