"""Tokens: HS256 JWTs minted from the server's API keys, carrying client_id, kind and capabilities."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import math
import re
import secrets
import time
import unicodedata
from dataclasses import dataclass
from typing import Any

import jwt

from agentchat_server.core.capabilities import Capabilities
from agentchat_server.protocol import CLIENT_ID_PATTERN, Code, ProtocolError

_CLIENT_ID = re.compile(CLIENT_ID_PATTERN.removeprefix("^").removesuffix("$"))
KINDS = ("agent", "human", "system")
MIN_SECRET_BYTES = 32  # HS256 keys shorter than the hash are weak (and PyJWT warns on each use)
MAX_EXPIRY = 2**53 - 1


def display_name_problem(name: str) -> str | None:
    """Why `name` cannot be a display name, or None. Any script is fine; 1-64 characters, no
    control or formatting characters (bidi overrides included) except the joiners emoji need."""
    if not 1 <= len(name) <= 64 or name != name.strip():
        return "a display name has 1 to 64 characters, without surrounding spaces"
    for char in name:
        category = unicodedata.category(char)
        if category in ("Cc", "Cs", "Co", "Cn", "Zl", "Zp") or (
            category == "Cf" and char not in "\u200c\u200d"
        ):
            return "a display name cannot hold control or formatting characters"
    return None


@dataclass(slots=True)
class Identity:
    """Who a connection or request is, as proven by its token."""

    client_id: str
    kind: str
    expires_at: int
    capabilities: Capabilities
    display_name: str | None = None
    issued_at: float = 0.0

    def can(self, channel: str, operation: str) -> bool:
        """True when the token allows `operation` on `channel`."""
        return self.capabilities.can(channel, operation)

    def require(self, channel: str, operation: str) -> None:
        """Raise ProtocolError(FORBIDDEN) unless the token allows `operation` on `channel`."""
        if not self.capabilities.can(channel, operation):
            raise ProtocolError(Code.FORBIDDEN, f"token does not allow {operation} on {channel}")


class Authenticator:
    """Mints and verifies tokens with named API keys (`name:secret`)."""

    def __init__(self, keys: list[str]) -> None:
        self.keys: dict[str, str] = {}
        for entry in keys:
            name, _, secret = entry.partition(":")
            if len(secret.encode()) < MIN_SECRET_BYTES:
                raise ValueError(f"API key {name!r}: the secret needs at least {MIN_SECRET_BYTES} bytes")
            self.keys[name] = secret
        if not self.keys:
            # No configured key: an ephemeral one, so nothing is reachable without a token we minted.
            self.keys["ephemeral"] = secrets.token_urlsafe(32)
        self.default_key = next(iter(self.keys))
        # Tokens of one app mostly carry the same few grants: share their Capabilities.
        self._capabilities: dict[str, Capabilities] = {}

    def mint(
        self,
        client_id: str,
        *,
        kind: str = "human",
        ttl: int = 3600,
        capabilities: dict[str, list[str]] | None = None,
        key_name: str | None = None,
        now: float | None = None,
        display_name: str | None = None,
    ) -> tuple[str, int]:
        """A signed token and its expiry (seconds since the epoch)."""
        if not _CLIENT_ID.fullmatch(client_id):
            raise ValueError(f"invalid client_id {client_id!r}")
        if display_name is not None and (problem := display_name_problem(display_name)):
            raise ValueError(problem)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        grants = Capabilities.validate(capabilities if capabilities is not None else {"*": ["*"]})
        name = key_name or self.default_key
        issued = int(now if now is not None else time.time())
        expires = issued + ttl
        claims: dict[str, Any] = {
            "sub": client_id,
            "kind": kind,
            "iat": issued,
            "exp": expires,
            "cap": grants,
        }
        if display_name is not None:
            claims["name"] = display_name
        token = jwt.encode(claims, self.keys[name], algorithm="HS256", headers={"kid": name})
        return token, expires

    def verify(self, token: str, now: float | None = None) -> Identity:
        """The identity in a token; raises ProtocolError TOKEN_INVALID or TOKEN_EXPIRED."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise ProtocolError(Code.TOKEN_INVALID, "token is malformed") from exc
        kid = header.get("kid")
        secret = self.keys.get(kid) if isinstance(kid, str) else None
        if secret is None:
            raise ProtocolError(Code.TOKEN_INVALID, "token is signed by an unknown key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                secret,
                algorithms=["HS256"],
                options={"require": ["exp", "sub"], "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            raise ProtocolError(Code.TOKEN_INVALID, "token signature or claims are invalid") from exc
        exp = claims.get("exp")
        if isinstance(exp, bool) or not isinstance(exp, int | float) or not math.isfinite(exp):
            raise ProtocolError(Code.TOKEN_INVALID, "token expiry is invalid")
        if not 0 < exp <= MAX_EXPIRY:
            raise ProtocolError(Code.TOKEN_INVALID, "token expiry is out of range")
        if exp <= (now if now is not None else time.time()):
            raise ProtocolError(Code.TOKEN_EXPIRED, "token expired")
        client_id = claims.get("sub")
        kind = claims.get("kind", "human")
        if not isinstance(client_id, str) or not _CLIENT_ID.fullmatch(client_id):
            raise ProtocolError(Code.TOKEN_INVALID, "token client_id is invalid")
        display_name = claims.get("name")
        if display_name is not None and (
            not isinstance(display_name, str) or display_name_problem(display_name)
        ):
            raise ProtocolError(Code.TOKEN_INVALID, "token display name is invalid")
        if kind not in KINDS:
            raise ProtocolError(Code.TOKEN_INVALID, "token kind is invalid")
        try:
            grants = Capabilities.validate(claims.get("cap", {}))
        except ValueError as exc:
            raise ProtocolError(Code.TOKEN_INVALID, f"token capabilities are invalid: {exc}") from exc
        iat = claims.get("iat")
        issued = float(iat) if isinstance(iat, int | float) and math.isfinite(iat) and iat < exp else 0.0
        return Identity(client_id, kind, int(exp), self._capabilities_for(grants), display_name, issued)

    def _capabilities_for(self, grants: dict[str, list[str]]) -> Capabilities:
        key = json.dumps(grants, sort_keys=True)
        found = self._capabilities.get(key)
        if found is None:
            found = Capabilities(grants)
            if len(self._capabilities) >= 1024:
                self._capabilities.clear()
            self._capabilities[key] = found
        return found

    def check_basic(self, header: str | None) -> str:
        """The key name proven by an `Authorization: Basic name:secret` header."""
        if not header or not header.startswith("Basic "):
            raise ProtocolError(Code.UNAUTHORIZED, "API key required (Authorization: Basic)")
        try:
            raw = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ProtocolError(Code.UNAUTHORIZED, "malformed Basic credentials") from exc
        name, _, secret = raw.partition(":")
        expected = self.keys.get(name)
        if expected is None or not hmac.compare_digest(expected.encode(), secret.encode()):
            raise ProtocolError(Code.UNAUTHORIZED, "unknown API key")
        return name
