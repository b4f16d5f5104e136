"""The memory the process-local tenant cache takes, measured with ``tracemalloc``.

Run by hand: ``.venv/bin/python -m bench.cache_memory [tenants]`` (default
100,000, the default ``TENANCY["LOCAL_CACHE_SIZE"]``). It fills a
``LocalStore`` with tenants built as a database read builds them (their own
id, name, metadata dict and timestamp) and prints what stayed allocated.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
from datetime import UTC, datetime

from tenancy.state import LocalStore, TenantInfo


def measure(count: int, metadata: dict[str, str]) -> int:
    store = LocalStore(timeout=300, size=count)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for n in range(count):
        tenant_id = f"tenant-{n:06d}"
        info = TenantInfo(tenant_id, f"Tenant number {n}", True, dict(metadata), datetime.now(UTC))
        store.set(tenant_id, info)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    assert len(store.data) == count
    return sum(stat.size_diff for stat in after.compare_to(before, "filename"))


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    for label, metadata in (("no metadata", {}), ("metadata {'plan': 'pro'}", {"plan": "pro"})):
        size = measure(count, metadata)
        print(f"{count:,} tenants, {label}: {size / 1e6:.1f} MB ({size / count:.0f} bytes each)")


if __name__ == "__main__":
    main()
