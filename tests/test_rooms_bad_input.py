"""Bad input to agent-room frames gets a clear code and harms nothing: the connection goes on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from agentchat_server.protocol import Code
from tests.room_helpers import ROOM, ok, refused, said

INVALID = [
    {"type": "publish", "channel": ROOM, "data": 1, "name": "agentchat.run"},
    {"type": "stream_open", "channel": ROOM, "name": "agentchat.loop_brake"},
    {"type": "publish", "channel": ROOM, "data": 1, "claim": 1},
    {"type": "publish", "channel": ROOM, "data": 1, "claim": 0, "reply_to": 1},
    {"type": "publish", "channel": ROOM, "data": 1, "claim": 1, "reply_to": 1, "run_id": "r_1"},
    {"type": "publish", "channel": ROOM, "data": 1, "lane": "text"},
    {
        "type": "publish",
        "channel": ROOM,
        "data": 1,
        "run_id": "r_1",
        "lane": "text",
        "tool_call": {"id": "c"},
    },
    {"type": "publish", "channel": ROOM, "data": 1, "run_id": "r_1", "lane": "tool_result"},
    {"type": "publish", "channel": ROOM, "data": 1, "reply_to": 1, "claim": 1, "ephemeral": True},
    {"type": "publish", "channel": ROOM, "messages": [{"data": 1, "reply_to": 1, "claim": 1}, {"data": 2}]},
    {"type": "stream_open", "channel": ROOM, "run_id": "r_1", "lane": "tool_call", "tool_call": {"id": "c"}},
    {
        "type": "stream_open",
        "channel": ROOM,
        "run_id": "r_1",
        "lane": "tool_result",
        "tool_call": {"id": "c"},
    },
    {"type": "stream_end", "stream_id": "s_x", "status": "failed"},
    {"type": "stream_end", "stream_id": "s_x", "status": "complete", "error": {"message": "no"}},
    {"type": "stream_end", "stream_id": "s_x", "status": "failed", "error": {"message": ""}},
    {"type": "claim", "channel": ROOM, "serial": 0},
    {"type": "claim", "channel": ROOM, "serial": "1"},
    {"type": "claim", "channel": ROOM, "serial": 1, "ttl": 0},
    {"type": "claim_release", "channel": ROOM, "serial": 1},
    {"type": "claims", "channel": ROOM, "after": -1},
    {"type": "run_start", "channel": ROOM, "claim": 1},
    {"type": "run_start", "channel": ROOM, "to": []},
    {"type": "run_end", "run_id": "r_1", "status": "failed"},
    {"type": "run_end", "run_id": "r_1", "status": "aborted"},
    {"type": "run_end", "run_id": "r_1", "status": "completed", "error": {"message": "x"}},
    {"type": "run_state", "run_id": "r_1"},
    {"type": "run_state", "run_id": "r_1", "snapshot": 1, "delta": [{"op": "add", "path": "/a", "value": 1}]},
    {"type": "run_state", "run_id": "r_1", "delta": [{"op": "explode", "path": "/a"}]},
    {"type": "run_state", "run_id": "r_1", "delta": [{"op": "remove"}]},
    {"type": "run_cancel", "run_id": ""},
    {"type": "run_resume", "run_id": "r" * 65},
    {"type": "ask", "channel": ROOM, "prompt": ""},
    {"type": "ask", "channel": ROOM, "prompt": "?", "shape": {"kind": "essay"}},
    {"type": "ask", "channel": ROOM, "prompt": "?", "shape": {"kind": "choice", "options": ["a", "a"]}},
    {"type": "ask", "channel": ROOM, "prompt": "?", "shape": {"kind": "choice", "options": []}},
    {"type": "ask", "channel": ROOM, "prompt": "?", "deadline": 0},
    {"type": "ask", "channel": ROOM, "prompt": "?", "deadline": 31 * 86_400},
    {"type": "answer", "channel": ROOM, "request_id": "q_1", "outcome": "maybe"},
    {"type": "answer", "channel": ROOM, "outcome": "approve"},
    {"type": "requests", "channel": ROOM, "status": "open"},
    {"type": "requests", "channel": ROOM, "limit": 201},
    {"type": "attach", "channel": ROOM, "filter": "everyone"},
]


@pytest.mark.parametrize("frame", INVALID, ids=lambda f: f"{f['type']}:{'+'.join(sorted(set(f) - {'type'}))}")
async def test_invalid_room_frames_are_refused_and_the_connection_lives(
    connect: Callable[..., Any], frame: dict[str, Any]
) -> None:
    """Each malformed room frame gets 40002 with its ref; the next request is answered normally."""
    wire = await connect("bot", kind="agent")
    await refused(wire, frame, Code.INVALID_FRAME)
    await ok(wire, {"type": "ping"})


async def test_room_operations_are_checked_against_rights_and_sizes(connect: Callable[..., Any]) -> None:
    """No `claim` or `answer` right is 40300; a missing message 40400; an oversized question 41301."""
    human = await connect("ana")
    task = await said(human, "task")
    limited = await connect("limited", kind="agent", capabilities={"*": ["subscribe", "publish", "history"]})
    await refused(limited, {"type": "claim", "channel": ROOM, "serial": task}, Code.FORBIDDEN)
    await refused(limited, {"type": "run_start", "channel": ROOM}, Code.FORBIDDEN)
    bot = await connect("bot", kind="agent")
    await refused(bot, {"type": "claim", "channel": ROOM, "serial": task + 100}, Code.NOT_FOUND)
    await refused(
        bot, {"type": "ask", "channel": ROOM, "prompt": "?", "data": "x" * 70_000}, Code.MESSAGE_TOO_LARGE
    )
    asked = await ok(bot, {"type": "ask", "channel": ROOM, "prompt": "ok?"})
    await refused(
        limited,
        {"type": "answer", "channel": ROOM, "request_id": asked["request_id"], "outcome": "approve"},
        Code.FORBIDDEN,
    )
    await refused(
        bot,
        {"type": "run_end", "run_id": "r_x", "status": "completed", "result": "x" * 70_000},
        Code.RUN_NOT_FOUND,
    )
    await ok(bot, {"type": "ping"})
