"""The Client: the asyncio layer that drives the SDK's core over one WebSocket after another.

It opens links (reconnecting with backoff), feeds every frame it reads to the core
(`agentchat.state.ClientState`), queues the frames the core sends, and carries out the core's events:
replies resolve request futures, channel events go to the views listening on that channel.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any

import aiohttp

import agentchat.directory as room_directory
from agentchat.channel import Channel
from agentchat.chatmodels import Room, RoomsPage, UnreadPage
from agentchat.connection import Backoff, Closed, HandshakeFailed, Link, websocket_url
from agentchat.errors import AgentChatError, ConnectionClosed, LinkGone, ServerUnavailable
from agentchat.events import Event, Failed, Ready, RenewToken, Replied, Stopped
from agentchat.ports import Listener
from agentchat.state import ClientState
from agentchat_server.protocol import CloseCode, Format

log = logging.getLogger("agentchat.client")

TokenProvider = Callable[[], Awaitable[str] | str]
"""A callable returning a fresh token (sync or async); called on every connect and on `auth_renew`."""


class Client:
    """A connection to an agentchat server that survives drops.

    `async with Client(url, token=...)` connects (waiting up to `connect_timeout`), then keeps the
    connection alive: it reconnects with backoff, resumes its session, re-attaches every channel at
    its last position, re-enters presence and resends requests whose replies were lost. Requests
    made while disconnected wait for the next connection. Closes after which reconnecting cannot
    help (the protocol's close-code table) end the client with ConnectionClosed.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        token_provider: TokenProvider | None = None,
        client_id: str | None = None,
        format: Format = "msgpack",
        backoff: Backoff | None = None,
        connect_timeout: float | None = 30.0,
        max_pending: int = 10_000,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if token is None and token_provider is None:
            raise ValueError("give a token or a token_provider")
        self.url = websocket_url(url, format)
        self.base_url = url
        self.format: Format = format
        self.backoff = backoff or Backoff()
        self.connect_timeout = connect_timeout
        self.max_pending = max_pending
        self.state = ClientState(
            self._on_event, client_id=client_id, can_renew=token_provider is not None, max_pending=max_pending
        )
        self._token = token
        self._token_provider = token_provider
        self._session = session
        self._own_session = session is None
        self._futures: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._listeners: dict[str, list[Callable[[], Listener | None]]] = {}
        self._channels: dict[str, Channel] = {}
        self._link: Link | None = None
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._first: asyncio.Future[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    # --- state -----------------------------------------------------------------------------

    @property
    def client_id(self) -> str | None:
        """The client id the server gave this connection (from the token)."""
        return self.state.client_id

    @property
    def kind(self) -> str | None:
        """`agent`, `human` or `system`, from the token."""
        return self.state.kind

    @property
    def session_id(self) -> str | None:
        """The current session's id."""
        return self.state.session_id

    @property
    def limits(self) -> dict[str, int]:
        """The server's limits from the last `connected` frame."""
        return self.state.limits

    @property
    def reconnects(self) -> int:
        """How many times the client connected again after its first connection."""
        return self.state.reconnects

    @property
    def resumed(self) -> bool:
        """True when the last connection resumed the previous session."""
        return self.state.resumed

    @property
    def connected(self) -> bool:
        """True while connected with every channel re-attached."""
        return self.state.ready

    # --- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect once, retrying while no server answers, for `connect_timeout` seconds (None: as
        long as it takes), with one log line per attempt.

        Raises ServerUnavailable when the time is up (the client keeps trying until closed), and
        ConnectionClosed on a refusal after which retrying cannot help.
        """
        if self.state.closed is not None:
            raise self.state.closed
        if self._task is None:
            if self._session is None:
                self._session = aiohttp.ClientSession()
            self._first = asyncio.get_running_loop().create_future()
            self._task = asyncio.create_task(self._run(), name="agentchat-client")
        assert self._first is not None
        try:
            async with asyncio.timeout(self.connect_timeout):
                await asyncio.shield(self._first)
        except TimeoutError:
            if self._first.done() or self.connect_timeout is None:
                raise
            raise ServerUnavailable(self.base_url, self.connect_timeout) from None

    async def wait_connected(self) -> None:
        """Wait until connected and re-attached; raise ConnectionClosed if the client has stopped."""
        while not self.state.ready:
            if self.state.closed is not None:
                raise self.state.closed
            self._ready.clear()
            await self._ready.wait()

    async def close(self) -> None:
        """Close the connection normally (the server ends the session: presence leaves at once)."""
        self.state.stop(ConnectionClosed(CloseCode.NORMAL, "closed by the client"))
        if self._link is not None:
            await self._link.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self._own_session and self._session is not None:
            await self._session.close()

    def channel(self, name: str) -> Channel:
        """The Channel object for `name` (one per name; nothing is sent until you use it)."""
        channel = self._channels.get(name)
        if channel is None:
            channel = self._channels[name] = Channel(self, name)
        return channel

    # --- the room directory and unread counts -----------------------------------------------

    async def rooms(
        self, *, after: str | None = None, prefix: str | None = None, limit: int = 50
    ) -> RoomsPage:
        """One page of the room directory (channels this token may subscribe to), by name after
        `after`, under `prefix`. A page may be short, even empty, with `has_more`: page on with
        `after=page.next`, or let `directory()` do it."""
        return await room_directory.rooms(self, after=after, prefix=prefix, limit=limit)

    def directory(self, *, prefix: str | None = None, page_size: int = 50) -> AsyncIterator[Room]:
        """`async for room in client.directory(prefix="room:")`: every room, page by page."""
        return room_directory.every_room(self, prefix=prefix, page_size=page_size)

    async def room(self, channel: str) -> Room | None:
        """The directory entry of `channel` (title, topic, members, last activity); None when the
        server knows no such channel."""
        return await room_directory.room(self, channel)

    async def set_room(
        self, channel: str, *, title: str | None = None, topic: str | None = None, create: bool = False
    ) -> Room:
        """Set a room's `title` and `topic` (`""` clears the topic; needs `manage`); attached readers
        get a live `room` update. With `create`, AlreadyExistsError when the channel exists. A `room:`
        name must be canonical (lowercase slug): otherwise a 40004 RequestError carrying
        `details["canonical"]`."""
        return await room_directory.set_room(self, channel, title=title, topic=topic, create=create)

    async def unread(self, channels: Sequence[str] | None = None, *, after: str | None = None) -> UnreadPage:
        """Your unread and mention counts: for `channels` (1-100; no read mark counts from the start),
        or else one page of the channels where you have a read mark, by name after `after`."""
        return await room_directory.unread(self, channels, after)

    # --- requests and events ---------------------------------------------------------------

    async def request(self, frame: dict[str, Any], *, retain: bool = True) -> dict[str, Any]:
        """Send a frame with a fresh `ref` and return its reply; raise RequestError on `nack`.

        A retained request survives reconnects (it is resent on the next connection, so it must be
        idempotent); an unretained one fails with LinkGone when its connection ends.
        """
        return await self.submit(frame, retain=retain)

    def submit(self, frame: dict[str, Any], *, retain: bool = True) -> asyncio.Future[dict[str, Any]]:
        """Like `request` but returns the reply future at once; frames leave in submit order.

        Raises ConnectionClosed once the client stopped and TooManyPending past `max_pending`.
        """
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        try:
            ref = self.state.request(frame, retain=retain)
        except LinkGone as exc:
            future.set_exception(exc)
            return future
        self._futures[ref] = future
        future.add_done_callback(functools.partial(self._settled, ref))
        return future

    def listen(self, channel: str, callback: Listener) -> Callable[[], None]:
        """Call `callback` with every event of `channel` (`agentchat.events`), in order; returns the
        function that stops it. Callbacks run synchronously and must not block.

        A bound method is held weakly: it stops when its object is collected (a subscription you
        dropped costs nothing); any other callable is held until stopped.
        """
        listeners = self._listeners.setdefault(channel, [])
        held: Callable[[], Listener | None]
        if inspect.ismethod(callback):
            held = weakref.WeakMethod(callback)
        else:
            held = functools.partial(_same, callback)
        listeners.append(held)

        def stop() -> None:
            if held in listeners:
                listeners.remove(held)

        return stop

    def _settled(self, ref: int, future: asyncio.Future[dict[str, Any]]) -> None:
        self._futures.pop(ref, None)
        if future.cancelled():
            # The caller gave up (e.g. a timeout): do not send it again after a reconnect.
            self.state.abandon(ref)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, Replied | Failed):
            future = self._futures.pop(event.ref, None)
            if future is not None and not future.done():
                if isinstance(event, Replied):
                    future.set_result(event.frame)
                else:
                    future.set_exception(event.error)
        elif isinstance(event, Ready):
            self._ready.set()
            if self._first is not None and not self._first.done():
                self._first.set_result(None)
        elif isinstance(event, Stopped):
            self._ready.set()  # wakes waiters, who find the client stopped
            if self._first is not None and not self._first.done():
                self._first.set_exception(event.error)
                self._first.exception()  # retrieved here: connect() re-raises it
        elif isinstance(event, RenewToken):
            self._spawn(self._renew())
        else:
            listeners = self._listeners.get(event.channel, [])
            for held in list(listeners):
                callback = held()
                if callback is None:
                    listeners.remove(held)
                    continue
                try:
                    callback(event)
                except Exception:
                    # One view's bug must not cut the connection every other view depends on.
                    log.exception("a listener of %s failed on %s", event.channel, type(event).__name__)

    # --- the connection loop ---------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._connect_loop()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("connection loop failed")
            self.state.stop(ConnectionClosed(None, f"client failed: {exc!r}"))

    async def _connect_loop(self) -> None:
        failures = 0
        while self.state.closed is None:
            try:
                token = await self._fresh_token()
            except Exception as exc:
                # A token service can be down for a while too: retry it like the server.
                failures += 1
                log.warning("cannot get a token (attempt %d): %r", failures, exc)
                await asyncio.sleep(self.backoff.delay(failures))
                continue
            try:
                link = await self._open(token)
            except HandshakeFailed as exc:
                if self.state.after_close(exc.closed.code, exc.closed.reason) == "stop":
                    return
                failures += 1
                await asyncio.sleep(self.backoff.delay(failures))
                continue
            except (OSError, aiohttp.ClientError, TimeoutError) as exc:
                failures += 1
                delay = self.backoff.delay(failures)
                why = str(exc) or type(exc).__name__
                if self._first is not None and not self._first.done():
                    log.warning(
                        "waiting for the server at %s (%s, attempt %d: %s); next try in %.1f s",
                        self.base_url,
                        self.state.client_id or "client",
                        failures,
                        why,
                        delay,
                    )
                else:
                    log.info("reconnecting to %s (attempt %d): %s", self.base_url, failures, why)
                await asyncio.sleep(delay)
                continue
            failures = 0
            closed = await self._serve(link)
            if self.state.closed is not None:
                return
            log.info("connection lost (%s): %s", closed.code, closed.reason)
            if self.state.after_close(closed.code, closed.reason) == "stop":
                return
            failures = 1
            await asyncio.sleep(self.backoff.delay(failures))

    async def _open(self, token: str) -> Link:
        assert self._session is not None
        connect = self.state.connect_frame(token)
        return await Link.open(self._session, self.url, self.format, connect)

    async def _fresh_token(self) -> str:
        if self._token_provider is not None:
            token = self._token_provider()
            self._token = await token if inspect.isawaitable(token) else token
        if self._token is None:
            raise AgentChatError("the token provider returned no token")
        return self._token

    async def _serve(self, link: Link) -> Closed:
        if not self.state.link_up(link.connected, link.send):
            await link.close()
            return Closed(CloseCode.NORMAL, "refused by the client")
        self._link = link
        try:
            return await link.run(self.state.receive)
        finally:
            self._link = None
            self._ready.clear()
            if self.state.closed is None:
                self.state.link_lost()

    async def _renew(self) -> None:
        if self._token_provider is None:
            log.warning("token expires soon and no token_provider was given; the server will close 4003")
            return
        try:
            await self.request({"type": "auth", "token": await self._fresh_token()}, retain=False)
        except AgentChatError as exc:
            # A reconnect sends a fresh token anyway; a refused one is the provider's fault.
            log.warning("token renewal failed: %s", exc)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        async def run() -> None:
            await coro

        task = asyncio.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _same(callback: Listener) -> Listener:
    return callback
