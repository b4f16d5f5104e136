"""Concurrency: every task, thread and sync/async hop sees its own context, and only it."""

from __future__ import annotations

import asyncio
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.db import connections

import tenancy
from tenancy import Context

TENANTS = [f"tenant-{i:02d}" for i in range(20)]


@pytest.fixture
def many_tenants(transactional_db):
    for tenant_id in TENANTS:
        tenancy.register_tenant(tenant_id, tenant_id.title())
    return TENANTS


def closing_connections(fn):
    """Run *fn* in a worker thread and close that thread's connections afterwards."""

    def run(*args):
        try:
            return fn(*args)
        finally:
            connections.close_all()

    return run


async def test_500_concurrent_tasks_with_random_awaits_never_see_each_other(many_tenants):
    rng = random.Random(1234)
    for tenant_id in many_tenants:  # warm the registry off the event loop
        await sync_to_async(tenancy.get_tenant)(tenant_id)
    mismatches: list[tuple[int, object, object]] = []

    async def worker(n: int) -> int:
        tenant_id = many_tenants[n % len(many_tenants)]
        request_id = f"req-{n:08d}"
        async with Context(request_id=request_id):
            await asyncio.sleep(rng.random() / 1000)
            async with tenancy.aswitch(tenant_id):
                for _ in range(5):
                    await asyncio.sleep(rng.random() / 500)
                    seen = (tenancy.get_current_tenant_id(), tenancy.get_current_request_id())
                    if seen != (tenant_id, request_id):
                        mismatches.append((n, seen, (tenant_id, request_id)))
                    # a nested switch in some tasks must not leak to siblings
                    if n % 7 == 0:
                        other = many_tenants[(n + 1) % len(many_tenants)]
                        async with tenancy.aswitch(other):
                            await asyncio.sleep(0)
                            if tenancy.get_current_tenant_id() != other:
                                mismatches.append((n, tenancy.get_current_tenant_id(), other))
            if tenancy.get_current_tenant_id() is not None:
                mismatches.append((n, tenancy.get_current_tenant_id(), None))
        return n

    done = await asyncio.gather(*(worker(n) for n in range(500)))
    assert sorted(done) == list(range(500))
    assert mismatches == []
    assert tenancy.get_context() is None
    assert (await sync_to_async(tenancy.get_stats)())["active_switches"] == 0


def test_thread_pool_workers_see_only_their_own_tenant(many_tenants):
    barrier = threading.Barrier(8)
    errors: list[str] = []

    def job(n: int) -> str:
        tenant_id = many_tenants[n % len(many_tenants)]
        # Every thread of the pool starts each job with nothing bound...
        if tenancy.get_context() is not None and tenancy.get_context().variables:
            errors.append(f"job {n} inherited {tenancy.get_context()}")
        with tenancy.switch(tenant_id):
            if n < 8:
                barrier.wait(timeout=10)  # make the first eight overlap for sure
            for _ in range(100):
                if tenancy.get_current_tenant_id() != tenant_id:
                    errors.append(f"job {n} saw {tenancy.get_current_tenant_id()}")
        # ...and leaves nothing behind for the next job on the same thread.
        if tenancy.get_current_tenant_id() is not None:
            errors.append(f"job {n} leaked")
        return tenant_id

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(closing_connections(job), range(400)))
    assert results == [many_tenants[n % len(many_tenants)] for n in range(400)]
    assert errors == []


async def test_sync_to_async_hops_carry_the_context_and_leave_nothing_behind(many_tenants):
    def read_in_thread() -> tuple[str | None, str | None]:
        return tenancy.get_current_tenant_id(), tenancy.get_current_agent_id()

    def switch_in_thread(tenant_id: str) -> str | None:
        with tenancy.switch(tenant_id):
            inner = tenancy.get_current_tenant_id()
        return inner

    async def task(n: int) -> None:
        tenant_id = many_tenants[n % len(many_tenants)]
        agent_id = f"agent-{n}"
        async with Context(agent_id=agent_id):
            async with tenancy.aswitch(tenant_id):
                await asyncio.sleep(0)
                assert await sync_to_async(read_in_thread)() == (tenant_id, agent_id)
                other = many_tenants[(n + 3) % len(many_tenants)]
                assert await sync_to_async(switch_in_thread)(other) == other
                # the thread's switch was reset in its own frame: nothing copied back
                assert tenancy.get_current_tenant_id() == tenant_id

    for tenant_id in many_tenants:
        await sync_to_async(tenancy.get_tenant)(tenant_id)
    await asyncio.gather(*(task(n) for n in range(100)))
    assert tenancy.get_context() is None


def test_async_to_sync_hops_carry_the_context(many_tenants):
    async def read_async() -> tuple[str | None, str | None]:
        await asyncio.sleep(0)
        return tenancy.get_current_tenant_id(), tenancy.get_current_request_id()

    async def switch_async(tenant_id: str) -> str | None:
        async with tenancy.aswitch(tenant_id):
            await asyncio.sleep(0)
            return tenancy.get_current_tenant_id()

    def job(n: int) -> None:
        tenant_id = many_tenants[n % len(many_tenants)]
        with Context(request_id=f"request-{n:04d}"), tenancy.switch(tenant_id):
            assert async_to_sync(read_async)() == (tenant_id, f"request-{n:04d}")
            other = many_tenants[(n + 1) % len(many_tenants)]
            assert async_to_sync(switch_async)(other) == other
            assert tenancy.get_current_tenant_id() == tenant_id
        assert tenancy.get_context() is None or not tenancy.get_full_context()

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(closing_connections(job), range(40)))


async def test_tasks_created_inside_a_block_inherit_it_but_cannot_change_it(many_tenants):
    await sync_to_async(tenancy.get_tenant)(many_tenants[0])
    await sync_to_async(tenancy.get_tenant)(many_tenants[1])

    async def child() -> str | None:
        seen = tenancy.get_current_tenant_id()
        tenancy.set_current_tenant_id(many_tenants[1])  # changes the child's copy only
        return seen

    async with tenancy.aswitch(many_tenants[0]):
        assert await asyncio.create_task(child()) == many_tenants[0]
        assert tenancy.get_current_tenant_id() == many_tenants[0]


SHARED_AGENT = Context(agent_id="shared-agent")


async def test_one_shared_context_object_entered_by_many_tasks_at_once():
    """A module-level Context entered by 200 overlapping tasks restores each task's own values."""
    errors: list[str] = []

    async def task(n: int) -> None:
        async with Context(request_id=f"request-{n:05d}"):
            async with SHARED_AGENT:
                await asyncio.sleep(random.random() / 500)
                async with SHARED_AGENT:  # re-entered while entered, interleaved with others
                    await asyncio.sleep(0)
                if tenancy.get_current_agent_id() != "shared-agent":
                    errors.append(f"task {n} lost the agent")
            if tenancy.get_full_context() != {"request_id": f"request-{n:05d}"}:
                errors.append(f"task {n} restored {tenancy.get_full_context()}")

    await asyncio.gather(*(task(n) for n in range(200)))
    assert errors == []
    assert tenancy.get_context() is None


async def test_switch_blocks_of_many_tasks_and_threads_at_once_restore_each_ones_own(
    many_tenants,
):
    """200 overlapping tasks and 40 thread jobs, each with its own switch() of one tenant."""
    await sync_to_async(tenancy.get_tenant)(many_tenants[0])
    errors: list[str] = []

    async def task(n: int) -> None:
        async with Context(agent_id=f"agent-{n}"):
            async with tenancy.aswitch(many_tenants[0]):
                await asyncio.sleep(random.random() / 500)
                if tenancy.get_current_tenant_id() != many_tenants[0]:
                    errors.append(f"task {n} saw {tenancy.get_current_tenant_id()}")
            if tenancy.get_full_context() != {"agent_id": f"agent-{n}"}:
                errors.append(f"task {n} restored {tenancy.get_full_context()}")

    def thread_job(n: int) -> None:
        with tenancy.switch(many_tenants[0]):
            with tenancy.switch(many_tenants[0]):
                pass
            if tenancy.get_current_tenant_id() != many_tenants[0]:
                errors.append(f"thread job {n} lost the tenant")
        if tenancy.get_current_tenant_id() is not None:
            errors.append(f"thread job {n} leaked")

    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = [
            loop.run_in_executor(pool, closing_connections(thread_job), n) for n in range(40)
        ]
        await asyncio.gather(*(task(n) for n in range(200)), *threaded)
    assert errors == []
    assert (await sync_to_async(tenancy.get_stats)())["active_switches"] == 0


async def test_one_switch_object_shared_by_two_tasks_is_refused_not_mixed_up(many_tenants):
    """The second task entering a shared switch() object gets a clear error; the first is intact."""
    await sync_to_async(tenancy.get_tenant)(many_tenants[0])
    shared = tenancy.aswitch(many_tenants[0])
    inside = asyncio.Event()
    release = asyncio.Event()

    async def first() -> str | None:
        async with shared:
            inside.set()
            await release.wait()
            return tenancy.get_current_tenant_id()

    async def second() -> str:
        await inside.wait()
        try:
            with pytest.raises(RuntimeError, match="already entered") as error:
                async with shared:
                    pass  # pragma: no cover
            assert tenancy.get_current_tenant_id() is None
            return str(error.value)
        finally:
            release.set()

    seen, message = await asyncio.gather(first(), second())
    assert seen == many_tenants[0]
    assert "switch(tenant_id) again for each block" in message
    assert (await sync_to_async(tenancy.get_stats)())["active_switches"] == 0


def test_leaving_a_block_from_another_thread_is_a_clear_error():
    block = Context(agent_id="a-1")
    block.__enter__()
    try:

        def leave_elsewhere() -> str:
            with pytest.raises(RuntimeError) as error:
                block.__exit__()
            return str(error.value)

        with ThreadPoolExecutor(max_workers=1) as pool:
            assert "did not enter it" in pool.submit(leave_elsewhere).result()
    finally:
        block.__exit__()
    assert tenancy.get_context() is None or not tenancy.get_full_context()


async def test_leaving_a_parent_tasks_block_from_a_child_task_is_a_clear_error():
    block = Context(agent_id="a-1")
    await block.__aenter__()
    try:

        async def child() -> None:
            with pytest.raises(RuntimeError, match="did not enter it"):
                await block.__aexit__()

        await asyncio.create_task(child())
        assert tenancy.get_current_agent_id() == "a-1"  # the parent's block is intact
    finally:
        await block.__aexit__()
    assert tenancy.get_context() is None or not tenancy.get_full_context()
