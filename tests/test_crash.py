"""Promise 2: an acked message survives SIGKILL of the server right after the ack."""

from __future__ import annotations

import asyncio

from tests.server_process import ServerProcess
from tests.wire import Wire


async def test_acked_messages_survive_sigkill(db_url: str) -> None:
    """Kill -9 the server as soon as acks arrive; after a restart every acked message is there."""
    server = ServerProcess(db_url)
    await server.start()
    acked: dict[int, str] = {}
    try:
        wires = [await Wire.open(server.ws_url, server.token(f"p{i}")) for i in range(4)]

        async def publish(w: Wire, n: int) -> None:
            for k in range(50):
                reply = await w.request(
                    {"type": "publish", "channel": "room:crash", "data": f"{n}-{k}", "id": f"{n}-{k}"}
                )
                acked[reply["serials"][0]] = f"{n}-{k}"

        await asyncio.gather(*(publish(w, n) for n, w in enumerate(wires)))
        # More publishes in flight while the process dies: they may or may not land, never half.
        for w in wires:
            await w.send({"type": "publish", "channel": "room:crash", "data": "in-flight"})
        await server.kill()
        for w in wires:
            await w.close()

        await server.start()
        reader = await Wire.open(server.ws_url, server.token("reader"))
        page = await reader.request(
            {"type": "history", "channel": "room:crash", "limit": 1000, "direction": "forwards"}
        )
        stored = {m["serial"]: m["data"] for m in page["messages"]}
        serials = sorted(stored)
        assert serials == list(range(1, len(serials) + 1)), "serials must stay dense"
        for serial, data in acked.items():
            assert stored.get(serial) == data
        assert len(acked) == 200
        # The restarted server continues the sequence.
        reply = await reader.request({"type": "publish", "channel": "room:crash", "data": "after"})
        assert reply["serials"] == [len(serials) + 1]
        await reader.close()
    finally:
        await server.stop()
