"""Registering a bot's handlers: for messages (`on_message`) and for events on messages (`on_edit`,
`on_delete`, `on_reaction`), each with the filter that picks what it takes."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import overload

from agentchat.answering import Handler
from agentchat.filters import DELETES, EDITS, MESSAGES, REACTIONS, Addressed, Filter
from agentchat.models import Message

Decorator = Callable[[Handler], Handler]


class Handlers:
    """A bot's handlers in registration order: the first whose filter matches takes a message or event.

    Messages go to `on_message` handlers only; edits, deletes and reactions (events, with `action`
    and `target`) only to `on_edit`, `on_delete` and `on_reaction` handlers, so a catch-all message
    handler never answers an edit or a reaction. A bot's own messages and events match nothing.
    """

    def __init__(self) -> None:
        self._handlers: list[tuple[Filter, Handler]] = []

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
    ) -> Decorator: ...

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
    ) -> Handler | Decorator:
        """Register a handler for messages (never events); the first registered handler whose filter
        matches a message takes it.

        `mentions_me` (= `addressed="me"`): the message names this bot (`Message.mentions`);
        `"me_or_nobody"`: it names this bot or nobody. `humans_only` (= `kinds={"human"}`),
        `channel` (a pattern like `room:*`), `names` (event names), `when` (any predicate).
        """
        rule = Filter(
            addressed="me" if mentions_me else addressed,
            kinds=_kinds(kinds, humans_only),
            channel=channel,
            names=frozenset(names) if names is not None else None,
            when=when,
            actions=MESSAGES,
        )
        return self._register(rule, handler)

    @overload
    def on_edit(self, handler: Handler, /) -> Handler: ...

    @overload
    def on_edit(
        self,
        handler: None = None,
        /,
        *,
        humans_only: bool = False,
        kinds: Collection[str] | None = None,
        channel: str | None = None,
        when: Callable[[Message], bool] | None = None,
    ) -> Decorator: ...

    def on_edit(
        self,
        handler: Handler | None = None,
        /,
        *,
        humans_only: bool = False,
        kinds: Collection[str] | None = None,
        channel: str | None = None,
        when: Callable[[Message], bool] | None = None,
    ) -> Handler | Decorator:
        """Register a handler for edits: `context.message` is the edit event (`target` is the edited
        message's serial, `data` its new data). Filters as in `on_message`."""
        return self._register(_event_filter(EDITS, humans_only, kinds, channel, when), handler)

    @overload
    def on_delete(self, handler: Handler, /) -> Handler: ...

    @overload
    def on_delete(
        self,
        handler: None = None,
        /,
        *,
        humans_only: bool = False,
        kinds: Collection[str] | None = None,
        channel: str | None = None,
        when: Callable[[Message], bool] | None = None,
    ) -> Decorator: ...

    def on_delete(
        self,
        handler: Handler | None = None,
        /,
        *,
        humans_only: bool = False,
        kinds: Collection[str] | None = None,
        channel: str | None = None,
        when: Callable[[Message], bool] | None = None,
    ) -> Handler | Decorator:
        """Register a handler for deletes: `context.message` is the delete event (`target` is the
        deleted message's serial, `client_id` who deleted it). Filters as in `on_message`."""
        return self._register(_event_filter(DELETES, humans_only, kinds, channel, when), handler)

    @overload
    def on_reaction(self, handler: Handler, /) -> Handler: ...

    @overload
    def on_reaction(
        self,
        handler: None = None,
        /,
        *,
        humans_only: bool = False,
        kinds: Collection[str] | None = None,
        channel: str | None = None,
        when: Callable[[Message], bool] | None = None,
    ) -> Decorator: ...

    def on_reaction(
        self,
        handler: Handler | None = None,
        /,
        *,
        humans_only: bool = False,
        kinds: Collection[str] | None = None,
        channel: str | None = None,
        when: Callable[[Message], bool] | None = None,
    ) -> Handler | Decorator:
        """Register a handler for reactions added and taken back: `context.message` is the event
        (`action` `react` or `unreact`, `data` the reaction, `reactions` the new aggregate on the
        message at `target`). Filters as in `on_message`."""
        return self._register(_event_filter(REACTIONS, humans_only, kinds, channel, when), handler)

    def _register(self, rule: Filter, handler: Handler | None) -> Handler | Decorator:
        def register(function: Handler) -> Handler:
            self._handlers.append((rule, function))
            return function

        return register(handler) if handler is not None else register


def _kinds(kinds: Collection[str] | None, humans_only: bool) -> frozenset[str] | None:
    if humans_only:
        return frozenset({"human"})
    return frozenset(kinds) if kinds is not None else None


def _event_filter(
    actions: frozenset[str | None],
    humans_only: bool,
    kinds: Collection[str] | None,
    channel: str | None,
    when: Callable[[Message], bool] | None,
) -> Filter:
    return Filter(kinds=_kinds(kinds, humans_only), channel=channel, when=when, actions=actions)
