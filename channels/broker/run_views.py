"""What readers are shown of a channel's runs: each node's view of them (`core.runs.ChannelRuns`),
read once from the Store and kept up to date from the run frames every node sees, and the run
snapshots an attaching reader gets."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from agentchat_server.broker.connections import Attachment
from agentchat_server.broker.registry import ChannelState
from agentchat_server.protocol import Encoded
from agentchat_server.protocol import server as frames
from agentchat_server.settings import Settings
from agentchat_server.store import Store

log = logging.getLogger(__name__)

Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[None]"]
OnStatus = Callable[[dict[str, Any]], None]
WrittenState = Callable[[str], "tuple[Any, list[Any]] | None"]


class RunViews:
    """Keeps each served channel's view of its runs; `on_status` hears every run's status change."""

    def __init__(
        self, settings: Settings, store: Store, spawn: Spawn, on_status: OnStatus, written: WrittenState
    ) -> None:
        self.settings = settings
        self.store = store
        self.spawn = spawn
        self.on_status = on_status
        self.written = written  # the state of the runs this node's sessions write
        self._loading: dict[str, tuple[ChannelState, list[Attachment]]] = {}

    def snapshots(self, ch: ChannelState, att: Attachment) -> list[frames.Frame]:
        """`run_snapshot` frames of the channel's active runs this node knows, parents first.

        The first attach of a channel on this node starts reading its active runs from the Store
        without waiting (an attach never waits on it); the runs that read teaches the view reach
        the readers that attached meanwhile. Their versions let readers merge them in any order."""
        if not ch.runs.loaded:
            waiting = self._loading.get(ch.name)
            if waiting is None or waiting[0] is not ch:
                waiting = self._loading[ch.name] = (ch, [])
                self.spawn(self._load(ch), f"runs:{ch.name}")
            waiting[1].append(att)
        return [self._with_state(frame) for frame in ch.runs.snapshots()]

    async def _load(self, ch: ChannelState) -> None:
        try:
            records = await self.store.active_runs(ch.name, self.settings.max_runs_per_channel)
        except Exception:
            log.exception("could not read the active runs of %s", ch.name)
            self._loading.pop(ch.name, None)  # the next attach tries again
            return
        waiting = self._loading.pop(ch.name, None)
        learned = ch.runs.load(records)
        if waiting is None or waiting[0] is not ch or not learned:
            return
        events = [Encoded(self._with_state(frame)) for frame in learned]
        for att in waiting[1]:
            conn = att.connection
            if conn.attachments.get(ch.name) is att:
                for event in events:
                    conn.deliver(event)

    def _with_state(self, frame: frames.Frame) -> frames.Frame:
        # A run written on this node: its writer's record of the state is whole, while the
        # channel's view missed what was shared when nobody read the channel here.
        written = self.written(frame["run_id"])
        if written is None:
            return frame
        state, deltas = written
        header = {k: v for k, v in frame.items() if k not in ("type", "state", "deltas")}
        return frames.run_snapshot(header, state, deltas)

    def observe(self, ch: ChannelState, frame: frames.Frame) -> None:
        """A live frame of the channel passed the bus: keep the view of its runs up to date."""
        kind = frame.get("type")
        if kind == "run_state":
            ch.runs.state(frame["run_id"], frame.get("snapshot"), frame.get("delta"))
        elif kind == "run_status":
            header = {k: v for k, v in frame.items() if k != "type"}
            ch.runs.status(header)
            self.on_status(header)
