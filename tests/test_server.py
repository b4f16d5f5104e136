"""A real server: uvicorn on 127.0.0.1, 100 concurrent clients, 24 tenants, zero bleed."""

import asyncio
import contextlib
import json
import os
import random
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from django.db import connection

import tenancy
from tenancy.ids import is_valid_request_id
from tenancy.registry import tenant_context

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parent.parent
TENANTS = [f"tenant-{n:02d}" for n in range(24)]
CLIENTS = 100
REQUESTS_PER_CLIENT = 20  # 2,000 requests in all
PATHS = ["/req/server/sync", "/req/server/async", "/req/server/drf"]
ACCESS = re.compile(
    r'logger=tenancy\.access message="[^"]*" request_id=(\S+) tenant_id=(\S+) .*status_code=(\d+)'
)
VIEW = re.compile(r'message="server (?:sync|async|drf) view" request_id=(\S+) tenant_id=(\S+)')
ERROR = re.compile(
    r'logger=django\.request message="Internal [^"]*" request_id=(\S+) tenant_id=(\S+)'
)


@contextlib.contextmanager
def run_server(log_path, settings="tests.server_settings", env=None):
    """Serve *settings* with uvicorn on a free port of 127.0.0.1; always stop it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    port = sock.getsockname()[1]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": settings,
        "TENANCY_SERVER_DB_NAME": str(connection.settings_dict["NAME"]),
        "PYTHONPATH": str(ROOT),
        **(env or {}),
    }
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.asgi", str(sock.fileno())],
            cwd=ROOT,
            env=env,
            pass_fds=(sock.fileno(),),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    sock.close()  # the server holds its own copy
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, Path(log_path).read_text()
            try:
                if httpx.get(url + "/req/open", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        yield url, port, process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


class Connection:
    """A minimal HTTP/1.1 keep-alive client on one socket: cheap enough to run 100 at once."""

    def __init__(self, port):
        self.port = port

    async def __aenter__(self):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc_info):
        self.writer.close()
        await self.writer.wait_closed()

    async def get(self, target, headers):
        lines = [f"GET {target} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await self.writer.drain()
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        status_line, *header_lines = head.rstrip("\r\n").split("\r\n")
        received = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            received[name.strip().lower()] = value.strip()
        if "content-length" in received:
            body = await self.reader.readexactly(int(received["content-length"]))
        else:
            assert received.get("transfer-encoding") == "chunked", received
            body = b""
            while size := int((await self.reader.readline()).strip(), 16):
                body += await self.reader.readexactly(size)
                await self.reader.readline()
            await self.reader.readline()
        return int(status_line.split(" ")[1]), received, body


async def load(port):
    """CLIENTS concurrent clients, each sending REQUESTS_PER_CLIENT requests; return the results."""
    rng = random.Random(1234)
    plan = []
    for n in range(CLIENTS * REQUESTS_PER_CLIENT):
        kind = rng.random()
        plan.append(
            {
                "tenant": rng.choice(TENANTS),
                "path": rng.choice(PATHS),
                "fail": kind < 0.1,
                "request_id": None if 0.1 <= kind < 0.2 else f"load-{n:05d}-{uuid.uuid4().hex}",
            }
        )
    results = []

    async def client(items):
        async with Connection(port) as connection:
            for item in items:
                headers = {"X-Tenant-ID": item["tenant"]}
                if item["request_id"]:
                    headers["X-Request-ID"] = item["request_id"]
                target = item["path"] + ("?fail=1" if item["fail"] else "")
                status, received, body = await connection.get(target, headers)
                data = json.loads(body) if status == 200 else None
                results.append((item, status, received["x-request-id"], data))

    await asyncio.gather(*(client(plan[n::CLIENTS]) for n in range(CLIENTS)))
    return results


def test_concurrent_requests_never_bleed(transactional_db, tmp_path):
    for tenant_id in TENANTS:
        tenancy.register_tenant(tenant_id, tenant_id.title())
    log_path = tmp_path / "server.log"
    with run_server(log_path) as (url, port, process):
        started = time.monotonic()
        results = asyncio.run(load(port))
        elapsed = time.monotonic() - started
        # With a shared cache, a tenant deactivated here is refused there within the
        # recheck interval (0.5 s, at most 1 s); the poll allows 1 s more for a loaded machine.
        tenancy.deactivate_tenant(TENANTS[0])
        deadline = time.monotonic() + 2.0
        while True:
            refused = httpx.get(url + "/req/server/drf", headers={"X-Tenant-ID": TENANTS[0]})
            if refused.status_code == 403 or not tenant_context.store.shared:
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
    assert process.returncode is not None, "the server is still running"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)

    assert len(results) == CLIENTS * REQUESTS_PER_CLIENT >= 2000
    returned_ids = [rid for _item, _status, rid, _body in results]
    assert len(set(returned_ids)) == len(results), "a request id was served twice"
    failures = 0
    for item, status, returned_id, body in results:
        assert is_valid_request_id(returned_id)
        if item["request_id"]:
            assert returned_id == item["request_id"]
        if item["fail"]:
            failures += 1
            assert status == 500
            continue
        assert status == 200, (item, status)
        assert body["tenant_id"] == body["tenant"] == item["tenant"], (item, body)
        assert body["request_id"] == body["request_attr"] == returned_id, (item, body)
    assert failures > 100
    if tenant_context.store.shared:  # a process-local cache learns it at expiry instead
        assert refused.status_code == 403 and refused.json()["code"] == "tenant_inactive"

    # The server's own log lines agree: one access line per request, with its tenant.
    tenant_of = {rid: item["tenant"] for item, _status, rid, _body in results}
    log = log_path.read_text()
    access = [m.groups() for m in ACCESS.finditer(log) if m.group(1) in tenant_of]
    assert len(access) == len(results)
    assert all(tenant_of[rid] == tid for rid, tid, _status in access)
    status_of = {rid: status for _item, status, rid, _body in results}
    assert all(status_of[rid] == int(status) for rid, _tid, status in access)
    views = [m.groups() for m in VIEW.finditer(log) if m.group(1) in tenant_of]
    assert len(views) == len(results) - failures
    assert all(tenant_of[rid] == tid for rid, tid in views)
    errors = [m.groups() for m in ERROR.finditer(log) if m.group(1) in tenant_of]
    assert len(errors) == failures
    assert all(tenant_of[rid] == tid for rid, tid in errors)
    print(f"\n{len(results)} requests, {CLIENTS} clients, {elapsed:.1f}s")
