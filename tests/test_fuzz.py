"""Hostile input: random and mutated frames over real connections, in JSON and msgpack.

The server runs on a private event loop in a thread; hypothesis drives it synchronously, one frame
per example, each followed by a `ping` with a ref. Every frame that is not a valid frame must get an
`error` or `nack` before that ping's `ack`. Meanwhile a well-behaved client publishes on the same
server and must see all its messages, in order, and find them intact in history.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from agentchat_server.protocol import CLIENT_FRAME_TYPES, Code, client_frame_adapter
from agentchat_server.testing import TestServer
from tests.wire import UNIT, Wire

T = TypeVar("T")
FUZZ_CH = "fuzz:a"
GOOD_CH = "good:chat"
PROBE_BASE = 9_007_199_254_000_000  # probe refs: far from anything a strategy is likely to hit
MAX_EXAMPLES = 1500  # per format: 3,000 frames in all
INTERNAL_CODES = {50000, 50300}


# --- a server on its own loop --------------------------------------------------------------------


class FuzzClient:
    """A raw connection that sends arbitrary payloads and collects everything until a probe's ack."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse, fmt: str) -> None:
        self.http = http
        self.ws = ws
        self.fmt = fmt
        self.frames: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.refs = itertools.count(PROBE_BASE)
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, token: str, fmt: str) -> FuzzClient:
        http = aiohttp.ClientSession()
        ws = await http.ws_connect(f"{url}?format={fmt}", max_msg_size=0)
        client = cls(http, ws, fmt)
        await client.send_frame({"type": "connect", "token": token})
        first = await client.next_frame()
        assert first["type"] == "connected", first
        return client

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    self.frames.put_nowait(json.loads(msg.data))
                elif msg.type is aiohttp.WSMsgType.BINARY:
                    self.frames.put_nowait(msgpack.unpackb(msg.data, raw=False))
        finally:
            self.frames.put_nowait(None)

    async def next_frame(self) -> dict[str, Any]:
        async with asyncio.timeout(UNIT):
            frame = await self.frames.get()
        assert frame is not None, f"the server closed the fuzz connection ({self.ws.close_code})"
        return frame

    async def send_frame(self, frame: dict[str, Any]) -> None:
        if self.fmt == "json":
            await self.ws.send_str(json.dumps(frame))
        else:
            await self.ws.send_bytes(msgpack.packb(frame, use_bin_type=True))

    async def probe(self, payload: bytes | str) -> list[dict[str, Any]]:
        """Send one payload, then a ping; return the frames that arrived before the ping's ack."""
        if isinstance(payload, str):
            await self.ws.send_str(payload)
        else:
            await self.ws.send_bytes(payload)
        ref = next(self.refs)
        await self.send_frame({"type": "ping", "ref": ref})
        before: list[dict[str, Any]] = []
        while True:
            frame = await self.next_frame()
            if frame.get("type") == "ack" and frame.get("ref") == ref:
                return before
            before.append(frame)

    async def close(self) -> None:
        await self.ws.close()
        await self.reader
        await self.http.close()


class GoodClient:
    """Publishes `{"k": n}` on GOOD_CH one at a time; a subscriber in the other format listens."""

    def __init__(self, publisher: Wire, subscriber: Wire) -> None:
        self.publisher = publisher
        self.subscriber = subscriber
        self.tickets: asyncio.Queue[int | None] = asyncio.Queue()
        self.acks: list[dict[str, Any]] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while (k := await self.tickets.get()) is not None:
            self.acks.append(
                await self.publisher.request({"type": "publish", "channel": GOOD_CH, "data": {"k": k}})
            )


class Harness:
    """A TestServer, a fuzz connection and a good client on a background loop, driven from sync code."""

    def __init__(self, directory: Path, fmt: str, **overrides: Any) -> None:
        self.fmt = fmt
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-loop", daemon=True)
        self.thread.start()
        self.server = TestServer(directory, **overrides)
        self.published = 0
        self.run(self._start())

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = UNIT * 4) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        srv = self.server
        await srv.start()
        other = "msgpack" if self.fmt == "json" else "json"
        # The fuzz client may do anything anywhere, except write to the good client's channel.
        token = srv.token("fuzzer", kind="agent", capabilities={"*": ["*"], "good:*": ["subscribe"]})
        self.fuzz = await FuzzClient.open(srv.ws_url, token, self.fmt)
        # Observers in both formats on the fuzz channel: whatever the fuzzer stores must reach both.
        self.observers = [
            await Wire.open(srv.ws_url, srv.token(f"observer-{f}"), fmt=f)  # type: ignore[arg-type]
            for f in ("json", "msgpack")
        ]
        for observer in self.observers:
            await observer.request({"type": "attach", "channel": FUZZ_CH})
        publisher = await Wire.open(srv.ws_url, srv.token("good"), fmt=self.fmt)  # type: ignore[arg-type]
        subscriber = await Wire.open(srv.ws_url, srv.token("listener"), fmt=other)  # type: ignore[arg-type]
        await subscriber.request({"type": "attach", "channel": GOOD_CH})
        self.good = GoodClient(publisher, subscriber)
        await self.fuzz.send_frame({"type": "attach", "channel": FUZZ_CH, "ref": 1})
        await self.fuzz.send_frame({"type": "stream_open", "channel": FUZZ_CH, "ref": 2})
        while (frame := await self.fuzz.next_frame()).get("ref") != 2:
            pass
        self.stream_id: str = frame["stream_id"]

    def publish_good(self) -> None:
        """Queue one publish of the good client, concurrent with whatever the fuzzer does next."""
        self.loop.call_soon_threadsafe(self.good.tickets.put_nowait, self.published)
        self.published += 1

    async def _finish_good(self) -> tuple[list[dict[str, Any]], list[Any], list[Any]]:
        self.good.tickets.put_nowait(None)
        async with asyncio.timeout(UNIT * 12):
            await self.good.task
        got = await self.good.subscriber.messages(self.published, channel=GOOD_CH, timeout=UNIT * 6)
        history: list[Any] = []
        after = 0
        while True:
            page = await self.good.publisher.request(
                {
                    "type": "history",
                    "channel": GOOD_CH,
                    "after": after,
                    "limit": 1000,
                    "direction": "forwards",
                }
            )
            history.extend((m["serial"], m["client_id"], m["data"]) for m in page["messages"])
            if not page["has_more"]:
                break
            after = page["messages"][-1]["serial"]
        return self.good.acks, [(m["serial"], m["client_id"], m["data"]) for m in got], history

    def finish_good(self) -> tuple[list[dict[str, Any]], list[Any], list[Any]]:
        return self.run(self._finish_good(), timeout=UNIT * 30)

    async def _fresh_client_works(self) -> bool:
        wire = await Wire.open(self.server.ws_url, self.server.token("fresh"))
        try:
            ack = await wire.request({"type": "publish", "channel": "room:fresh", "data": "still alive"})
            return ack["type"] == "ack"
        finally:
            await wire.close()

    def fresh_client_works(self) -> bool:
        return self.run(self._fresh_client_works())

    async def _stop(self) -> None:
        self.good.task.cancel()
        await asyncio.gather(self.good.task, return_exceptions=True)
        await self.fuzz.close()
        for wire in [*self.observers, self.good.publisher, self.good.subscriber]:
            await wire.close()
        await self.server.stop()

    def close(self) -> None:
        try:
            self.run(self._stop(), timeout=UNIT * 4)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(UNIT)
            self.loop.close()


# --- strategies ------------------------------------------------------------------------------------

ODD_STRINGS = st.sampled_from(
    [
        "",
        "\x00",
        "\ud800",
        "\udfff",
        "\u202e",
        "\ufeff",
        "\U0001f600" * 50,
        "a" * 70_000,
        "中" * 22_000,  # 66,000 bytes in 22,000 characters
        "\u0001" * 11_000,  # 66,000 bytes of JSON escapes in 11,000 characters
        "é",
        "\n",
        "room:a\x00",
    ]
)
ODD_NUMBERS = st.sampled_from(
    [
        0,
        -1,
        2**53,
        2**53 - 1,
        2**63,
        2**64,
        -(2**63) - 1,
        10**400,
        1e308,
        -0.0,
        math.nan,
        math.inf,
        -math.inf,
        0.5,
    ]
)
SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | ODD_NUMBERS | ODD_STRINGS
)
TEXT_CHARS = st.characters(exclude_categories=("Cs",))  # a text frame must be encodable UTF-8
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def valid_frames(token: str, stream_id: str) -> list[dict[str, Any]]:
    """One valid frame of each client type, aimed at the fuzzer's own channel and resources."""
    return [
        {"type": "publish", "ref": 7, "channel": FUZZ_CH, "name": "chat", "data": "hello", "id": "m-1"},
        {
            "type": "publish",
            "ref": 7,
            "channel": FUZZ_CH,
            "messages": [{"data": 1}, {"data": [1, {"a": None}]}],
        },
        {"type": "publish", "channel": FUZZ_CH, "data": {"t": "typing"}, "ephemeral": True},
        {
            "type": "attach",
            "ref": 7,
            "channel": "fuzz:b",
            "position": {"serial": 0, "epoch": "e"},
            "presence": False,
        },
        {"type": "detach", "ref": 7, "channel": "fuzz:b"},
        {"type": "history", "ref": 7, "channel": FUZZ_CH, "limit": 5, "direction": "forwards", "after": 0},
        {"type": "presence", "ref": 7, "channel": FUZZ_CH, "action": "enter", "data": {"status": "idle"}},
        {"type": "presence_get", "ref": 7, "channel": FUZZ_CH},
        {"type": "occupancy", "ref": 7, "channel": FUZZ_CH},
        {"type": "stream_open", "ref": 7, "channel": FUZZ_CH, "name": "answer", "format": "text", "meta": {}},
        {"type": "stream_append", "ref": 7, "stream_id": stream_id, "i": 0, "d": "Hel"},
        {
            "type": "stream_end",
            "ref": 7,
            "stream_id": "s_unknown",
            "status": "complete",
            "data": "x",
            "chunks": 1,
        },
        {"type": "stream_cancel", "ref": 7, "stream_id": "s_unknown"},
        {"type": "auth", "ref": 7, "token": token},
        {"type": "ping", "ref": 7},
        {"type": "connect", "token": token},
    ]


def _clip(value: Any) -> Any:
    """What msgpack cannot carry: integers become the largest it can, lone surrogates raw bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return max(-(2**63), min(value, 2**64 - 1))
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:  # lone surrogates: msgpack str cannot carry them; send the raw bytes
            return value.encode("utf-8", "surrogatepass")
        return value
    if isinstance(value, list):
        return [_clip(v) for v in value]
    if isinstance(value, dict):
        return {_clip(k): _clip(v) for k, v in value.items()}
    return value


def encode(value: Any, fmt: str) -> bytes | str:
    """Encode anything as the format would carry it (JSON allows NaN tokens here: they are bad input).

    JSON escapes non-ASCII, so lone surrogates travel as valid `\\udXXX` escapes."""
    if fmt == "json":
        return json.dumps(value, allow_nan=True)
    return msgpack.packb(_clip(value), use_bin_type=True)  # type: ignore[no-any-return]


@st.composite
def mutated_field(draw: st.DrawFn, frames: list[dict[str, Any]]) -> dict[str, Any]:
    """A valid frame with one field replaced, removed or added (schema and value errors)."""
    frame = dict(draw(st.sampled_from(frames)))
    key = draw(st.sampled_from(sorted(frame)))
    how = draw(st.sampled_from(["replace", "replace", "delete", "add", "nest"]))
    if how == "replace":
        frame[key] = draw(JSON_VALUES)
    elif how == "delete":
        del frame[key]
    elif how == "add":
        frame[draw(st.text(max_size=10) | st.sampled_from(["client_id", "kind", "serial", "ts"]))] = draw(
            JSON_VALUES
        )
    else:
        depth = draw(st.integers(1, 3000))
        frame[key] = json.loads("[" * depth + "]" * depth) if depth < 900 else "[" * depth
    return frame


@st.composite
def payloads(draw: st.DrawFn, fmt: str, frames: list[dict[str, Any]]) -> bytes | str:
    """One wire payload from one of the classes: bytes, text, any value, mutated frames, deep nesting."""
    kind = draw(
        st.sampled_from(["bytes", "text", "value", "shaped", "field", "odd", "char", "char", "char", "deep"])
    )
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "text":
        return draw(st.text(TEXT_CHARS, max_size=300))
    if kind == "value":
        return encode(draw(JSON_VALUES), fmt)
    if kind == "shaped":
        shape = {"type": draw(st.sampled_from(sorted(CLIENT_FRAME_TYPES)) | st.text(max_size=12))}
        shape.update(
            draw(
                st.dictionaries(
                    st.sampled_from(
                        [
                            "ref",
                            "channel",
                            "data",
                            "stream_id",
                            "i",
                            "d",
                            "action",
                            "token",
                            "limit",
                            "messages",
                            "position",
                        ]
                    ),
                    JSON_VALUES,
                    max_size=4,
                )
            )
        )
        return encode(shape, fmt)
    if kind == "field":
        return encode(draw(mutated_field(frames)), fmt)
    if kind == "odd":
        # Valid schema, odd values where free JSON goes: huge numbers, NaN, surrogates, control characters.
        frame = dict(draw(st.sampled_from([f for f in frames if {"data", "d", "meta"} & set(f)])))
        key = next(k for k in ("data", "d", "meta") if k in frame)
        odd = ODD_NUMBERS | ODD_STRINGS
        frame[key] = draw(odd | st.lists(odd, max_size=3) | st.dictionaries(ODD_STRINGS, odd, max_size=2))
        return encode(frame, fmt)
    if kind == "deep":
        depth = draw(st.integers(100, 200_000))
        if fmt == "json":
            return "[" * depth + "]" * depth
        return b"\x91" * depth + b"\xc0"  # fixarray(1) nested `depth` times around nil
    # One character (JSON) or one byte (msgpack) of a valid frame replaced.
    raw = encode(draw(st.sampled_from(frames)), fmt)
    pos = draw(st.integers(0, len(raw) - 1))
    if isinstance(raw, str):
        return raw[:pos] + draw(TEXT_CHARS) + raw[pos + 1 :]
    return raw[:pos] + bytes([draw(st.integers(0, 255))]) + raw[pos + 1 :]


# --- the oracle ------------------------------------------------------------------------------------


def _reject(name: str) -> Any:
    raise ValueError(name)


def _has_lone_surrogate(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return True
    return False


def expected_refusal(payload: bytes | str, fmt: str, max_frame: int) -> tuple[set[int], Any] | None:
    """The codes a bad payload may get and the ref its nack must carry; None for a valid frame."""
    if len(payload.encode() if isinstance(payload, str) else payload) > max_frame:
        return {41300}, None
    if isinstance(payload, bytes) != (fmt == "msgpack"):
        return {40001}, None
    try:
        if fmt == "json":
            value = json.loads(payload, parse_constant=_reject)
        else:
            value = msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except RecursionError:
        # Near the interpreter's limit the server (another thread, another stack) may still decode it.
        return {40001, 40002}, None
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        return {40001}, None
    if fmt == "json" and _has_lone_surrogate(value):
        return {40004}, value.get("ref") if isinstance(value, dict) else None
    if not isinstance(value, dict):
        return {40002}, None
    ref = value.get("ref")
    if not isinstance(value.get("type"), str):
        return {40002}, ref
    if value["type"] not in CLIENT_FRAME_TYPES:
        return {40003}, ref
    try:
        client_frame_adapter.validate_python(value)
    except ValidationError:
        return {40002}, ref
    except RecursionError:
        return {40001, 40002}, ref
    return None


def check_replies(payload: bytes | str, fmt: str, frames: list[dict[str, Any]], max_frame: int) -> None:
    """Bad payloads got their error or nack; nothing got an internal error; no reply leaks internals."""
    refusals = [f for f in frames if f.get("type") in ("error", "nack")]
    for refusal in refusals:
        assert refusal.get("code") not in INTERNAL_CODES, f"internal error for {payload!r:.300}: {refusal}"
        assert "Traceback" not in str(refusal) and ".py" not in str(refusal.get("message")), refusal
    expected = expected_refusal(payload, fmt, max_frame)
    if expected is None:
        return
    codes, ref = expected
    assert refusals, f"no error or nack for bad payload {payload!r:.300}; got {frames}"
    assert refusals[0]["code"] in codes, f"{payload!r:.300} -> {refusals[0]}, expected one of {codes}"
    if refusals[0]["type"] == "nack":
        assert refusals[0]["ref"] == ref, (payload, refusals[0])


# --- the fuzz tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_fuzzed_frames_never_harm_the_server_or_a_good_client(
    tmp_path: Path, fmt: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Thousands of random and mutated frames: each bad one gets an error, the server keeps serving,
    a concurrent good client sees all its messages in order and history matches them."""
    caplog.set_level(logging.ERROR, logger="agentchat_server")
    harness = Harness(
        tmp_path,
        fmt,
        max_bad_frames=1_000_000,
        publish_rate=1e6,
        publish_burst=1_000_000,
        max_frame_bytes=256 * 1024,
    )
    try:
        frames = valid_frames(harness.server.token("fuzzer", kind="agent"), harness.stream_id)

        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(payload=payloads(fmt, frames), publish=st.booleans())
        def one_frame(payload: bytes | str, publish: bool) -> None:
            if publish:
                harness.publish_good()
            replies = harness.run(harness.fuzz.probe(payload))
            check_replies(payload, fmt, replies, harness.server.settings.max_frame_bytes)

        one_frame()
        assert harness.fresh_client_works(), "the server stopped serving new clients"
        acks, received, history = harness.finish_good()
        assert [a["type"] for a in acks] == ["ack"] * harness.published
        expected = [(n + 1, "good", {"k": n}) for n in range(harness.published)]
        assert received == expected, "the good client's subscriber missed or reordered messages"
        assert history == expected, "the good channel's history is not what the good client published"
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert not errors, f"the server logged errors while fuzzed: {errors[:5]}"
    finally:
        harness.close()


async def test_abuse_closes_with_4002(make_server: Any) -> None:
    """With the default bad-frame budget a flood of garbage closes the connection with 4002."""
    srv: TestServer = await make_server(max_bad_frames=10)
    wire = await Wire.open(srv.ws_url, srv.token("abuser"), fmt="msgpack")
    try:
        for i in range(100):
            if wire.closed.is_set():
                break
            await wire.send_raw(bytes([0xC1, i]))  # 0xc1 is never valid msgpack
        async with asyncio.timeout(UNIT):
            await wire.closed.wait()
        assert wire.close_code == 4002
    finally:
        await wire.close()


# --- regressions found by the fuzzer (each states the documented behaviour) ------------------------


@pytest.mark.parametrize(
    ("fmt", "payload"),
    [
        ("json", '{"type":"publish","ref":1,"channel":"room:x","data":1e999}'),
        ("json", '{"type":"publish","ref":1,"channel":"room:x","data":{"v":-1e400}}'),
        ("msgpack", msgpack.packb({"type": "publish", "ref": 1, "channel": "room:x", "data": math.nan})),
        ("msgpack", msgpack.packb({"type": "publish", "ref": 1, "channel": "room:x", "data": [math.inf]})),
        (
            "msgpack",
            msgpack.packb(
                {"type": "presence", "ref": 1, "channel": "room:x", "action": "enter", "data": math.nan}
            ),
        ),
    ],
    ids=["json-1e999", "json-neg-1e400", "msgpack-nan", "msgpack-inf-in-list", "msgpack-nan-presence"],
)
async def test_non_finite_numbers_are_invalid_values_not_internal_errors(
    server: TestServer, fmt: str, payload: bytes | str
) -> None:
    """NaN and infinities (JSON 1e999 overflow, msgpack floats) are refused as invalid (4000x), not 50000."""
    wire = await Wire.open(server.ws_url, server.token("a"), fmt=fmt)  # type: ignore[arg-type]
    try:
        await wire.request({"type": "attach", "channel": "room:x"})
        future = asyncio.get_running_loop().create_future()
        wire.pending[1] = future
        await wire.send_raw(payload)
        async with asyncio.timeout(UNIT):
            reply = await future
        assert reply["type"] == "nack" and reply["code"] in (40002, 40004), reply
    finally:
        await wire.close()


@pytest.mark.parametrize("where", ["publish", "presence", "stream_append", "stream_open_meta"])
async def test_lone_surrogates_are_refused_and_do_not_poison_the_channel(
    server: TestServer, where: str
) -> None:
    """A JSON string with a lone surrogate (valid JSON, not encodable UTF-8) is refused with 4000x;
    the channel stays usable: another client attaches, lists presence, reads history and publishes."""
    wire = await Wire.open(server.ws_url, server.token("a"))
    other = await Wire.open(server.ws_url, server.token("b"))
    try:
        await wire.request({"type": "attach", "channel": "room:s"})
        sid = (await wire.request({"type": "stream_open", "channel": "room:s"}))["stream_id"]
        raw = {
            "publish": '{"type":"publish","ref":1,"channel":"room:s","data":"x\\ud800"}',
            "presence": '{"type":"presence","ref":1,"channel":"room:s","action":"enter","data":"\\udc00"}',
            "stream_append": '{"type":"stream_append","ref":1,"stream_id":"' + sid + '","i":0,"d":"\\ud800"}',
            "stream_open_meta": '{"type":"stream_open","ref":1,"channel":"room:s","meta":{"\\udfff":1}}',
        }[where]
        future = asyncio.get_running_loop().create_future()
        wire.pending[1] = future
        await wire.send_raw(raw)
        async with asyncio.timeout(UNIT):
            reply = await future
        assert reply["type"] == "nack" and reply["code"] in (40002, 40004), reply
        attached = await other.request({"type": "attach", "channel": "room:s"})
        assert attached["type"] == "attached", attached
        assert (await other.request({"type": "presence_get", "channel": "room:s"}))["type"] == "ack"
        assert (await other.request({"type": "history", "channel": "room:s"}))["type"] == "ack"
        assert (await other.request({"type": "publish", "channel": "room:s", "data": "fine"}))[
            "type"
        ] == "ack"
        end = await wire.request({"type": "stream_end", "stream_id": sid})
        assert end["type"] == "ack", end
    finally:
        await wire.close()
        await other.close()


async def test_integers_beyond_64_bits_do_not_break_msgpack_delivery(server: TestServer) -> None:
    """A message whose data holds an integer msgpack cannot carry is either refused (4000x) or delivered;
    a msgpack subscriber never silently misses it, and later messages arrive without a gap."""
    publisher = await Wire.open(server.ws_url, server.token("p"))
    sub = await Wire.open(server.ws_url, server.token("s"), fmt="msgpack")
    try:
        await sub.request({"type": "attach", "channel": "room:big"})
        reply = await publisher.request({"type": "publish", "channel": "room:big", "data": 2**70})
        assert reply["type"] in ("ack", "nack"), reply
        if reply["type"] == "nack":
            assert reply["code"] in (40002, 40004), reply
        await publisher.request({"type": "publish", "channel": "room:big", "data": "after"})
        got = await sub.messages(2 if reply["type"] == "ack" else 1, timeout=UNIT)
        assert [m["serial"] for m in got] == list(range(1, len(got) + 1))
        assert got[-1]["data"] == "after"
        page = await sub.request({"type": "history", "channel": "room:big"})
        assert page["type"] == "ack", page
    finally:
        await publisher.close()
        await sub.close()


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "ping", "ref": "8"},
        {"type": "ping", "ref": True},
        {"type": "history", "ref": 3, "channel": "room:x", "limit": "5"},
        {"type": "attach", "ref": 3, "channel": "room:x", "presence": "yes"},
        {"type": "publish", "ref": 3, "channel": "room:x", "data": 1, "ephemeral": 1},
    ],
    ids=["ref-string", "ref-true", "limit-string", "presence-string", "ephemeral-int"],
)
async def test_wrong_types_are_refused_not_coerced(server: TestServer, frame: dict[str, Any]) -> None:
    """A field of the wrong JSON type is 40002 (docs: "fields missing or of the wrong type"), not coerced."""
    wire = await Wire.open(server.ws_url, server.token("a"))
    try:
        await wire.send(frame)  # no pending ref: whatever comes back lands in the inbox
        reply = await asyncio.wait_for(_first_reply(wire), UNIT)
        assert reply["type"] in ("error", "nack") and reply["code"] == 40002, reply
    finally:
        await wire.close()


async def _first_reply(wire: Wire) -> dict[str, Any]:
    while True:
        frame = await wire.inbox.get()
        if frame["type"] in ("ack", "nack", "error", "attached"):
            return frame


BIG_IN_BYTES = {
    "cjk": "中" * 22_000,  # 66,000 bytes of UTF-8
    "escapes": "\u0001" * 11_000,  # 66,000 bytes of JSON
    "floats": [0.0] * 8_000,  # 32,000 bytes of JSON, 72,000 of msgpack
}


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
@pytest.mark.parametrize("value", list(BIG_IN_BYTES), ids=list(BIG_IN_BYTES))
@pytest.mark.parametrize("where", ["publish", "presence", "stream_open_meta", "stream_append"])
async def test_sizes_count_bytes_of_the_larger_format(
    make_server: Any, fmt: str, value: str, where: str
) -> None:
    """Values small in characters but past a 64 KiB limit in bytes (UTF-8, JSON escapes, msgpack floats)
    are refused with the size code wherever a client can put them, and nothing else breaks."""
    srv: TestServer = await make_server(max_stream_bytes=65_536, max_presence_bytes=65_536)
    wire = await Wire.open(srv.ws_url, srv.token("big", kind="agent"), fmt=fmt)  # type: ignore[arg-type]
    data = BIG_IN_BYTES[value]
    try:
        await wire.request({"type": "attach", "channel": FUZZ_CH})
        if where == "publish":
            reply = await wire.request({"type": "publish", "channel": FUZZ_CH, "data": data})
        elif where == "presence":
            reply = await wire.request(
                {"type": "presence", "channel": FUZZ_CH, "action": "enter", "data": data}
            )
        elif where == "stream_open_meta":
            reply = await wire.request({"type": "stream_open", "channel": FUZZ_CH, "meta": {"m": data}})
        else:
            opened = await wire.request({"type": "stream_open", "channel": FUZZ_CH, "format": "json"})
            reply = await wire.request(
                {"type": "stream_append", "stream_id": opened["stream_id"], "i": 0, "d": data}
            )
        assert reply["type"] == "nack" and reply["code"] in (Code.MESSAGE_TOO_LARGE, Code.STREAM_TOO_LARGE), (
            reply
        )
        ok = await wire.request({"type": "publish", "channel": FUZZ_CH, "data": "still fine"})
        assert ok["type"] == "ack"
    finally:
        await wire.close()
