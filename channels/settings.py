"""Server settings: command-line flags and `AGENTCHAT_*` environment variables, validated once."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DB = "sqlite+aiosqlite:///./data/agentchat.db"


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

    heartbeat_interval: float = Field(default=15.0, gt=0)
    resume_window: float = Field(default=120.0, ge=0)
    presence_grace: float = Field(default=15.0, ge=0)
    stream_grace: float = Field(default=15.0, ge=0)
    connect_timeout: float = Field(default=10.0, gt=0)
    retention_days: float | None = Field(default=None, gt=0)

    max_frame_bytes: int = Field(default=128 * 1024, ge=1024)
    max_ws_message: int = Field(default=16 * 1024 * 1024, ge=1024)
    max_message_bytes: int = Field(default=64 * 1024, ge=16)
    max_outbox_bytes: int = Field(default=1024 * 1024, ge=4096)
    max_channels: int = Field(default=100, ge=1)
    max_connections_per_client: int = Field(default=50, ge=1)
    history_max_page: int = Field(default=1000, ge=1)
    publish_rate: float = Field(default=100.0, gt=0)
    publish_burst: int = Field(default=500, ge=1)
    max_bad_frames: int = Field(default=60, ge=1)
    max_streams_per_connection: int = Field(default=20, ge=1)
    max_streams_per_channel: int = Field(default=100, ge=1)
    max_stream_bytes: int = Field(default=1024 * 1024, ge=1024)
    presence_page_size: int = Field(default=100, ge=1, le=1000)
    commit_batch: int = Field(default=2000, ge=1)

    @field_validator("keys", "allowed_origins", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("keys")
    @classmethod
    def _check_keys(cls, value: list[str]) -> list[str]:
        for entry in value:
            name, sep, secret = entry.partition(":")
            if not sep or not name or len(secret) < 16:
                raise ValueError("each key is 'name:secret' with a secret of at least 16 characters")
        return value
