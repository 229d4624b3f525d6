"""Bot: handlers for channel messages, presence status kept in sync, exactly-once answers across restarts."""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import logging
import os
import signal
import sys
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from typing import Any, overload

from agentchat.channel import Channel
from agentchat.client import Client, TokenProvider
from agentchat.context import Context
from agentchat.errors import AlreadyExistsError, ContinuityLost, StreamLost
from agentchat.filters import Addressed, Filter
from agentchat.models import Message
from agentchat.tokens import MintFunction, key_minter

log = logging.getLogger("agentchat.bot")

Handler = Callable[[Context], Awaitable[Any] | AsyncIterator[str]]
"""`async def h(ctx) -> str | None` (a returned string is sent as the reply) or an async generator
of text pieces (streamed as the reply)."""

REMEMBERED_TRIGGERS = 10_000


class Bot:
    """An agent in one or more channels: `@bot.on_message(...)` handlers, then `await bot.run(url, ...)`.

    Presence data is `{**presence, "status": idle|thinking|streaming}`, updated as handlers run.
    Answers use ids derived from the trigger, so each message is answered at most once, even
    across crashes; on start (and after lost continuity) the bot reads the last `catch_up`
    messages (no older than `catch_up_age` seconds) and answers those it has not answered. An
    answer that ended `aborted` (the bot died mid-stream) is retried, up to `max_attempts` in all.
    """

    def __init__(
        self,
        client_id: str,
        channels: Sequence[str] = ("room:lobby",),
        *,
        presence: dict[str, Any] | None = None,
        catch_up: int = 50,
        catch_up_age: float = 3600.0,
        max_attempts: int = 3,
        concurrency: int = 4,
        coalesce: float = 0.04,
        shutdown_grace: float = 5.0,
        status_debounce: float = 0.05,
    ) -> None:
        self.client_id = client_id
        self.channels = list(channels)
        self.presence = {"kind": "agent", **(presence or {})}
        self.catch_up = catch_up
        self.catch_up_age = catch_up_age
        self.max_attempts = max_attempts
        self.coalesce = coalesce
        self.shutdown_grace = shutdown_grace
        self.status_debounce = status_debounce
        self.client: Client | None = None
        self.status = "idle"
        self._concurrency = concurrency
        self._handlers: list[tuple[Filter, Handler]] = []
        self._replies: OrderedDict[tuple[str, int], list[str | None]] = OrderedDict()
        self._in_flight: set[tuple[str, int]] = set()
        self._retry_when_done: set[tuple[str, int]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._busy = 0
        self._open_streams = 0
        self._status_dirty = asyncio.Event()
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()
        self._caught_up: set[str] = set()
        self._slots: asyncio.Semaphore | None = None
        self._on_shutdown: list[Callable[[], Awaitable[None] | None]] = []

    # --- registration ----------------------------------------------------------------------

    @overload
    def on_message(self, handler: Handler, /) -> Handler: ...

    @overload
    def on_message(
        self,
        handler: None = None,
        /,
        *,
        mentions_me: bool = False,
        addressed: Addressed = "any",
        humans_only: bool = False,
        kinds: Collection[str] | None = None,
        channel: str | None = None,
        names: Collection[str] | None = None,
        when: Callable[[Message], bool] | None = None,
    ) -> Callable[[Handler], Handler]: ...

    def on_message(
        self,
        handler: Handler | None = None,
        /,
        *,
        mentions_me: bool = False,
        addressed: Addressed = "any",
        humans_only: bool = False,
        kinds: Collection[str] | None = None,
        channel: str | None = None,
        names: Collection[str] | None = None,
        when: Callable[[Message], bool] | None = None,
    ) -> Handler | Callable[[Handler], Handler]:
        """Register a handler; the first registered handler whose filter matches a message takes it.

        `mentions_me` (= `addressed="me"`): the text contains `@<client_id>`; `"me_or_nobody"`: it
        mentions this bot or nobody. `humans_only` (= `kinds={"human"}`), `channel` (a pattern like
        `room:*`), `names` (event names), `when` (any predicate).
        """
        if humans_only:
            kinds = {"human"}
        rule = Filter(
            addressed="me" if mentions_me else addressed,
            kinds=frozenset(kinds) if kinds is not None else None,
            channel=channel,
            names=frozenset(names) if names is not None else None,
            when=when,
        )

        def register(function: Handler) -> Handler:
            self._handlers.append((rule, function))
            return function

        return register(handler) if handler is not None else register

    # --- running ---------------------------------------------------------------------------

    async def run(
        self,
        url: str,
        *,
        token: str | None = None,
        token_provider: TokenProvider | None = None,
        **options: Any,
    ) -> None:
        """Connect, join the channels and answer messages until `stop()` or cancellation.

        Shutdown is graceful: handlers get `shutdown_grace` seconds, then are cancelled (their
        streams end `cancelled`); presence is left and the connection closed.
        """
        self._stop.clear()
        self._slots = asyncio.Semaphore(self._concurrency)
        client = Client(url, token=token, token_provider=token_provider, client_id=self.client_id, **options)
        try:
            await client.connect()
        except BaseException:
            await client.close()
            raise
        self.client = client
        self.status = "idle"
        watchers = [asyncio.create_task(self._watch(client.channel(name))) for name in self.channels]
        status = asyncio.create_task(self._status_loop())
        stop = asyncio.create_task(self._stop.wait())
        try:
            done, _ = await asyncio.wait([*watchers, stop], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stop:
                    task.result()  # a watcher only ends by failing: surface it
        finally:
            stop.cancel()
            await self._shutdown(client, [*watchers, status])

    def stop(self) -> None:
        """Ask `run` to shut down gracefully."""
        self._stop.set()

    def on_shutdown(self, callback: Callable[[], Awaitable[None] | None]) -> None:
        """Call `callback` (sync or async) each time `run` ends, after the connection is closed,
        e.g. to close a model's HTTP session."""
        self._on_shutdown.append(callback)

    async def wait_ready(self) -> None:
        """Wait until every channel is attached, presence entered and the catch-up scan is done."""
        await self._ready.wait()

    async def _shutdown(self, client: Client, watchers: list[asyncio.Task[None]]) -> None:
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=self.shutdown_grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        try:
            async with asyncio.timeout(self.shutdown_grace):
                for name in self.channels:
                    await client.channel(name).presence.leave()
        except Exception as exc:
            log.info("leaving presence on shutdown: %s", exc)
        await client.close()
        self._ready.clear()
        self._caught_up.clear()
        for callback in self._on_shutdown:
            try:
                result = callback()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("%s: shutdown callback failed", self.client_id)

    async def _watch(self, channel: Channel) -> None:
        position = await channel.attach()
        await channel.presence.enter({**self.presence, "status": self.status})
        subscription = channel.subscribe(after=position.serial)
        await self._catch_up(channel, position.serial)
        self._caught_up.add(channel.name)
        if len(self._caught_up) == len(set(self.channels)):
            self._ready.set()
        while True:
            try:
                async for message in subscription:
                    await self._consider(channel, message)
            except ContinuityLost as lost:
                log.warning("%s: %s; scanning recent history", self.client_id, lost)
                await self._catch_up(channel, lost.position.serial)

    # --- deciding what to answer -----------------------------------------------------------

    async def _catch_up(self, channel: Channel, upto: int) -> None:
        if self.catch_up <= 0 or upto <= 0:
            return
        page = await channel.history(before=upto + 1, limit=self.catch_up)
        messages = sorted(page.messages, key=lambda m: m.serial or 0)
        for message in messages:
            self._note_reply(channel, message)
        oldest = (time.time() - self.catch_up_age) * 1000
        for message in messages:
            if message.ts >= oldest and message.client_id != self.client_id:
                self._maybe_answer(channel, message)

    async def _consider(self, channel: Channel, message: Message) -> None:
        if message.client_id != self.client_id:
            self._maybe_answer(channel, message)
            return
        self._note_reply(channel, message)
        if message.status == "aborted" and message.reply_to is not None:
            # Our earlier answer died with its writer (a crash or a lost session): answer anew.
            key = (channel.name, message.reply_to)
            if key in self._in_flight:
                # The handler that wrote it has not noticed yet; answer again once it has finished.
                self._retry_when_done.add(key)
            elif not self._answered(key):
                page = await channel.history(after=message.reply_to - 1, limit=1, direction="forwards")
                trigger = page.messages[0] if page.messages else None
                if trigger is not None and trigger.serial == message.reply_to:
                    if trigger.ts >= (time.time() - self.catch_up_age) * 1000:
                        self._maybe_answer(channel, trigger)

    def _note_reply(self, channel: Channel, message: Message) -> None:
        if message.client_id != self.client_id or message.reply_to is None:
            return
        key = (channel.name, message.reply_to)
        self._replies.setdefault(key, []).append(message.status)
        self._replies.move_to_end(key)
        while len(self._replies) > REMEMBERED_TRIGGERS:
            self._replies.popitem(last=False)

    def _answered(self, key: tuple[str, int]) -> bool:
        return any(status != "aborted" for status in self._replies.get(key, ()))

    def _maybe_answer(self, channel: Channel, message: Message) -> None:
        assert message.serial is not None
        key = (channel.name, message.serial)
        if key in self._in_flight or self._answered(key):
            return
        attempt = len(self._replies.get(key, ()))
        if attempt >= self.max_attempts:
            return
        handler = next((h for rule, h in self._handlers if rule.matches(message, self.client_id)), None)
        if handler is None:
            return
        self._in_flight.add(key)
        task = asyncio.create_task(self._handle(channel, message, attempt, handler))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, channel: Channel, message: Message, attempt: int, handler: Handler) -> None:
        assert self._slots is not None and message.serial is not None
        key = (channel.name, message.serial)
        try:
            async with self._slots:
                self._busy += 1
                self._status_dirty.set()
                assert self.client is not None
                context = Context(
                    self.client,
                    channel,
                    message,
                    attempt,
                    me=self.client.client_id or self.client_id,
                    coalesce=self.coalesce,
                    on_streaming=self._streams_changed,
                )
                task = asyncio.create_task(self._invoke(handler, context))
                context.on_stop(task.cancel)
                try:
                    await task
                except asyncio.CancelledError:
                    if not context.stopped_by_cancel or _being_cancelled():
                        raise
                    log.info("%s: answer to %s cancelled by a member", self.client_id, key)
                except AlreadyExistsError:
                    log.info("%s: %s is answered already; skipping", self.client_id, key)
                except StreamLost as exc:
                    log.warning("%s: answer to %s lost: %s", self.client_id, key, exc)
                except Exception:
                    log.exception("%s: handler failed on %s", self.client_id, key)
                finally:
                    self._busy -= 1
                    self._status_dirty.set()
        finally:
            self._in_flight.discard(key)
            if key in self._retry_when_done:
                self._retry_when_done.discard(key)
                if not self._stop.is_set():
                    self._maybe_answer(channel, message)

    async def _invoke(self, handler: Handler, context: Context) -> None:
        if inspect.isasyncgenfunction(handler):
            pieces = handler(context)
            assert isinstance(pieces, AsyncIterator)
            async with context.stream() as stream:
                async for piece in pieces:
                    await stream.append(piece)
            return
        result = handler(context)
        assert inspect.isawaitable(result)
        value = await result
        if isinstance(value, str) and context.replies == 0:
            await context.reply(value)

    # --- presence status -------------------------------------------------------------------

    def _streams_changed(self, delta: int) -> None:
        self._open_streams += delta
        self._status_dirty.set()

    async def _status_loop(self) -> None:
        # One task sends every update, so presence never shows an older status after a newer one.
        while True:
            await self._status_dirty.wait()
            # Let a burst of changes settle (a stream ending, then its handler) into one update.
            await asyncio.sleep(self.status_debounce)
            self._status_dirty.clear()
            status = "streaming" if self._open_streams else "thinking" if self._busy else "idle"
            if status == self.status or self.client is None:
                continue
            self.status = status
            for name in self.channels:
                channel = self.client.channel(name)
                if channel.attached:
                    try:
                        await channel.presence.update({**self.presence, "status": status})
                    except Exception as exc:
                        log.info("presence update failed: %s", exc)


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def load_bot(spec: str) -> Bot:
    """Import `module:attr` (attr defaults to `bot`): a Bot, or a callable returning one.

    The module may live in the current directory even when it is not on `sys.path` (as under the
    `agentchat` console script). Raises ValueError when it cannot be found, TypeError when it is
    not a Bot.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name:
        raise ValueError(f"expected module:attr, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        here = os.getcwd()
        if exc.name != module_name.partition(".")[0] or here in sys.path:
            raise ValueError(f"cannot import {module_name!r}: {exc}") from exc
        sys.path.insert(0, here)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as again:
            raise ValueError(f"cannot import {module_name!r} (looked in {here} too): {again}") from again
    try:
        target = getattr(module, attr or "bot")
    except AttributeError as exc:
        raise ValueError(f"{module_name} has no attribute {attr or 'bot'!r}") from exc
    bot = target if isinstance(target, Bot) else target() if callable(target) else None
    if not isinstance(bot, Bot):
        raise TypeError(f"{spec} is neither a Bot nor a callable returning one")
    return bot


async def run_bot_from_spec(
    spec: str,
    url: str,
    *,
    token: str | None = None,
    token_provider: TokenProvider | None = None,
    mint: MintFunction | None = None,
    keys: str | Sequence[str] | None = None,
    channels: Sequence[str] | None = None,
    handle_signals: bool = True,
) -> None:
    """Load the bot named by `module:attr` and run it until stopped (what `agentchat bot` does).

    Credentials, first given wins: `token`, `token_provider`, `mint(client_id, kind)`, API `keys`
    ("name:secret", minting locally), else the AGENTCHAT_KEYS variable. With `handle_signals`,
    SIGINT and SIGTERM stop the bot gracefully.
    """
    bot = load_bot(spec)
    if channels:
        bot.channels = list(channels)
    if token is None and token_provider is None:
        if mint is None:
            keys = keys or os.environ.get("AGENTCHAT_KEYS")
            if not keys:
                raise ValueError("give a token, a token_provider, mint or API keys (AGENTCHAT_KEYS)")
            mint = key_minter(keys)
        token_provider = functools.partial(mint, bot.client_id, "agent")
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM) if handle_signals else ()
    for sig in signals:
        loop.add_signal_handler(sig, bot.stop)
    try:
        await bot.run(url, token=token, token_provider=token_provider)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
