"""How a bot answers: the first matching handler takes a message, one task per answer, each answered once."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from agentchat.channel import Channel
from agentchat.client import Client
from agentchat.context import Context, ReplyIds
from agentchat.double_texting import DEFAULT, REJECT_NOTICE, DoubleTexting, Requesters, checked
from agentchat.errors import (
    AgentChatError,
    AlreadyExistsError,
    ClaimHeld,
    LoopBrake,
    RequestError,
    StreamLost,
)
from agentchat.events import ChannelEvent, ClaimChanged
from agentchat.filters import Filter
from agentchat.ledger import AnswerLedger, Trigger
from agentchat.models import Message
from agentchat.pool import Deferrals
from agentchat.retry import NO_RETRY, Retry
from agentchat.roommodels import ClaimEvent
from agentchat.status import StatusKeeper

log = logging.getLogger("agentchat.bot")

Handler = Callable[[Context], Awaitable[Any] | AsyncIterator[str]]
"""`async def h(ctx) -> str | None` (a returned string is sent as the reply) or an async generator
of text pieces (streamed as the reply)."""


class Answerer:
    """Runs a bot's handlers on the messages of its channels, for one `Bot.run` and its Client.

    Give it each durable message of the bot's channels in order (`consider`), and let it scan recent
    history after a start or a continuity loss (`catch_up`); `drain` ends it at shutdown. At most
    `concurrency` handlers run at once; the ledger decides what still needs an answer. In a `pool`
    each answer is claimed first (only the winner answers), `watch_claims` takes over messages
    whose claim lapsed with a dead instance, and `follow_claims` keeps double texting in one hand.
    """

    def __init__(
        self,
        client: Client,
        handlers: list[tuple[Filter, Handler]],
        ledger: AnswerLedger,
        status: StatusKeeper,
        *,
        me: str,
        reply_ids: ReplyIds,
        catch_up: int,
        catch_up_age: float,
        concurrency: int,
        coalesce: float,
        retry: Retry = NO_RETRY,
        double_texting: DoubleTexting | None = None,
        pool: bool = False,
    ) -> None:
        self.client = client
        self.pool = pool
        self.retry = retry
        self.double_texting = double_texting
        self.me = me
        self.catch_up_count = catch_up
        self.catch_up_age = catch_up_age
        self.coalesce = coalesce
        self._handlers = handlers
        self._ledger = ledger
        self._status = status
        self._reply_ids = reply_ids
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._braked: set[str] = set()  # channels whose loop brake we already logged
        self._requesters = Requesters()
        self._deferrals = Deferrals()

    async def catch_up(self, channel: Channel, upto: int) -> None:
        """Answer what the last `catch_up` messages up to serial `upto` ask for and nobody answered."""
        if self.catch_up_count <= 0 or upto <= 0:
            return
        recent = [m async for m in channel.messages(before=upto + 1, limit=self.catch_up_count)]
        messages = sorted(recent, key=lambda m: m.serial or 0)
        for message in messages:
            self._ledger.note(message)
        for message in messages:
            if self._recent(message) and message.client_id != self.me:
                self._maybe_answer(channel, message)

    async def consider(self, channel: Channel, message: Message) -> None:
        """Take the channel's next durable message: answer it, or note it if it is one of ours."""
        if message.kind == "human":
            self._braked.discard(channel.name)  # a person spoke: the server lifted the brake
        if message.client_id != self.me:
            self._maybe_answer(channel, message)
            return
        self._ledger.note(message)
        trigger = self._ledger.wants_retry(message)
        if trigger is not None:
            # Our earlier answer died with its writer (a crash or a lost session): answer anew.
            page = await channel.history(after=trigger[1] - 1, limit=1, direction="forwards")
            first = page.messages[0] if page.messages else None
            if first is not None and first.serial == trigger[1] and self._recent(first):
                self._maybe_answer(channel, first)

    def follow_claims(self, channel: Channel) -> Callable[[], None]:
        """In a pool: follow the claim frames of `channel` as they arrive (before the messages they
        precede are considered), for double texting across instances; returns the stop function."""

        def on_event(event: ChannelEvent) -> None:
            if isinstance(event, ClaimChanged) and not self._stopping:
                for message in self._deferrals.claim_changed(event.claim):
                    self._maybe_answer(channel, message)

        return channel.listen(on_event)

    async def watch_claims(self, channel: Channel, claims: AsyncIterator[ClaimEvent]) -> None:
        """In a pool: answer messages whose claim lapsed (`expired`: its holder died or hung before
        it answered). A `released` claim needs nothing here: an `aborted` answer is retried when it
        arrives (`consider`), a `failed` or `cancelled` one counts as the answer. Runs until
        `claims` ends."""
        async for change in claims:
            if change.state != "expired":
                continue
            key = (channel.name, change.serial)
            if self._ledger.next_attempt(key) is None or self._stopping:
                continue
            try:
                page = await channel.history(after=change.serial - 1, limit=1, direction="forwards")
            except AgentChatError as exc:
                log.warning("%s: could not read %s#%s to take it over: %s", self.me, *key, exc)
                continue
            first = page.messages[0] if page.messages else None
            if first is not None and first.serial == change.serial and self._recent(first):
                self._maybe_answer(channel, first)

    async def drain(self, grace: float) -> None:
        """Start nothing new; give running handlers `grace` seconds, then cancel them (their
        streams end `cancelled`)."""
        self._stopping = True
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def stopping(self) -> bool:
        """True once `drain` began: running handlers are being stopped for a shutdown."""
        return self._stopping

    def _recent(self, message: Message) -> bool:
        return message.ts >= (time.time() - self.catch_up_age) * 1000

    def _maybe_answer(self, channel: Channel, message: Message) -> None:
        assert message.serial is not None
        key = (channel.name, message.serial)
        attempt = self._ledger.next_attempt(key)
        if attempt is None or self._stopping:
            return
        handler = next((h for rule, h in self._handlers if rule.matches(message, self.me)), None)
        if handler is None:
            return
        self._ledger.start(key)
        # A person writing again while we answer them: the double texting policy decides.
        person = message.kind == "human"
        earlier = self._requesters.earlier(channel.name, message.client_id, message.serial) if person else []
        if self.pool and person and self._deferrals.defer(message) and not earlier:
            return  # another instance answers this person's earlier message: it takes this one too
        task = asyncio.create_task(self._handle(channel, message, attempt, handler, earlier))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if person:
            self._requesters.add(channel.name, message.client_id, message.serial, task)

    def policy(self, channel: Channel) -> DoubleTexting:
        """The double texting policy in `channel`: the bot's own, else the channel's, else `queue`."""
        if self.double_texting is not None:
            return self.double_texting
        try:
            return checked(channel.policy.double_texting) or DEFAULT
        except ValueError:
            return DEFAULT  # a policy newer than this SDK: the protocol's default

    async def _handle(
        self,
        channel: Channel,
        message: Message,
        attempt: int,
        handler: Handler,
        earlier: list[asyncio.Task[None]],
    ) -> None:
        assert message.serial is not None
        key = (channel.name, message.serial)
        try:
            if earlier and not await self._double_texted(channel, message, attempt, earlier):
                return
            async with self._slots:
                self._status.handler_started()
                try:
                    if self.pool:
                        await self._answer_claimed(channel, message, handler)
                    else:
                        await self._answer(channel, message, attempt, handler)
                finally:
                    self._status.handler_finished()
        finally:
            if self._ledger.finish(key):
                self._maybe_answer(channel, message)

    async def _answer(self, channel: Channel, message: Message, attempt: int, handler: Handler) -> None:
        tries = 0
        while True:
            error = await self._attempt(channel, message, attempt, handler)
            if not await self._again(channel, message, error, tries):
                return
            attempt, tries = attempt + 1, tries + 1

    async def _answer_claimed(self, channel: Channel, message: Message, handler: Handler) -> None:
        # In a pool only the claim's holder answers; each grant's token is new, so `token - 1` is
        # an attempt number no other instance uses for this message (the same ids on a re-grant).
        assert message.serial is not None
        tries = 0
        while True:
            try:
                async with channel.claim(message.serial) as claim:
                    error = await self._attempt(channel, message, claim.token - 1, handler, claim.token)
            except ClaimHeld as held:
                log.debug("%s: %s#%s is %s's", self.me, channel.name, message.serial, held.holder)
                return
            # A failed answer released the claim: a retry claims it again, with a new token.
            if not await self._again(channel, message, error, tries):
                return
            tries += 1

    async def _again(self, channel: Channel, message: Message, error: Exception | None, tries: int) -> bool:
        """After answer number `tries` failed with `error`: wait and return True if the retry
        policy wants another attempt."""
        if error is None or self._stopping or not self.retry.should_retry(error, tries):
            return False
        delay = self.retry.backoff.delay(tries + 1)
        log.warning(
            "%s: answer to %s#%s failed (%s); answering again in %.1f s",
            self.me,
            channel.name,
            message.serial,
            error,
            delay,
        )
        await asyncio.sleep(delay)
        return True

    async def _double_texted(
        self, channel: Channel, message: Message, attempt: int, earlier: list[asyncio.Task[None]]
    ) -> bool:
        """Carry out the policy for a message sent while its sender's `earlier` messages are being
        answered; True when the message is to be answered now."""
        policy = self.policy(channel)
        if policy == "reject":
            await self._reject(channel, message, attempt)
            return False
        if policy == "interrupt":
            for task in earlier:
                task.cancel()
        # queue: after the earlier answers; interrupt: once they ended `cancelled`.
        await asyncio.wait(earlier)
        return True

    async def _reject(self, channel: Channel, message: Message, attempt: int) -> None:
        assert message.serial is not None
        try:
            if not self.pool:
                await self._context(channel, message, attempt).reply(REJECT_NOTICE)
                return
            # In a pool the notice is the message's answer: claimed, so no instance answers it too.
            async with channel.claim(message.serial) as claim:
                await self._context(channel, message, claim.token - 1, claim.token).reply(REJECT_NOTICE)
        except (AlreadyExistsError, ClaimHeld):
            pass
        except Exception as exc:
            log.warning("%s: could not reject %s: %s", self.me, message.serial, exc)

    def _context(self, channel: Channel, message: Message, attempt: int, claim: int | None = None) -> Context:
        return Context(
            self.client,
            channel,
            message,
            attempt,
            ids=self._reply_ids,
            coalesce=self.coalesce,
            on_streaming=self._status.streams_changed,
            claim=claim,
            shutting_down=self.stopping,
        )

    async def _attempt(
        self, channel: Channel, message: Message, attempt: int, handler: Handler, claim: int | None = None
    ) -> Exception | None:
        """Run the handler once as answer `attempt`; return the error it failed with (its answer is
        then `failed`), None when it answered or there is nothing to retry."""
        assert message.serial is not None
        key = (channel.name, message.serial)
        context = self._context(channel, message, attempt, claim)
        # Our run for this attempt was left unfinished (a restart): its same id finds it again.
        context.resuming = claim is None and self._ledger.in_progress(key)
        task = asyncio.create_task(self._invoke(handler, context))
        context.on_stop(task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            if not context.stopped_by_cancel or _being_cancelled():
                raise
            log.info("%s: answer to %s cancelled by a member", self.me, key)
        except AlreadyExistsError:
            log.info("%s: %s is answered already; skipping", self.me, key)
        except StreamLost as exc:
            log.warning("%s: answer to %s lost: %s", self.me, key, exc)
        except LoopBrake as exc:
            self._loop_braked(key, exc)
        except RequestError as exc:
            log.warning("%s: answer to %s refused: %s", self.me, key, exc)
        except Exception as exc:
            log.exception("%s: handler failed on %s", self.me, key)
            await self._leave_failed(context, key, exc)
            return exc
        return None

    def _loop_braked(self, key: Trigger, refusal: LoopBrake) -> None:
        # Every agent is refused until a person speaks: trying this message again only adds noise.
        self._ledger.settle(key)
        if key[0] not in self._braked:
            self._braked.add(key[0])
            log.warning(
                "%s: the loop brake stopped agents in %s (budget %s) until a person speaks; not answering %s",
                self.me,
                key[0],
                refusal.budget,
                key[1],
            )

    async def _leave_failed(self, context: Context, key: Trigger, error: Exception) -> None:
        try:
            await context.fail(error)
        except Exception as exc:
            log.info("%s: could not leave a failed answer to %s: %s", self.me, key, exc)

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


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
