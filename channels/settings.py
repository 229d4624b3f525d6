"""Server settings: command-line flags and `AGENTCHAT_*` environment variables, validated once."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DB = "sqlite+aiosqlite:///./data/agentchat.db"
_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-.@]{0,199}|\*")


class NamespacePolicy(BaseModel):
    """The settings of every channel in one namespace (the part of a channel's name before the
    first `:`, or the whole name when it has none). docs/configuration.md lists each field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reply_policy: Literal["open", "addressed"] = "open"
    loop_budget: int | None = Field(default=10, ge=1, le=100_000)
    double_texting: Literal["queue", "interrupt", "reject"] = "queue"
    claim_ttl: int = Field(default=30, ge=1, le=3600)
    input_deadline: int = Field(default=86_400, ge=1, le=30 * 86_400)

    def advertised(self) -> dict[str, Any]:
        """What `attached.policy` tells the room's members (every field, as plain values)."""
        return self.model_dump()


DEFAULT_POLICY = NamespacePolicy()


def namespace_of(channel: str) -> str:
    """The namespace of a channel name: the part before the first `:` (the whole name without one)."""
    return channel.partition(":")[0]


class Settings(BaseSettings):
    """Everything the server can be told. Limits name their overflow policy in docs/configuration.md."""

    model_config = SettingsConfigDict(env_prefix="AGENTCHAT_", extra="ignore")

    db: str = DEFAULT_DB
    bus: str = "local"
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # API keys as "name:secret"; tokens are signed with one of them. Empty: a random key per start.
    keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    dev: bool = False
    demo: bool = False
    demo_channel: str = "room:lobby"
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Per-namespace settings: JSON text, or the path of a JSON file (see `_namespaces`).
    namespaces: Annotated[dict[str, NamespacePolicy], NoDecode] = Field(default_factory=dict)

    heartbeat_interval: float = Field(default=15.0, gt=0)
    resume_window: float = Field(default=120.0, ge=0)
    presence_grace: float = Field(default=15.0, ge=0)
    stream_grace: float = Field(default=15.0, ge=0)
    presence_ttl: float = Field(default=15.0, gt=0)
    position_check_interval: float = Field(default=2.0, gt=0)
    reorder_wait: float = Field(default=0.05, ge=0)
    shutdown_timeout: float = Field(default=5.0, gt=0)
    connect_timeout: float = Field(default=10.0, gt=0)
    slow_consumer_timeout: float = Field(default=30.0, gt=0)
    retention_days: float | None = Field(default=None, gt=0)

    http_header_timeout: float = Field(default=15.0, gt=0)

    max_frame_bytes: int = Field(default=128 * 1024, ge=1024)
    max_ws_message: int = Field(default=16 * 1024 * 1024, ge=1024)
    max_message_bytes: int = Field(default=64 * 1024, ge=16)
    max_presence_bytes: int = Field(default=8 * 1024, ge=16)
    max_outbox_bytes: int = Field(default=4 * 1024 * 1024, ge=4096)
    max_page_bytes: int = Field(default=256 * 1024, ge=1024)
    max_channels: int = Field(default=100, ge=1)
    max_connections_per_client: int = Field(default=50, ge=1)
    history_max_page: int = Field(default=1000, ge=1)
    history_concurrency: int = Field(default=8, ge=1)
    history_per_connection: int = Field(default=4, ge=1)
    publish_rate: float = Field(default=100.0, gt=0)
    publish_burst: int = Field(default=500, ge=1)
    rest_publish_rate: float = Field(default=100.0, gt=0)
    rest_publish_burst: int = Field(default=500, ge=1)
    presence_rate: float = Field(default=5.0, gt=0)
    presence_burst: int = Field(default=20, ge=1)
    presence_client_rate: float = Field(default=20.0, gt=0)
    presence_client_burst: int = Field(default=100, ge=1)
    mint_rate: float = Field(default=50.0, gt=0)
    mint_burst: int = Field(default=200, ge=1)
    auth_failure_rate: float = Field(default=0.2, gt=0)
    auth_failure_burst: int = Field(default=10, ge=1)
    max_bad_frames: int = Field(default=60, ge=1)
    max_streams_per_connection: int = Field(default=20, ge=1)
    max_streams_per_channel: int = Field(default=100, ge=1)
    max_stream_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_stream_bytes_per_client: int = Field(default=8 * 1024 * 1024, ge=1024)
    presence_page_size: int = Field(default=100, ge=1, le=1000)
    commit_batch: int = Field(default=2000, ge=1)
    # Group chat (docs/configuration.md, "Group chat").
    max_reactions_per_message: int = Field(default=20, ge=1, le=100)
    max_reactors_per_message: int = Field(default=500, ge=1)
    reaction_clients_listed: int = Field(default=10, ge=0, le=100)
    unread_count_cap: int = Field(default=1000, ge=1, le=100_000)
    directory_max_page: int = Field(default=100, ge=1, le=1000)
    max_runs_per_connection: int = Field(default=20, ge=1)
    max_runs_per_channel: int = Field(default=100, ge=1, le=10_000)
    max_requests_per_channel: int = Field(default=1000, ge=1)
    room_sweep_interval: float = Field(default=1.0, gt=0, le=60)

    @field_validator("keys", "allowed_origins", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("namespaces", mode="before")
    @classmethod
    def _namespaces(cls, value: object) -> object:
        """`{"<namespace>": {setting: value}, "*": {...}}` as JSON text or the path of a JSON file.
        `*` holds the defaults of every namespace; a namespace's own fields override them."""
        if isinstance(value, str):
            text = value.strip()
            if not text:
                return {}
            if not text.startswith("{"):
                try:
                    text = Path(text).read_text()
                except OSError as exc:
                    raise ValueError(f"namespaces: cannot read {text!r}: {exc.strerror}") from None
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise ValueError(f"namespaces: not JSON ({exc})") from None
        if not isinstance(value, dict):
            return value
        for name in value:
            if not isinstance(name, str) or not _NAMESPACE.fullmatch(name):
                raise ValueError(f"namespaces: {name!r} is not a namespace name (or '*')")
        defaults = value.get("*", {})
        if not isinstance(defaults, dict):
            return value
        return {name: {**defaults, **own} if isinstance(own, dict) else own for name, own in value.items()}

    def policy(self, channel: str) -> NamespacePolicy:
        """The settings of `channel`'s namespace: its own entry, else `*`, else the defaults."""
        found = self.namespaces.get(namespace_of(channel))
        if found is None:
            found = self.namespaces.get("*", DEFAULT_POLICY)
        return found

    @field_validator("keys")
    @classmethod
    def _check_keys(cls, value: list[str]) -> list[str]:
        for entry in value:
            name, sep, secret = entry.partition(":")
            if not sep or not name or len(secret.encode()) < 32:
                raise ValueError(
                    "each key is 'name:secret' with a secret of at least 32 bytes "
                    "(e.g. name:$(openssl rand -hex 32))"
                )
        return value

    @model_validator(mode="after")
    def _frames_fit_outboxes(self) -> Settings:
        # Promise 9: every frame the server builds stays below the outbox bound, with room for
        # the traffic around it, so a reader is closed as slow only for being slow.
        largest = self.largest_frame()
        if self.max_outbox_bytes < 2 * largest:
            raise ValueError(
                f"max_outbox_bytes ({self.max_outbox_bytes}) must be at least twice the largest frame "
                f"({largest} bytes: the largest of max_stream_bytes, max_message_bytes, max_page_bytes "
                "and max_frame_bytes, plus overhead)"
            )
        return self

    def largest_frame(self) -> int:
        """An upper bound of any single frame the server sends, in bytes."""
        body = max(self.max_stream_bytes, self.max_message_bytes, self.max_page_bytes, self.max_frame_bytes)
        # A message's reaction aggregate: per reaction its name, count and listed client ids.
        reactions = self.max_reactions_per_message * (96 + 70 * self.reaction_clients_listed)
        return body + 2 * self.max_message_bytes + reactions + 4096  # meta, extra fields, header

    def client_limits(self) -> dict[str, int]:
        """The limits a client is told in `connected`."""
        return {
            "max_frame_bytes": self.max_frame_bytes,
            "max_message_bytes": self.max_message_bytes,
            "max_presence_bytes": self.max_presence_bytes,
            "history_max_page": self.history_max_page,
            "max_channels": self.max_channels,
            "max_stream_bytes": self.max_stream_bytes,
        }
