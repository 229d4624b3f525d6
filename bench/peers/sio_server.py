"""python-socketio on aiohttp (uvloop), the Python peer: `role=sub` clients join their room (`auth.room`,
default `bench`), a `pub` event (data, room) is emitted to that room (`sio.emit(..., room=...)`, the
library's own fan-out)."""

from __future__ import annotations

import argparse
import asyncio
import resource
from typing import Any

import socketio  # type: ignore[import-not-found,import-untyped,unused-ignore]
from aiohttp import web

ROOM = "bench"


def build_app() -> web.Application:
    sio = socketio.AsyncServer(async_mode="aiohttp", transports=["websocket"], cors_allowed_origins="*")

    async def connect(sid: str, environ: dict[str, Any], auth: dict[str, Any] | None) -> None:
        if auth and auth.get("role") == "sub":
            await sio.enter_room(sid, auth.get("room") or ROOM)

    async def pub(sid: str, data: Any, room: str | None = None) -> None:
        await sio.emit("m", data, room=room or ROOM)

    sio.on("connect", connect)
    sio.on("pub", pub)

    app = web.Application()
    sio.attach(app)
    return app


async def serve(port: int) -> None:
    runner = web.AppRunner(build_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"python-socketio listening on http://127.0.0.1:{bound}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    import uvloop

    uvloop.run(serve(args.port))


if __name__ == "__main__":
    main()
