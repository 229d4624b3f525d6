"""The agentchat Python SDK: a reconnecting Client, channels, presence, token streams and Bots."""

from agentchat.assembly import StreamUpdate
from agentchat.bot import Bot
from agentchat.channel import Channel
from agentchat.client import Backoff, Client, TokenProvider
from agentchat.context import Context
from agentchat.errors import (
    AgentChatError,
    AlreadyExistsError,
    ConflictError,
    ConnectionClosed,
    ContinuityLost,
    DevModeOff,
    LinkGone,
    RateLimitedError,
    RequestError,
    ServerUnavailable,
    StreamCancelled,
    StreamLost,
    TooManyPending,
)
from agentchat.models import HistoryPage, LiveEvent, Member, Message, Position
from agentchat.presence import Presence
from agentchat.stream import Stream
from agentchat.subscription import EventFeed, StreamFeed, Subscription
from agentchat.tokens import dev_token

__all__ = [
    "AgentChatError",
    "AlreadyExistsError",
    "Backoff",
    "Bot",
    "Channel",
    "Client",
    "ConflictError",
    "ConnectionClosed",
    "Context",
    "ContinuityLost",
    "DevModeOff",
    "EventFeed",
    "HistoryPage",
    "LinkGone",
    "LiveEvent",
    "Member",
    "Message",
    "Position",
    "Presence",
    "RateLimitedError",
    "RequestError",
    "ServerUnavailable",
    "Stream",
    "StreamCancelled",
    "StreamFeed",
    "StreamLost",
    "StreamUpdate",
    "Subscription",
    "TokenProvider",
    "TooManyPending",
    "dev_token",
]
