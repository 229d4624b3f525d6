"""The hub: commits and live frames go out on the bus, and what the bus brings goes to each reader.

Durable messages reach a reader in serial order through its cursor (`core.ordering`): a reader
right behind a commit gets the commit's messages in one write; a reader with a gap, or one whose
send buffer is already half full, is switched to a fill from the Store, which follows the
reader's pace (so a burst of big messages never closes a healthy reader). Live frames
(ephemeral messages, stream frames, presence diffs) of one loop tick are joined once per wire
format and written to each reader in the tick's flush pass. A reader filtering "to me" gets
only the messages to nobody, to it, or from it (durable and ephemeral alike).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from agentchat_server.broker.connections import Attachment
from agentchat_server.broker.registry import ChannelRegistry, ChannelState
from agentchat_server.broker.tick import Flusher
from agentchat_server.bus import Bus, BusEvent
from agentchat_server.core.agentrooms import for_reader
from agentchat_server.core.ordering import Offer
from agentchat_server.core.records import Message
from agentchat_server.metrics import Metrics
from agentchat_server.protocol import Batch, CloseCode, Encoded, Format
from agentchat_server.protocol import server as frames
from agentchat_server.store import AppendResult, Operation, Outcome

log = logging.getLogger(__name__)

StartFill = Callable[[ChannelState, Attachment], None]
OfferMessages = Callable[[ChannelState, Sequence[Message]], None]
ObserveLive = Callable[[ChannelState, frames.Frame], None]


def message_event(m: Message, epoch: str) -> Encoded:
    """The shared outgoing event of a durable message (its SSE id is epoch:serial)."""
    return Encoded(frames.message(m), f"{epoch}:{m.serial}")


class Hub:
    """Fan-out of one node. `start_fill` (given by the readers) begins a paced Store read for a reader."""

    def __init__(
        self,
        registry: ChannelRegistry,
        bus: Bus,
        flusher: Flusher,
        metrics: Metrics,
        *,
        watermark: int,
        backlog_limit: int,
    ) -> None:
        self.registry = registry
        self.bus = bus
        self.flusher = flusher
        self.metrics = metrics
        self.watermark = watermark  # buffered bytes beyond which durable messages go by fill
        self.backlog_limit = backlog_limit  # live bytes held behind a catch-up before 4008
        self.start_fill: StartFill = _no_fill
        # Set by the broker once the objects they belong to exist:
        self.offer: OfferMessages = self.fan_out_messages  # orders commits before fan-out (Positions)
        self.on_stream_message: Callable[[Message], None] = _ignore  # a stream's end (Streams)
        self.on_control: Callable[[dict[str, Any]], None] = _ignore  # node-to-node news (Streams)
        # Live frames a node keeps state from (the channel's view of its runs), set by the runs.
        self.observe_live: ObserveLive = _ignore

    # --- into the bus ----------------------------------------------------------------------

    def on_committed(self, ops: Sequence[Operation], results: Sequence[Outcome]) -> None:
        """After a commit: one bus event per channel (one transaction: one epoch per channel)."""
        batches: dict[str, tuple[str, list[Message]]] = {}
        for result in results:
            # A refused operation may still have stored a notice (the loop brake's).
            if not isinstance(result, AppendResult) or not result.stored:
                continue
            channel = result.stored[0].channel
            batches.setdefault(channel, (result.epoch, []))[1].extend(result.stored)
        for channel, (epoch, messages) in batches.items():
            self.bus.publish(BusEvent(channel, messages=messages, epoch=epoch))

    def publish_live(self, channel: str, frame: frames.Frame, *, presence: bool = False) -> None:
        """Send a live frame to every node serving the channel (this one included)."""
        self.bus.publish(BusEvent(channel, frame=frame, presence=presence))

    def publish_control(self, channel: str, control: dict[str, Any]) -> None:
        """Send node-to-node news about a channel to every node serving it (never to readers)."""
        self.bus.publish(BusEvent(channel, control=control))

    # --- out of the bus --------------------------------------------------------------------

    def on_bus(self, event: BusEvent) -> None:
        """A bus event for a channel: deliver it to this node's readers."""
        if event.control is not None:
            self.on_control(event.control)
            return
        ch = self.registry.get(event.channel)
        if ch is None:
            if event.messages:
                self.registry.heard(event.channel, event.messages[-1].serial, event.epoch)
            return
        if event.messages:
            if not ch.epoch:
                ch.epoch = event.epoch
            for m in event.messages:
                if m.stream_id is not None:
                    self.on_stream_message(m)
            self.offer(ch, event.messages)
        elif event.frame is not None:
            self.observe_live(ch, event.frame)
            self.queue_live(ch, Encoded(event.frame), presence_only=event.presence)

    def fan_out_messages(self, ch: ChannelState, messages: Sequence[Message]) -> None:
        """Deliver committed messages (ascending serials) to every reader in order.

        The hot path: a reader right behind the first serial gets the whole run in one write of
        bytes built once per format. Anyone else goes message by message through its cursor
        (duplicates dropped, a gap starts a fill from the Store)."""
        first, last = messages[0].serial, messages[-1].serial
        if last > ch.head:
            ch.head = last
        if not ch.subscribers:
            return
        n = len(messages)
        events = [message_event(m, ch.epoch) for m in messages]
        batch = Batch(events)
        run = first - 1 if last - first == n - 1 else -1  # cursor position that takes the whole run
        count = 0
        watermark = self.watermark
        for conn, att in ch.subscribers.items():
            cursor = att.cursor
            transport = conn.transport
            if cursor.last == run and not cursor.filling and att.to_me is None:
                if transport.buffered() > watermark:
                    # Half full already: the Store holds these, the fill brings them at its pace.
                    cursor.begin_fill(last)
                    self._fill(ch, att)
                    continue
                cursor.last = last
                count += n
                transport.deliver_batch(batch)
                continue
            for event, message in zip(events, messages, strict=True):
                offer = cursor.offer(message.serial)
                if offer is Offer.DELIVER:
                    if att.to_me is not None and not wanted(message, att.to_me):
                        continue  # the cursor moved past it: this reader filters it out
                    if transport.buffered() > watermark:
                        cursor.last -= 1
                        cursor.begin_fill(last)
                        self._fill(ch, att)
                        break
                    count += 1
                    conn.deliver(event)
                elif offer is Offer.START_FILL:
                    self._fill(ch, att)
        self.metrics.deliveries.inc(count)

    def _fill(self, ch: ChannelState, att: Attachment) -> None:
        if att.fill is None:
            self.start_fill(ch, att)

    def queue_live(self, ch: ChannelState, event: Encoded, *, presence_only: bool = False) -> None:
        """Queue a live frame for the channel's readers; the frames of one loop tick go out
        together, in order, in the flush pass."""
        if not ch.subscribers:
            return
        if not ch.live:
            self.flusher.defer(self.flush_live, ch)
        ch.live.append((event, presence_only))

    def flush_live(self, ch: ChannelState) -> None:
        """Write the channel's queued live frames to its readers now (the flush pass, or an attach
        that must not see frames older than its snapshots)."""
        events, ch.live = ch.live, []
        if not events or not ch.subscribers:
            return
        mixed = any(presence_only for _, presence_only in events)
        every = Batch([e for e, _ in events])
        plain = Batch([e for e, presence_only in events if not presence_only]) if mixed else every
        addressed = any(e.frame.get("to") for e, _ in events)
        count = 0
        for conn, att in ch.subscribers.items():
            batch = every if att.presence else plain
            if addressed and att.to_me is not None:
                batch = Batch([e for e in batch.events if _wanted_frame(e.frame, att.to_me)])
            if not batch:
                continue
            count += len(batch)
            if att.backlog is not None:
                self._hold(att, batch, conn.transport.fmt)
            else:
                conn.transport.deliver_batch(batch)
        self.metrics.deliveries.inc(count)

    def _hold(self, att: Attachment, batch: Batch, fmt: Format) -> None:
        """A catch-up is under way for this reader: live frames wait behind it, bounded."""
        assert att.backlog is not None
        for event in batch.events:
            size = event.size(fmt)
            att.backlog.append((event, size))
            att.backlog_bytes += size
        if att.backlog_bytes > self.backlog_limit:
            conn = att.connection
            self.metrics.slow_consumers.inc()
            log.info("closing slow consumer %s: live frames piled up behind a catch-up", conn.client_id)
            conn.close(CloseCode.SLOW_CONSUMER, "slow consumer: outbox full")


def _no_fill(ch: ChannelState, att: Attachment) -> None:
    raise RuntimeError("the hub has no fill starter")


def _ignore(*_: Any) -> None:
    """Nothing to do."""


def wanted(message: Message, reader: str) -> bool:
    """True when a reader filtering "to me" gets this durable message."""
    return for_reader(None if message.extra is None else message.extra.get("to"), message.client_id, reader)


def _wanted_frame(frame: frames.Frame, reader: str) -> bool:
    if frame.get("type") != "message":
        return True  # only messages are addressed; stream, run and presence frames go to every reader
    return for_reader(frame.get("to"), frame.get("client_id", ""), reader)
