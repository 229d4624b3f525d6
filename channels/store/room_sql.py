"""The Store's reads of agent rooms (claims, runs, input requests), the "to me" history filter and
retention of room rows; a mixin of `SqlStore`, which gives it its engine."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, delete, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agentchat_server.core.agentrooms import ClaimRow
from agentchat_server.core.inputs import RequestRecord
from agentchat_server.core.runs import ACTIVE, RunRecord
from agentchat_server.store.room_schema import (
    claim_from_row,
    claims_table,
    message_to_table,
    request_from_row,
    requests_table,
    run_from_row,
    runs_table,
)
from agentchat_server.store.schema import messages_table

_ACTIVE = sorted(ACTIVE)


def addressed_to(client_id: str) -> ColumnElement[bool]:
    """The history filter "to me": messages to nobody, to `client_id`, or from it."""
    m, t = messages_table.c, message_to_table.c
    addressees = select(t.serial).where(t.channel == m.channel, t.serial == m.serial)
    return or_(
        m.client_id == client_id, ~exists(addressees), exists(addressees.where(t.client_id == client_id))
    )


async def prune_rooms(conn: AsyncConnection, channel: str, top: int) -> None:
    """Retention: drop the room rows of messages up to `top` that nothing waits on any more
    (addressees, claims, closed requests, ended runs)."""
    await conn.execute(
        delete(message_to_table).where(
            message_to_table.c.channel == channel, message_to_table.c.serial <= top
        )
    )
    await conn.execute(
        delete(claims_table).where(claims_table.c.channel == channel, claims_table.c.serial <= top)
    )
    r = requests_table.c
    await conn.execute(
        delete(requests_table).where(r.channel == channel, r.serial <= top, r.status != "pending")
    )
    await conn.execute(
        delete(runs_table).where(
            runs_table.c.channel == channel, runs_table.c.serial <= top, runs_table.c.status.not_in(_ACTIVE)
        )
    )


async def renew_run_leases(conn: AsyncConnection, node: str, until_ms: int) -> None:
    """Extend the leases of the active runs whose writer is a session of `node`."""
    r = runs_table.c
    await conn.execute(
        update(runs_table)
        .where(r.node == node, r.writer.is_not(None), r.status.in_(_ACTIVE))
        .values(lease_until=until_ms)
    )


class RoomQueries:
    """Reads of room rows (see the `Store` port for each contract)."""

    @property
    def engine(self) -> AsyncEngine:
        """The async engine (the store provides it)."""
        raise NotImplementedError

    async def _rows(self, query: Any) -> list[Any]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(query)).all())

    async def claims(self, channel: str, now: int, after: int | None, limit: int) -> list[ClaimRow]:
        """Claims held at `now` after serial `after`, in serial order."""
        c = claims_table.c
        query = select(claims_table).where(c.channel == channel, c.state == "held", c.expires_at > now)
        if after is not None:
            query = query.where(c.serial > after)
        rows = await self._rows(query.order_by(c.serial).limit(limit))
        return [claim_from_row(row) for row in rows]

    async def due_claims(self, now: int, limit: int) -> list[ClaimRow]:
        """Held claims whose lease ended before `now`."""
        c = claims_table.c
        query = select(claims_table).where(c.state == "held", c.expires_at <= now)
        rows = await self._rows(query.order_by(c.expires_at).limit(limit))
        return [claim_from_row(row) for row in rows]

    async def run(self, run_id: str) -> RunRecord | None:
        """The run with this id."""
        rows = await self._rows(select(runs_table).where(runs_table.c.run_id == run_id))
        return run_from_row(rows[0]) if rows else None

    async def active_runs(self, channel: str, limit: int) -> list[RunRecord]:
        """The channel's runs that have not ended, oldest first."""
        r = runs_table.c
        query = select(runs_table).where(r.channel == channel, r.status.in_(_ACTIVE))
        rows = await self._rows(query.order_by(r.serial).limit(limit))
        return [run_from_row(row) for row in rows]

    async def lapsed_runs(self, now_ms: int) -> list[RunRecord]:
        """Active runs with a writer whose lease ended before `now_ms` (see `Store.lapsed_runs`)."""
        r = runs_table.c
        query = (
            select(runs_table)
            .where(r.status.in_(_ACTIVE), r.writer.is_not(None), r.lease_until < now_ms)
            .order_by(r.serial)
        )
        return [run_from_row(row) for row in await self._rows(query)]

    async def request(self, request_id: str) -> RequestRecord | None:
        """The input request with this id."""
        rows = await self._rows(select(requests_table).where(requests_table.c.request_id == request_id))
        return request_from_row(rows[0]) if rows else None

    async def requests(
        self, channel: str, *, asker: str | None, status: str, after: int | None, limit: int
    ) -> tuple[list[RequestRecord], bool]:
        """A page of the channel's input requests, in serial order, and whether more follow."""
        r = requests_table.c
        query = select(requests_table).where(r.channel == channel)
        if asker is not None:
            query = query.where(r.client_id == asker)
        if status == "pending":
            query = query.where(r.status == "pending")
        elif status == "closed":
            query = query.where(r.status != "pending")
        if after is not None:
            query = query.where(r.serial > after)
        rows = await self._rows(query.order_by(r.serial).limit(limit + 1))
        return [request_from_row(row) for row in rows[:limit]], len(rows) > limit

    async def due_requests(self, now: int, limit: int) -> list[RequestRecord]:
        """Pending requests whose deadline passed before `now`."""
        r = requests_table.c
        query = select(requests_table).where(r.status == "pending", r.deadline <= now)
        rows = await self._rows(query.order_by(r.deadline).limit(limit))
        return [request_from_row(row) for row in rows]
