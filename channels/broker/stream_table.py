"""The open streams one node holds: by id, by writer session and by channel, with the stream
memory of each client id counted against its bound across all of its open streams."""

from __future__ import annotations

import json
from typing import Any

from agentchat_server.broker.registry import ChannelRegistry
from agentchat_server.broker.sessionindex import SessionIndex
from agentchat_server.core.streams import Stream
from agentchat_server.metrics import Metrics
from agentchat_server.store import StreamMarker
from agentchat_server.streambuf import StreamBuffer


class StreamTable:
    """Holds streams (`hold`), lets go of them (`forget`), moves them between writer sessions
    (`rebind`) and takes their chunks within each client's memory bound (`append`)."""

    def __init__(
        self, registry: ChannelRegistry, buffer: StreamBuffer, metrics: Metrics, bytes_per_client: int
    ) -> None:
        self.registry = registry
        self.buffer = buffer
        self.metrics = metrics
        self.bytes_per_client = bytes_per_client
        self._live: dict[str, Stream] = {}
        self.sessions = SessionIndex()
        self._bytes_by_client: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._live)

    def get(self, stream_id: str) -> Stream | None:
        """The stream, if this node holds it."""
        return self._live.get(stream_id)

    def all(self) -> list[Stream]:
        """Every stream held here (a copy)."""
        return list(self._live.values())

    def of_session(self, session_id: str) -> list[Stream]:
        """The streams a writer session writes."""
        return [self._live[i] for i in self.sessions.of(session_id) if i in self._live]

    def of_run(self, run_id: str) -> list[Stream]:
        """The open lanes of a run."""
        return [s for s in self._live.values() if s.run_id == run_id]

    def hold(self, stream: Stream) -> None:
        """Hold `stream` here: its channel serves it to readers, its buffer keeps its chunks."""
        ch = self.registry.get(stream.channel)
        if ch is not None:
            ch.streams[stream.stream_id] = stream
        self._live[stream.stream_id] = stream
        self.sessions.add(stream.writer, stream.stream_id)
        self._bytes_by_client[stream.client_id] = self._bytes_by_client.get(stream.client_id, 0) + stream.size
        self.metrics.streams_open.set(len(self._live))
        self.buffer.opened(stream.channel, stream.stream_id, stream.header())

    def rebind(self, stream: Stream, session_id: str) -> None:
        """The stream's writer goes on from another session."""
        self.sessions.move(stream.stream_id, stream.writer, session_id)
        stream.writer = session_id

    def append(self, stream: Stream, index: int, chunk: Any) -> bool:
        """Take chunk `index` within the client's memory bound; False for a resend (ignored).
        Raises the stream's ProtocolError when a bound is passed."""
        client = stream.client_id
        used = self._bytes_by_client.get(client, 0)
        before = stream.size
        if not stream.append(index, chunk, self.bytes_per_client - used):
            return False
        self._bytes_by_client[client] = used + stream.size - before
        return True

    def forget(self, stream: Stream) -> None:
        """Let go of `stream` (nothing happens if it is not held): its memory is given back."""
        if self._live.pop(stream.stream_id, None) is None:
            return
        ch = self.registry.get(stream.channel)
        if ch is not None:
            ch.streams.pop(stream.stream_id, None)
        self.sessions.drop(stream.writer, stream.stream_id)
        left = self._bytes_by_client.get(stream.client_id, 0) - stream.size
        if left > 0:
            self._bytes_by_client[stream.client_id] = left
        else:
            self._bytes_by_client.pop(stream.client_id, None)
        self.metrics.streams_open.set(len(self._live))
        if ch is not None:
            self.registry.forget_if_idle(ch)


def marker_of(stream: Stream, meta_json: str | None, node: str, lease_until: int) -> StreamMarker:
    """The Store's marker of a stream held by `node` until `lease_until` (ms)."""
    return StreamMarker(
        stream.stream_id,
        stream.channel,
        stream.message_id,
        stream.client_id,
        stream.kind,
        stream.name,
        stream.reply_to,
        meta_json,
        stream.format,
        stream.ts,
        node,
        lease_until,
        stream.fence,
        stream.secret,
        thread=stream.thread,
    )


def stream_of(marker: StreamMarker, session_id: str, max_bytes: int, display_name: str | None) -> Stream:
    """A stream rebuilt from its marker, written by `session_id` from now on (its content is
    loaded by the caller, from the stream buffer or the marker)."""
    return Stream(
        marker.stream_id,
        marker.channel,
        session_id,
        marker.client_id,
        marker.kind,
        marker.name,
        marker.message_id,
        marker.reply_to,
        None if marker.meta_json is None else json.loads(marker.meta_json),
        marker.format,
        marker.ts,
        max_bytes,
        display_name,
        fence=marker.fence,
        secret=marker.secret,
        thread=marker.thread,
    )
