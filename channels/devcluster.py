"""`agentchat cluster`: a local cluster for development: a redis-server and N nodes on one PostgreSQL.

Each node is `agentchat serve` in a child process on its own port, all sharing one API key, one
database and one Redis (with its own prefix). Ctrl-C (or SIGTERM) stops everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import sys
from urllib.parse import urlsplit


async def ensure_database(url: str) -> None:
    """Create the PostgreSQL database of `url` if it does not exist yet."""
    import asyncpg

    parts = urlsplit(url.replace("postgresql+asyncpg://", "postgresql://"))
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    conn = await asyncpg.connect(admin)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def run_cluster(db: str, nodes: int, first_port: int, redis_port: int, host: str) -> int:
    """Start Redis and the nodes, print their URLs, and stop them all on SIGINT/SIGTERM."""
    if shutil.which("redis-server") is None:
        print("agentchat cluster needs redis-server (apt-get install redis-server)", file=sys.stderr)
        return 2
    await ensure_database(db)
    children: list[asyncio.subprocess.Process] = []
    redis = await asyncio.create_subprocess_exec(
        "redis-server",
        "--port",
        str(redis_port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        stdout=asyncio.subprocess.DEVNULL,
    )
    children.append(redis)
    key = os.environ.get("AGENTCHAT_KEYS") or f"cluster:{secrets.token_hex(32)}"
    env = {
        **os.environ,
        "AGENTCHAT_KEYS": key,
        "AGENTCHAT_BUS": f"redis://127.0.0.1:{redis_port}/0?prefix=cluster",
        "AGENTCHAT_DB": db,
    }
    for n in range(nodes):
        port = first_port + n
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agentchat_server", "serve", "--host", host, "--port", str(port), env=env
        )
        children.append(child)
    print(f"redis on 127.0.0.1:{redis_port}; {nodes} nodes on {db}", flush=True)
    print(f"API key: {key}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    waits = [asyncio.create_task(c.wait()) for c in children]
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait([stopper, *waits], return_when=asyncio.FIRST_COMPLETED)
    for child in reversed(children):
        if child.returncode is None:
            child.terminate()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(10):
            await asyncio.gather(*waits)
    for child in children:
        if child.returncode is None:
            child.kill()
    stopper.cancel()
    return 0
