"""Bounded memo tables: full, they drop their oldest entry; a smaller working set stays."""

from __future__ import annotations

from collections import OrderedDict

import pytest

import tenancy
from tenancy import current
from tenancy.memo import MEMO_LIMIT, remember


def test_a_full_table_drops_its_oldest_entries_one_at_a_time():
    table: OrderedDict[int, str] = OrderedDict()
    for i in range(10):
        assert remember(table, i, str(i), limit=4) == str(i)
    assert list(table) == [6, 7, 8, 9]


def test_interned_values_past_the_old_limit_are_bound_again_not_rebuilt():
    # 5,000 values: past the 4,096 snapshots the memo once held before emptying itself.
    values = [f"v{i:04d}" for i in range(5000)]
    snapshots = {}
    for value in values:
        token = current.bind_value("collection_id", value, intern=True)
        snapshots[value] = tenancy.get_context()
        current._CONTEXT.reset(token)
    for value in values:
        token = current.bind_value("collection_id", value, intern=True)
        assert tenancy.get_context() is snapshots[value]
        current._CONTEXT.reset(token)
    assert len(current._INTERNED) <= MEMO_LIMIT


@pytest.mark.django_db
def test_a_warm_switch_binds_the_context_its_tenant_keeps():
    # 5,000 tenants: more than the 4,096 snapshots a memo once held before emptying itself.
    tenants = [f"t{i:04d}" for i in range(5000)]
    for tenant_id in tenants:
        tenancy.register_tenant(tenant_id, tenant_id)
    snapshots = {}
    for tenant_id in tenants:
        with tenancy.switch(tenant_id):
            snapshots[tenant_id] = tenancy.get_context()
    for tenant_id in tenants:  # the same snapshot, not a rebuilt one
        with tenancy.switch(tenant_id):
            assert tenancy.get_context() is snapshots[tenant_id]
    with tenancy.switch("t0001"), tenancy.switch("t0002"):  # on top of a context: a new one
        assert dict(tenancy.get_context().variables) == {"tenant_id": "t0002"}
