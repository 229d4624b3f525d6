"""Bad input gets a clear error; the connection, its neighbours and the process carry on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack

from agentchat_server.protocol import CloseCode, Code
from agentchat_server.testing import TestServer
from tests.wire import Wire


async def _still_fine(wire: Wire) -> None:
    reply = await wire.request({"type": "ping"})
    assert reply["type"] == "ack"


async def test_malformed_json_gets_error_and_connection_lives(connect: Callable[..., Any]) -> None:
    """Garbage text gets 40001; the same connection keeps working."""
    w = await connect()
    await w.send_raw("{not json")
    err = await w.expect("error")
    assert err["code"] == Code.MALFORMED_FRAME
    await w.send_raw('{"type": "publish", "channel": "room:a", "data": NaN}')
    assert (await w.expect("error"))["code"] == Code.MALFORMED_FRAME
    await _still_fine(w)


async def test_msgpack_garbage_and_wrong_frame_kind(connect: Callable[..., Any]) -> None:
    """Binary garbage and a text frame on a msgpack connection are malformed frames."""
    w = await connect(fmt="msgpack")
    await w.send_raw(b"\xc1\xff\x00garbage")
    assert (await w.expect("error"))["code"] == Code.MALFORMED_FRAME
    await w.send_raw("text on msgpack")
    assert (await w.expect("error"))["code"] == Code.MALFORMED_FRAME
    await w.send_raw(msgpack.packb({"type": "publish", "ref": 9, "channel": "room:a", "data": b"\x00bytes"}))
    assert (await w.expect("nack"))["code"] == Code.INVALID_FRAME
    await _still_fine(w)


async def test_wrong_types_and_unknown_frames(connect: Callable[..., Any]) -> None:
    """Schema errors are 40002 with the field named; unknown types 40003; both keep the ref."""
    w = await connect()
    reply = await w.request({"type": "publish", "channel": 42, "data": "x"})
    assert reply["type"] == "nack" and reply["code"] == Code.INVALID_FRAME and "channel" in reply["message"]
    reply = await w.request({"type": "history", "channel": "room:a", "limit": "ten"})
    assert reply["code"] == Code.INVALID_FRAME
    reply = await w.request({"type": "teleport", "channel": "room:a"})
    assert reply["code"] == Code.UNKNOWN_FRAME_TYPE
    reply = await w.request({"type": "attach", "channel": "bad channel name!"})
    assert reply["code"] == Code.INVALID_FRAME
    reply = await w.request({"type": "presence", "channel": "room:a", "action": "enter"})
    assert reply["code"] == Code.NOT_ATTACHED
    await w.send_raw("[1, 2, 3]")
    assert (await w.expect("error"))["code"] == Code.INVALID_FRAME
    await _still_fine(w)


async def test_ten_megabyte_frame_is_refused_and_neighbours_unaffected(connect: Callable[..., Any]) -> None:
    """A 10 MB frame gets 41300; the sender and a neighbour keep publishing and receiving."""
    w = await connect("big")
    neighbour = await connect("n")
    await neighbour.request({"type": "attach", "channel": "room:a"})
    await w.send_raw('{"type":"publish","channel":"room:a","data":"' + "x" * 10_000_000 + '"}')
    assert (await w.expect("error"))["code"] == Code.FRAME_TOO_LARGE
    await _still_fine(w)
    reply = await w.request({"type": "publish", "channel": "room:a", "data": "small"})
    assert reply["serials"] == [1]
    assert (await neighbour.messages(1))[0]["data"] == "small"


async def test_oversized_message_data_is_refused(connect: Callable[..., Any]) -> None:
    """Data over max_message_bytes (but under the frame limit) is 41301 and stores nothing."""
    w = await connect()
    reply = await w.request({"type": "publish", "channel": "room:a", "data": "x" * 70_000})
    assert reply["code"] == Code.MESSAGE_TOO_LARGE
    page = await w.request({"type": "history", "channel": "room:a"})
    assert page["messages"] == []


async def test_garbage_flood_closes_with_abuse_code(make_server: Callable[..., Any]) -> None:
    """Past the bad-frame budget the connection closes with 4002; others are unharmed."""
    srv: TestServer = await make_server(max_bad_frames=5)
    bad = await Wire.open(srv.ws_url, srv.token("bad"))
    good = await Wire.open(srv.ws_url, srv.token("good"))
    try:
        for _ in range(10):
            if bad.closed.is_set():
                break
            await bad.send_raw("garbage")
        await bad.closed.wait()
        assert bad.close_code == CloseCode.PROTOCOL_ABUSE
        await _still_fine(good)
    finally:
        await bad.close()
        await good.close()


async def test_first_frame_must_be_connect_with_valid_token(server: TestServer) -> None:
    """No token, a bad token, or another frame first: an error frame, then close 4004."""
    for first in ({"type": "ping"}, {"type": "connect", "token": "nope"}, {"type": "connect"}):
        w = await Wire.open(server.ws_url, None, connect=False)
        await w.send(first)
        err = await w.expect("error")
        assert err["code"] in (Code.UNAUTHORIZED, Code.TOKEN_INVALID, Code.INVALID_FRAME)
        await w.closed.wait()
        assert w.close_code == CloseCode.UNAUTHORIZED
        await w.close()
