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
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from agentchat.answering import Answerer
from agentchat.channel import Channel
from agentchat.client import Client, TokenProvider
from agentchat.double_texting import DoubleTexting, checked
from agentchat.errors import ContinuityLost
from agentchat.handlers import Handlers
from agentchat.ledger import AnswerLedger
from agentchat.replies import configured_secret, random_secret, reply_id, secret_from_key
from agentchat.retry import NO_RETRY, Retry
from agentchat.status import StatusKeeper
from agentchat.tokens import MintFunction, first_key, key_minter

log = logging.getLogger("agentchat.bot")


class Bot(Handlers):
    """An agent in one or more channels: `@bot.on_message(...)` handlers (and `on_edit`, `on_delete`,
    `on_reaction` for events on messages), then `await bot.run(url, ...)`.

    Presence data is `{**presence, "status": idle|thinking|streaming}`, updated as handlers run.
    Answers use ids derived from the trigger and `reply_secret` (see `agentchat.replies`), so each
    message is answered at most once, even across crashes; on start (and after lost continuity)
    the bot reads the last `catch_up` messages (no older than `catch_up_age` seconds) and answers
    those it has not answered. An answer that ended `aborted` (the bot died mid-stream) is retried,
    up to `max_attempts` in all. AGENTCHAT_REPLY_SECRET is read here, once. A handler that raises
    leaves a `failed` answer with the error; `retry` (`agentchat.retry.Retry`) answers again after
    retryable failures (model overload, rate limits, lost connections). A person writing again
    while the bot answers them is handled by `double_texting` (`queue`, `interrupt`, `reject`;
    None: the channel's policy, see `agentchat.double_texting`). With `pool` (True, or the pool's
    name shown in presence as `pool`), several instances of the bot (same client_id) share the
    work: each claims a message before answering it, and takes over the ones a dead instance left.
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
        reply_secret: str | bytes | None = None,
        retry: Retry = NO_RETRY,
        double_texting: DoubleTexting | None = None,
        pool: bool | str = False,
    ) -> None:
        super().__init__()
        self.client_id = client_id
        self.channels = list(channels)
        self.pool = bool(pool)
        pool_name = pool if isinstance(pool, str) else client_id
        self.presence = {"kind": "agent", **({"pool": pool_name} if pool else {}), **(presence or {})}
        self.catch_up = catch_up
        self.catch_up_age = catch_up_age
        self.coalesce = coalesce
        self.shutdown_grace = shutdown_grace
        self.client: Client | None = None
        self._status = StatusKeeper(status_debounce)
        self.concurrency = concurrency
        self.retry = retry
        self.double_texting = checked(double_texting)
        self._reply_secret = configured_secret(reply_secret)
        self._ledger = AnswerLedger(client_id, max_attempts)
        self._answerer: Answerer | None = None
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()
        self._caught_up: set[str] = set()
        self._on_shutdown: list[Callable[[], Awaitable[None] | None]] = []

    # --- running ---------------------------------------------------------------------------

    async def run(
        self,
        url: str,
        *,
        token: str | None = None,
        token_provider: TokenProvider | None = None,
        wait_for_server: float | None = None,
        **options: Any,
    ) -> None:
        """Connect, join the channels and answer messages until `stop()` or cancellation.

        A server that is not up yet is waited for, `wait_for_server` seconds (None: as long as it
        takes, until `stop()`), with one log line per attempt; then ServerUnavailable. `options`
        go to the Client. Shutdown is graceful: handlers get `shutdown_grace` seconds, then are
        cancelled (their streams end `cancelled`); presence is left and the connection closed.
        """
        self._stop.clear()
        options.setdefault("connect_timeout", wait_for_server)
        client = Client(url, token=token, token_provider=token_provider, client_id=self.client_id, **options)
        try:
            connected = await self._connect(client)
        except BaseException:
            await client.close()
            await self._after_shutdown()
            raise
        if not connected:
            await client.close()
            await self._after_shutdown()
            return
        self.client = client
        self._status.status = "idle"
        self._answerer = Answerer(
            client,
            self._handlers,
            self._ledger,
            self._status,
            me=self.client_id,
            reply_ids=self.reply_id,
            catch_up=self.catch_up,
            catch_up_age=self.catch_up_age,
            concurrency=self.concurrency,
            coalesce=self.coalesce,
            retry=self.retry,
            double_texting=self.double_texting,
            pool=self.pool,
        )
        watchers = [
            asyncio.create_task(self._watch(client.channel(name), self._answerer)) for name in self.channels
        ]
        status = asyncio.create_task(self._status.run(self._publish_status))
        stop = asyncio.create_task(self._stop.wait())
        try:
            done, _ = await asyncio.wait([*watchers, stop], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stop:
                    task.result()  # a watcher only ends by failing: surface it
        finally:
            stop.cancel()
            await self._shutdown(client, self._answerer, [*watchers, status])

    @property
    def status(self) -> str:
        """The presence status last published: `idle`, `thinking` or `streaming`."""
        return self._status.status

    @property
    def max_attempts(self) -> int:
        """Answers to one message in all, counting the ones that ended `aborted`."""
        return self._ledger.max_attempts

    @max_attempts.setter
    def max_attempts(self, value: int) -> None:
        """Change the number of attempts for answers from now on."""
        self._ledger.max_attempts = value

    def stop(self) -> None:
        """Ask `run` to shut down gracefully (also while it waits for the server)."""
        self._stop.set()

    def reply_id(self, channel: str, serial: int, attempt: int = 0, index: int = 0) -> str:
        """The id of this bot's answer to message `serial` of `channel` (see `agentchat.replies`)."""
        if self._reply_secret is None:
            self._reply_secret = random_secret()
            log.info(
                "%s: reply ids are random for this run; set AGENTCHAT_REPLY_SECRET (or run with an API "
                "key) so that a restarted bot recognises its own answers",
                self.client_id,
            )
        return reply_id(self._reply_secret, channel, serial, attempt, index)

    def derive_reply_secret(self, api_key: str) -> None:
        """Derive the reply secret from the API key ("name:secret") this bot's tokens are minted
        with, unless one was given (argument or AGENTCHAT_REPLY_SECRET)."""
        if self._reply_secret is None:
            self._reply_secret = secret_from_key(api_key, self.client_id)

    def on_shutdown(self, callback: Callable[[], Awaitable[None] | None]) -> None:
        """Call `callback` (sync or async) each time `run` ends, after the connection is closed,
        e.g. to close a model's HTTP session."""
        self._on_shutdown.append(callback)

    async def wait_ready(self) -> None:
        """Wait until every channel is attached, presence entered and the catch-up scan is done."""
        await self._ready.wait()

    async def _shutdown(self, client: Client, answerer: Answerer, watchers: list[asyncio.Task[None]]) -> None:
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        await answerer.drain(self.shutdown_grace)
        try:
            async with asyncio.timeout(self.shutdown_grace):
                for name in self.channels:
                    await client.channel(name).presence.leave()
        except Exception as exc:
            log.info("leaving presence on shutdown: %s", exc)
        await client.close()
        self._ready.clear()
        self._caught_up.clear()
        await self._after_shutdown()

    async def _connect(self, client: Client) -> bool:
        # Waiting for a server may take long: a stop() meanwhile ends the wait (False).
        connecting = asyncio.create_task(client.connect())
        stopping = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not connecting.done():
                connecting.cancel()
            await asyncio.gather(connecting, stopping, return_exceptions=True)
        if connecting.cancelled():
            return False
        connecting.result()
        return True

    async def _after_shutdown(self) -> None:
        for callback in self._on_shutdown:
            try:
                result = callback()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("%s: shutdown callback failed", self.client_id)

    async def _watch(self, channel: Channel, answerer: Answerer) -> None:
        position = await channel.attach()
        await channel.presence.enter({**self.presence, "status": self.status})
        subscription = channel.subscribe(after=position.serial)
        watching = answerer.watch_claims(channel, subscription.claims) if self.pool else None
        claims = asyncio.create_task(watching) if watching is not None else None
        unfollow = answerer.follow_claims(channel) if self.pool else None
        try:
            await answerer.catch_up(channel, position.serial)
            self._caught_up.add(channel.name)
            if len(self._caught_up) == len(set(self.channels)):
                self._ready.set()
            while True:
                try:
                    async for message in subscription:
                        await answerer.consider(channel, message)
                except ContinuityLost as lost:
                    log.warning("%s: %s; scanning recent history", self.client_id, lost)
                    await answerer.catch_up(channel, lost.position.serial)
        finally:
            if unfollow is not None:
                unfollow()
            if claims is not None:
                claims.cancel()
                await asyncio.gather(claims, return_exceptions=True)

    # --- presence status -------------------------------------------------------------------

    async def _publish_status(self, status: str) -> None:
        assert self.client is not None
        for name in self.channels:
            channel = self.client.channel(name)
            if channel.attached:
                try:
                    await channel.presence.update({**self.presence, "status": status})
                except Exception as exc:
                    log.info("presence update failed: %s", exc)


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
    wait_for_server: float | None = None,
) -> None:
    """Load the bot named by `module:attr` and run it until stopped (what `agentchat bot` does).

    Credentials, first given wins: `token`, `token_provider`, `mint(client_id, kind)`, API `keys`
    ("name:secret", minting locally; the reply secret is derived from the first), else the
    AGENTCHAT_KEYS variable. With `handle_signals`, SIGINT and SIGTERM stop the bot gracefully.
    `wait_for_server` is how long to wait for a server that is not up (None: until stopped).
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
            bot.derive_reply_secret(first_key(keys))
        token_provider = functools.partial(mint, bot.client_id, "agent")
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM) if handle_signals else ()
    for sig in signals:
        loop.add_signal_handler(sig, bot.stop)
    try:
        await bot.run(url, token=token, token_provider=token_provider, wait_for_server=wait_for_server)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
