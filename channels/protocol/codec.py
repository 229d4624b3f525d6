"""Codecs: frames to wire bytes (UTF-8 JSON or msgpack) and back, and client data checked for portability."""

from __future__ import annotations

import json
import re
import struct
from typing import Any, Literal

import msgpack

from agentchat_server.protocol.codes import MAX_SERIAL, Code, ProtocolError

Format = Literal["json", "msgpack"]
FORMATS: tuple[Format, ...] = ("json", "msgpack")

_json_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode(frame: dict[str, Any], fmt: Format) -> bytes:
    """Encode one frame for the wire: UTF-8 JSON text or msgpack bytes."""
    if fmt == "json":
        return _json_encoder.encode(frame).encode()
    return msgpack.packb(frame, use_bin_type=True)  # type: ignore[no-any-return]


def decode(payload: bytes | str, fmt: Format) -> Any:
    """Decode one wire frame to plain values; raises ProtocolError(MALFORMED_FRAME) on garbage."""
    try:
        if fmt == "json":
            value = json.loads(payload, parse_constant=_reject_constant)
            # Only a \\u escape can smuggle a lone surrogate into a JSON string.
            if (
                ("\\ud" in payload or "\\uD" in payload)
                if isinstance(payload, str)
                else (b"\\ud" in payload or b"\\uD" in payload)
            ):
                _check_unicode(value)
            return value
        if isinstance(payload, str):
            raise ProtocolError(Code.MALFORMED_FRAME, "msgpack connections send binary frames")
        return msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except ProtocolError:
        raise
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise ProtocolError(Code.MALFORMED_FRAME, f"cannot decode {fmt} frame") from exc
    except RecursionError as exc:
        raise ProtocolError(Code.MALFORMED_FRAME, "frame nested too deeply") from exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_unicode(value: Any) -> None:
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError as exc:
        ref = value.get("ref") if isinstance(value, dict) else None
        details = {"ref": ref} if type(ref) is int and 0 <= ref <= MAX_SERIAL else {}
        raise ProtocolError(
            Code.INVALID_VALUE, "strings must be valid unicode (lone surrogate)", **details
        ) from exc


_LONG_INT = re.compile(r"\d{19,}")
INT_MIN, INT_MAX = -(2**63), 2**64 - 1


def encode_value(value: Any) -> str:
    """JSON text of client-supplied data, refused (INVALID_VALUE) unless it is portable:
    finite numbers, integers that fit in 64 bits, valid unicode."""
    try:
        text = _json_encoder.encode(value)
    except ValueError as exc:
        raise ProtocolError(Code.INVALID_VALUE, "numbers must be finite (no NaN or Infinity)") from exc
    if _LONG_INT.search(text) is not None:
        _check_ints(value)
    return text


def _check_ints(value: Any) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise ProtocolError(Code.INVALID_VALUE, "integers must fit in 64 bits")
    elif isinstance(value, dict):
        for item in value.values():
            _check_ints(item)
    elif isinstance(value, list):
        for item in value:
            _check_ints(item)


# --- wire shapes of one outgoing frame -----------------------------------------------------

_OP_TEXT = 0x1
_OP_BINARY = 0x2


def ws_frame(payload: bytes, opcode: int) -> bytes:
    """A complete, unmasked (server-to-client) WebSocket frame with FIN set."""
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, n) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, n) + payload


class Encoded:
    """One outgoing frame, encoded lazily at most once per wire shape and shared by every receiver.

    `event_id` (epoch:serial of a durable message) is the SSE `id:` line; WebSocket frames ignore it."""

    __slots__ = ("_json", "_msgpack", "_sse", "event_id", "frame")

    def __init__(self, frame: dict[str, Any], event_id: str | None = None) -> None:
        self.frame = frame
        self.event_id = event_id
        self._json: bytes | None = None
        self._msgpack: bytes | None = None
        self._sse: bytes | None = None

    def ws(self, fmt: Format) -> bytes:
        """The whole WebSocket frame (header and payload) in `fmt`."""
        if fmt == "json":
            if self._json is None:
                self._json = ws_frame(encode(self.frame, "json"), _OP_TEXT)
            return self._json
        if self._msgpack is None:
            self._msgpack = ws_frame(encode(self.frame, "msgpack"), _OP_BINARY)
        return self._msgpack

    def sse(self) -> bytes:
        """The Server-Sent Event: `event:` the frame type, `id:` when it has one, `data:` the JSON."""
        if self._sse is None:
            head = f"event: {self.frame['type']}\n"
            if self.event_id is not None:
                head += f"id: {self.event_id}\n"
            self._sse = head.encode() + b"data: " + encode(self.frame, "json") + b"\n\n"
        return self._sse

    def size(self, fmt: Format) -> int:
        """Bytes of the WebSocket frame in `fmt` (encodes it if not done yet)."""
        return len(self.ws(fmt))


def joined(events: list[Encoded], fmt: Format) -> bytes:
    """The WebSocket frames of `events` back to back: one write for a reader."""
    if len(events) == 1:
        return events[0].ws(fmt)
    return b"".join([e.ws(fmt) for e in events])


def utf8_len(text: str) -> int:
    """Bytes of `text` in UTF-8 (sizes and limits count bytes, never characters)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class Batch:
    """Several outgoing frames for one write to each reader: joined once per wire shape, shared."""

    __slots__ = ("_json", "_msgpack", "_sse", "events")

    def __init__(self, events: list[Encoded]) -> None:
        self.events = events
        self._json: bytes | None = None
        self._msgpack: bytes | None = None
        self._sse: bytes | None = None

    def __len__(self) -> int:
        return len(self.events)

    def ws(self, fmt: Format) -> bytes:
        """The WebSocket frames back to back in `fmt`."""
        if fmt == "json":
            if self._json is None:
                self._json = joined(self.events, "json")
            return self._json
        if self._msgpack is None:
            self._msgpack = joined(self.events, "msgpack")
        return self._msgpack

    def sse(self) -> bytes:
        """The Server-Sent Events back to back."""
        if self._sse is None:
            self._sse = b"".join([e.sse() for e in self.events])
        return self._sse


def encoded_size(value: Any, json_text: str, limit: int) -> int:
    """The bytes `value` takes in the larger of the two wire formats, exact whenever it matters
    against `limit`: JSON text (given) or msgpack, where a float's 9 bytes can be three times its
    JSON ("0.0"). Limits count these bytes, never characters."""
    n = utf8_len(json_text)
    if 3 * n + 16 <= limit:
        return n  # msgpack is at most about 3x JSON: cannot pass the limit
    return max(n, len(msgpack.packb(value, use_bin_type=True)))
