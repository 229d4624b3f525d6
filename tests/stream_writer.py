"""A stream writer in its own process, to be killed mid-stream.

python -m tests.stream_writer URL TOKEN CHANNEL N
"""

from __future__ import annotations

import asyncio
import sys

from tests.wire import Wire


async def main(url: str, token: str, channel: str, chunks: int) -> None:
    wire = await Wire.open(url, token)
    reply = await wire.request({"type": "stream_open", "channel": channel, "name": "answer"})
    stream_id = reply["stream_id"]
    for i in range(chunks):
        await wire.send({"type": "stream_append", "stream_id": stream_id, "i": i, "d": f"t{i} "})
    await wire.request({"type": "ping"})  # every chunk above was handled before this ack
    print(f"ready {stream_id}", flush=True)
    await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
