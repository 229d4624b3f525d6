"""Codecs: frames to wire bytes (UTF-8 JSON or msgpack) and back, and client data checked for portability."""

from __future__ import annotations

import json
import re
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
