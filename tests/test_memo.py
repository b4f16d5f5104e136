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


@pytest.mark.django_db
def test_switching_more_tenants_than_the_old_limit_keeps_each_snapshot():
    # 5,000 tenants: past the 4,096 snapshots the memo once held before emptying itself.
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
    assert len(current._INTERNED) <= MEMO_LIMIT
