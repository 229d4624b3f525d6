"""Orchestrator helpers: drive a load-generator process, read /metrics, make throwaway databases."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import subprocess
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bench.env import BENCH_PYTHON, REPO_DIR
from bench.servers import LOADGEN_CPUS, pin


class LoadGen:
    """One `python -m bench.loadgen` process pinned to the load CPU; lines in, lines out."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.proc: asyncio.subprocess.Process | None = None
        self.stderr_tail = b""

    async def __aenter__(self) -> LoadGen:
        self.proc = await asyncio.create_subprocess_exec(
            str(BENCH_PYTHON),
            "-m",
            "bench.loadgen",
            json.dumps(self.spec),
            cwd=REPO_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=pin(LOADGEN_CPUS),
            limit=1 << 24,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        proc = self.proc
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()

    async def _line(self, kind: str, wait_s: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        async with asyncio.timeout(wait_s):
            while True:
                raw = await self.proc.stdout.readline()
                if not raw:
                    err = b""
                    if self.proc.stderr is not None:
                        err = await self.proc.stderr.read()
                    raise RuntimeError(
                        f"load generator ended without {kind}: {err[-1500:].decode(errors='replace')}"
                    )
                text = raw.decode().strip()
                if text.startswith(kind + " "):
                    data: dict[str, Any] = json.loads(text[len(kind) + 1 :])
                    return data
                if text.startswith("RESULT "):
                    raise RuntimeError(f"load generator failed before {kind}: {text}")

    async def ready(self, wait_s: float = 300) -> dict[str, Any]:
        return await self._line("READY", wait_s)

    async def result(self, wait_s: float = 300) -> dict[str, Any]:
        data = await self._line("RESULT", wait_s)
        if "failed" in data:
            raise RuntimeError(f"load generator failed: {data['failed']}")
        return data

    def say(self, word: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(word.encode() + b"\n")


def scrape(port: int) -> dict[str, float]:
    """Prometheus text from /metrics as {name{labels}: value}; empty when the server has none."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except Exception:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        with contextlib.suppress(ValueError):
            out[name] = float(value)
    return out


def metric(sample: dict[str, float], name: str) -> float | None:
    """Sum of every labelled series of `name` in a scrape, None if absent."""
    values = [v for k, v in sample.items() if k == name or k.startswith(name + "{")]
    return sum(values) if values else None


def sqlite_rows(path: Path) -> dict[str, int]:
    """Row count per table of a SQLite file (read-only; the server may still be writing)."""
    if not path.exists():
        return {}
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        tables = [r[0] for r in conn.execute("select name from sqlite_master where type='table'")]
        return {t: conn.execute(f'select count(*) from "{t}"').fetchone()[0] for t in tables}
    finally:
        conn.close()


PG_ADMIN = [
    "psql",
    "-h",
    "127.0.0.1",
    "-p",
    "5432",
    "-U",
    "postgres",
    "-d",
    "postgres",
    "-v",
    "ON_ERROR_STOP=1",
    "-qc",
]


def postgres_available() -> bool:
    try:
        done = subprocess.run([*PG_ADMIN, "select 1"], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _psql(sql: str, check: bool) -> None:
    subprocess.run([*PG_ADMIN, sql], check=check, capture_output=True, timeout=60)


@contextlib.asynccontextmanager
async def throwaway_postgres() -> AsyncIterator[str]:
    """A fresh database on the local PostgreSQL, dropped afterwards; yields its asyncpg URL."""
    name = f"agentchat_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(_psql, f'create database "{name}"', True)
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        await asyncio.to_thread(_psql, f'drop database if exists "{name}" with (force)', False)
