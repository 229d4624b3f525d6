"""The chat reads of the SQL Store: one message, a reader's reactions, unread and mention counts,
the room directory. Mixed into `SqlStore`; every read is bounded by count."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from agentchat_server.core.records import Message
from agentchat_server.store import Room, Unread
from agentchat_server.store.schema import (
    channels_table,
    mentions_table,
    messages_table,
    reactions_table,
    read_marks_table,
    row_to_message,
)

_m, _c, _k = messages_table.c, channels_table.c, read_marks_table.c


class ChatReads:
    """Reads for edits, reactions, read state and the directory (needs `engine`)."""

    @property
    def engine(self) -> AsyncEngine:
        """The async engine (provided by the Store adapter)."""
        raise NotImplementedError

    async def message_at(self, channel: str, serial: int) -> Message | None:
        """The message (or event) stored at `serial`, in its current state."""
        query = select(messages_table).where(_m.channel == channel, _m.serial == serial)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else row_to_message(row)

    async def my_reactions(
        self, channel: str, serials: Sequence[int], client_id: str
    ) -> dict[int, list[str]]:
        """The reactions `client_id` has on each of `serials` (only serials with some)."""
        r = reactions_table.c
        query = (
            select(r.serial, r.reaction)
            .where(r.channel == channel, r.client_id == client_id, r.serial.in_(list(serials)))
            .order_by(r.serial, r.ts, r.reaction)
        )
        found: dict[int, list[str]] = {}
        async with self.engine.connect() as conn:
            for serial, reaction in await conn.execute(query):
                found.setdefault(serial, []).append(reaction)
        return found

    async def unread(
        self, client_id: str, channels: Sequence[str] | None, after: str | None, limit: int, cap: int
    ) -> tuple[list[Unread], bool]:
        """Read marks and capped counts, for `channels` or a page of the member's marked channels."""
        async with self.engine.connect() as conn:
            if channels is not None:
                marks_query = select(_k.channel, _k.serial).where(
                    _k.client_id == client_id, _k.channel.in_(list(channels))
                )
                marks = {name: serial for name, serial in await conn.execute(marks_query)}
                names, more = list(dict.fromkeys(channels)), False
            else:
                page = select(_k.channel, _k.serial).where(_k.client_id == client_id)
                if after is not None:
                    page = page.where(_k.channel > after)
                rows = (await conn.execute(page.order_by(_k.channel).limit(limit + 1))).all()
                more = len(rows) > limit
                marks = {name: serial for name, serial in rows[:limit]}
                names = list(marks)
            heads_query = select(_c.name, _c.last_serial).where(_c.name.in_(names))
            heads = {name: last for name, last in await conn.execute(heads_query)}
            found = []
            for name in names:
                mark = marks.get(name, 0)
                unread = await _count(
                    conn,
                    select(_m.serial).where(
                        _m.channel == name,
                        _m.serial > mark,
                        _m.thread.is_(None),
                        _m.action.is_(None),
                        _m.client_id != client_id,
                    ),
                    cap,
                )
                n = mentions_table.c
                mentions = await _count(
                    conn,
                    select(n.serial).where(n.channel == name, n.client_id == client_id, n.serial > mark),
                    cap,
                )
                capped = unread > cap or mentions > cap
                found.append(
                    Unread(name, mark, heads.get(name, 0), min(unread, cap), min(mentions, cap), capped)
                )
        return found, more

    async def rooms(self, prefixes: Sequence[str], after: str | None, limit: int) -> tuple[list[Room], bool]:
        """Channels under `prefixes` in name order after `after`: at most `limit`, and whether more follow."""
        if not prefixes:
            return [], False
        matches: list[ColumnElement[bool]] = [_c.name.startswith(p, autoescape=True) for p in prefixes if p]
        query = _directory()
        if "" not in prefixes:
            query = query.where(or_(*matches))
        if after is not None:
            query = query.where(_c.name > after)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query.order_by(_c.name).limit(limit + 1))).all()
        return [_room(row) for row in rows[:limit]], len(rows) > limit

    async def room(self, channel: str) -> Room | None:
        """One channel's directory entry; None if the Store has no row for it."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(_directory().where(_c.name == channel))).first()
        return None if row is None else _room(row)


def _directory() -> Any:
    last = and_(_m.channel == _c.name, _m.serial == _c.last_serial)
    return select(_c.name, _c.title, _c.topic, _c.last_serial, _c.meta_by, _c.meta_ts, _m.ts).select_from(
        channels_table.outerjoin(messages_table, last)
    )


def _room(row: Any) -> Room:
    return Room(row.name, row.title, row.topic, row.last_serial, row.ts, row.meta_by, row.meta_ts)


async def _count(conn: Any, rows: Any, cap: int) -> int:
    """How many rows the query gives, counting at most cap + 1 of them."""
    return int(
        (await conn.execute(select(func.count()).select_from(rows.limit(cap + 1).subquery()))).scalar_one()
    )
