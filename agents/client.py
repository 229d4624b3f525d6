"""The Client: one logical connection that reconnects, resumes its session and re-attaches its channels."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import aiohttp

from agentchat.connection import Closed, HandshakeFailed, Link, websocket_url
from agentchat.errors import ConnectionClosed, RequestError, TooManyPending, request_error
from agentchat_server.protocol import CloseCode, Format

if TYPE_CHECKING:
    from agentchat.channel import Channel
    from agentchat.stream import Stream

log = logging.getLogger("agentchat.client")

TokenProvider = Callable[[], Awaitable[str] | str]
"""A callable returning a fresh token (sync or async); called on every connect and on `auth_renew`."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Reconnect delays: exponential from `initial` up to `maximum`, with equal jitter."""

    initial: float = 0.1
    maximum: float = 10.0
    factor: float = 2.0

    def delay(self, attempt: int) -> float:
        """The wait before reconnect attempt `attempt` (1-based)."""
        ceiling = min(self.maximum, self.initial * self.factor ** max(0, attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


class LinkGone(Exception):
    """Internal: the connection a request was sent on ended before its reply."""


@dataclass(slots=True)
class _Pending:
    frame: dict[str, Any]
    future: asyncio.Future[dict[str, Any]]
    retain: bool
    sent_on: int = 0
    sends: int = 0


class Client:
    """A connection to an agentchat server that survives drops.

    `async with Client(url, token=...)` connects (waiting up to `connect_timeout`), then keeps the
    connection alive: it reconnects with backoff, resumes its session, re-attaches every channel at
    its last position, re-enters presence and resends requests whose replies were lost. Requests
    made while disconnected wait for the next connection. Fatal closes (4004, 4010, …) end the client
    with ConnectionClosed.
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
        connect_timeout: float = 30.0,
        max_pending: int = 10_000,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if token is None and token_provider is None:
            raise ValueError("give a token or a token_provider")
        self.url = websocket_url(url, format)
        self.format: Format = format
        self.backoff = backoff or Backoff()
        self.connect_timeout = connect_timeout
        self.max_pending = max_pending
        self.kind: str | None = None
        self.session_id: str | None = None
        self.limits: dict[str, int] = {}
        self.reconnects = 0
        self.resumed = False
        self._client_id = client_id
        self._token = token
        self._token_provider = token_provider
        self._session = session
        self._own_session = session is None
        self._pending: dict[int, _Pending] = {}
        self._refs = itertools.count(1)
        self._channels: dict[str, Channel] = {}
        self._streams: dict[str, Stream] = {}
        self._link: Link | None = None
        self._gen = 0
        self._ready = asyncio.Event()
        self._closed: ConnectionClosed | None = None
        self._resume: dict[str, str] | None = None
        self._task: asyncio.Task[None] | None = None
        self._first: asyncio.Future[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    # --- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def client_id(self) -> str | None:
        """The client id the server gave this connection (from the token)."""
        return self._client_id

    @property
    def connected(self) -> bool:
        """True while connected with every channel re-attached."""
        return self._ready.is_set()

    async def connect(self) -> None:
        """Connect once (retrying transient failures until `connect_timeout`); raise on a fatal refusal."""
        if self._closed is not None:
            raise self._closed
        if self._task is None:
            if self._session is None:
                self._session = aiohttp.ClientSession()
            self._first = asyncio.get_running_loop().create_future()
            self._task = asyncio.create_task(self._run(), name="agentchat-client")
        assert self._first is not None
        async with asyncio.timeout(self.connect_timeout):
            await asyncio.shield(self._first)

    async def wait_connected(self) -> None:
        """Wait until connected and re-attached; raise ConnectionClosed if the client has stopped."""
        while not self._ready.is_set():
            if self._closed is not None:
                raise self._closed
            waiter = asyncio.create_task(self._ready.wait())
            assert self._task is not None
            await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if self._task.done() and not self._ready.is_set():
                raise self._closed or ConnectionClosed(None, "client stopped")

    async def close(self) -> None:
        """Close the connection normally (the server ends the session: presence leaves at once)."""
        if self._closed is None:
            self._closed = ConnectionClosed(CloseCode.NORMAL, "closed by the client")
        if self._link is not None:
            await self._link.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._shut(self._closed)
        if self._own_session and self._session is not None:
            await self._session.close()

    def channel(self, name: str) -> Channel:
        """The Channel object for `name` (one per name; nothing is sent until you use it)."""
        from agentchat.channel import Channel

        channel = self._channels.get(name)
        if channel is None:
            channel = self._channels[name] = Channel(self, name)
        return channel

    # --- requests --------------------------------------------------------------------------

    async def request(self, frame: dict[str, Any], *, retain: bool = True) -> dict[str, Any]:
        """Send a frame with a fresh `ref` and return its reply; raise RequestError on `nack`.

        A retained request survives reconnects (it is resent after re-attaching, so it must be
        idempotent); an unretained one fails with LinkGone when its connection ends.
        """
        return await self.submit(frame, retain=retain)

    def submit(self, frame: dict[str, Any], *, retain: bool = True) -> asyncio.Future[dict[str, Any]]:
        """Like `request` but returns the reply future at once; frames leave in submit order."""
        if self._closed is not None:
            raise self._closed
        if len(self._pending) >= self.max_pending:
            # Overflow policy: refuse new work rather than queue without end during an outage.
            raise TooManyPending(f"{len(self._pending)} requests are waiting; retry later")
        ref = next(self._refs)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        pending = self._pending[ref] = _Pending({**frame, "ref": ref}, future, retain)
        future.add_done_callback(lambda _: self._pending.pop(ref, None))
        if self._link is not None and (self._ready.is_set() or not retain):
            self._transmit(pending)
        elif not retain:
            future.set_exception(LinkGone())
        return future

    def abandon(self, future: asyncio.Future[dict[str, Any]], error: BaseException) -> None:
        """Fail a pending request without waiting for its reply (its reply, if any, is ignored)."""
        if not future.done():
            future.set_exception(error)

    def _transmit(self, pending: _Pending) -> None:
        assert self._link is not None
        pending.sent_on = self._gen
        pending.sends += 1
        self._link.send(pending.frame)

    # --- the connection loop ---------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._connect_loop()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("connection loop failed")
            self._shut(ConnectionClosed(None, f"client failed: {exc!r}"))

    async def _connect_loop(self) -> None:
        failures = 0
        while True:
            try:
                link = await self._open()
            except HandshakeFailed as exc:
                if self._stops_for(exc.closed):
                    return
                failures += 1
                await asyncio.sleep(self.backoff.delay(failures))
                continue
            except (OSError, aiohttp.ClientError, TimeoutError) as exc:
                log.info("connect to %s failed: %s", self.url, exc)
                failures += 1
                await asyncio.sleep(self.backoff.delay(failures))
                continue
            except ConnectionClosed as exc:
                self._shut(exc)
                return
            failures = 0
            closed = await self._serve(link)
            if self._closed is not None:
                return
            log.info("connection lost (%s): %s", closed.code, closed.reason)
            if self._stops_for(closed):
                return
            failures = 1
            await asyncio.sleep(self.backoff.delay(failures))

    def _stops_for(self, closed: Closed) -> bool:
        # `renew` needs a way to get a fresh token; without a provider it is a stop.
        if closed.action == "stop" or (closed.action == "renew" and self._token_provider is None):
            self._shut(ConnectionClosed(closed.code, closed.reason))
            return True
        return False

    async def _open(self) -> Link:
        assert self._session is not None
        connect: dict[str, Any] = {"type": "connect", "token": await self._fresh_token()}
        if self._resume is not None:
            connect["resume"] = self._resume
        return await Link.open(self._session, self.url, self.format, connect)

    async def _fresh_token(self) -> str:
        if self._token_provider is not None:
            token = self._token_provider()
            self._token = await token if inspect.isawaitable(token) else token
        assert self._token is not None
        return self._token

    async def _serve(self, link: Link) -> Closed:
        info = link.connected
        if self._client_id is not None and info.get("client_id") != self._client_id:
            await link.close()
            self._shut(
                ConnectionClosed(None, f"token is for {info.get('client_id')!r}, not {self._client_id!r}")
            )
            return Closed(CloseCode.NORMAL, "client_id mismatch")
        session_lost = self._resume is not None and not info.get("resumed")
        self.resumed = bool(info.get("resumed"))
        self._client_id = str(info.get("client_id"))
        self.kind = str(info.get("kind"))
        self.session_id = str(info.get("session_id"))
        self.limits = dict(info.get("limits") or {})
        self._resume = {"session_id": str(info["session_id"]), "key": str(info["key"])}
        self._gen += 1
        gen = self._gen
        self.reconnects = gen - 1
        self._link = link
        reader = asyncio.create_task(link.run(self._on_frame))
        reader.add_done_callback(lambda _: self._link_lost(gen))
        if session_lost:
            # Streams belong to a session; a new session cannot continue them (the server aborts them).
            for stream in list(self._streams.values()):
                stream._session_lost()
        try:
            await asyncio.gather(*(channel._restore() for channel in list(self._channels.values())))
        except (LinkGone, ConnectionClosed):
            return await reader
        if not reader.done():
            for pending in list(self._pending.values()):
                if pending.retain and pending.sent_on != gen:
                    self._transmit(pending)
            self._ready.set()
            if self._first is not None and not self._first.done():
                self._first.set_result(None)
        return await reader

    def _link_lost(self, gen: int) -> None:
        if gen != self._gen:
            return
        self._ready.clear()
        self._link = None
        for ref, pending in list(self._pending.items()):
            if not pending.retain:
                self._pending.pop(ref, None)
                if not pending.future.done():
                    pending.future.set_exception(LinkGone())
        for channel in self._channels.values():
            channel._link_lost()

    def _shut(self, error: ConnectionClosed) -> None:
        if self._closed is None:
            self._closed = error
        self._ready.clear()
        if self._first is not None and not self._first.done():
            self._first.set_exception(error)
            self._first.exception()  # retrieved here: connect() re-raises it
        for pending in list(self._pending.values()):
            if not pending.future.done():
                pending.future.set_exception(error)
        self._pending.clear()
        for channel in self._channels.values():
            channel._shut(error)
        for stream in list(self._streams.values()):
            stream._session_lost()

    # --- incoming frames -------------------------------------------------------------------

    def _on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        ref = frame.get("ref")
        channel = self._channels.get(frame.get("channel", "")) if "channel" in frame else None
        if kind in ("attached", "detached") and channel is not None:
            # Before the reply resolves: replayed messages that follow must see the new position.
            channel._dispatch(frame)
        if isinstance(ref, int) and kind in ("ack", "nack", "error", "attached", "detached"):
            pending = self._pending.pop(ref, None)
            if pending is not None and not pending.future.done():
                if kind in ("nack", "error"):
                    error = request_error(frame)
                    error.resent = pending.sends > 1
                    pending.future.set_exception(error)
                else:
                    pending.future.set_result(frame)
            return
        if kind == "error":
            log.warning("server error %s: %s", frame.get("code"), frame.get("message"))
        elif kind == "auth_renew":
            self._spawn(self._renew())
        elif kind == "stream_cancelled":
            stream = self._streams.get(str(frame.get("stream_id")))
            if stream is not None:
                stream._on_cancelled(frame)
        if channel is not None and kind not in ("attached", "detached"):
            channel._dispatch(frame)

    async def _renew(self) -> None:
        if self._token_provider is None:
            log.warning("token expires soon and no token_provider was given; the server will close 4003")
            return
        try:
            await self.request({"type": "auth", "token": await self._fresh_token()}, retain=False)
        except (RequestError, LinkGone, ConnectionClosed) as exc:
            # A reconnect sends a fresh token anyway; a refused one is the provider's fault.
            log.warning("token renewal failed: %s", exc)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        async def run() -> None:
            await coro

        task = asyncio.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
