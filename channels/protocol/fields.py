"""Field types and the strict base every client frame model shares (names, serials, refs, ids)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentchat_server.protocol.codes import MAX_SERIAL

# Names: a channel is "namespace:rest"; the namespace carries settings and capabilities.
CHANNEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-.:@]{0,199}$"
CLIENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-.@]{0,63}$"

Serial = Annotated[int, Field(ge=0, le=MAX_SERIAL)]
Ref = Annotated[int, Field(ge=0, le=MAX_SERIAL)]
ChannelName = Annotated[str, Field(pattern=CHANNEL_PATTERN)]
ClientId = Annotated[str, Field(pattern=CLIENT_ID_PATTERN)]
MessageId = Annotated[str, Field(min_length=1, max_length=128)]
EventName = Annotated[str, Field(min_length=1, max_length=64)]
Kind = Literal["agent", "human", "system"]
StreamStatus = Literal["complete", "failed", "cancelled", "aborted"]


class StrictFrame(BaseModel):
    """Base of client frame models: unknown fields refused, values never coerced."""

    # strict: "8" is not a ref and true is not 1; a wrong type is an error, never a guess.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
