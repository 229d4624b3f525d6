"""Shared fixtures: in-process servers, throwaway PostgreSQL databases, Redis prefixes.

Services the machine lacks make their tests skip with a one-line reason, except under CI=true,
where they fail: CI must run every test.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from agentchat_server.testing import TestServer
from tests.wire import Wire

IN_CI = os.environ.get("CI", "").lower() == "true"
PG_HOST = os.environ.get("AGENTCHAT_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("AGENTCHAT_TEST_PG_PORT", "5432"))
REDIS_URL = os.environ.get("AGENTCHAT_TEST_REDIS", "redis://127.0.0.1:6379/0")


def need(available: bool, reason: str) -> None:
    """Skip with a reason where a service is missing; under CI the test fails instead."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: this test must run)")
    pytest.skip(reason)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def run_aside(coro: Any) -> Any:
    """Run a coroutine on a private loop in a thread (for sync fixtures inside async tests)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _pg_admin(sql: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user="postgres", database="postgres")
    try:
        await admin.execute(sql)
    finally:
        await admin.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test, dropped afterwards."""
    need(port_open(PG_HOST, PG_PORT), f"PostgreSQL not reachable on {PG_HOST}:{PG_PORT}")
    name = f"agentchat_test_{secrets.token_hex(6)}"
    run_aside(_pg_admin(f'CREATE DATABASE "{name}"'))
    yield f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    run_aside(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def redis_url() -> str:
    need(port_open("127.0.0.1", 6379), "Redis not reachable on 127.0.0.1:6379")
    return REDIS_URL


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test using this runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
    else:
        yield request.getfixturevalue("pg_url")


@pytest_asyncio.fixture
async def server(tmp_path: Path) -> AsyncIterator[TestServer]:
    async with TestServer(tmp_path) as srv:
        yield srv


@pytest_asyncio.fixture
async def make_server(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Start servers with settings overrides; all are stopped at the end."""
    started: list[TestServer] = []

    async def start(**overrides: Any) -> TestServer:
        directory = tmp_path / f"srv{len(started)}"
        directory.mkdir(exist_ok=True)
        srv = TestServer(directory, **overrides)
        await srv.start()
        started.append(srv)
        return srv

    yield start
    for srv in reversed(started):
        await srv.stop()


@pytest_asyncio.fixture
async def connect(server: TestServer) -> AsyncIterator[Callable[..., Any]]:
    """Open Wire clients to the `server` fixture; all are closed at the end."""
    wires: list[Wire] = []

    async def open_wire(
        client_id: str = "ana", *, fmt: str = "json", srv: TestServer | None = None, **kw: Any
    ) -> Wire:
        target = srv or server
        token = kw.pop("token", None) or target.token(client_id, **kw)
        wire = await Wire.open(target.ws_url, token, fmt=fmt)  # type: ignore[arg-type]
        wires.append(wire)
        return wire

    yield open_wire
    await asyncio.gather(*(w.close() for w in wires), return_exceptions=True)
