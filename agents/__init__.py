"""The agentchat Python SDK: a reconnecting Client, channels, presence, token streams and Bots."""

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
    RateLimitedError,
    RequestError,
    StreamCancelled,
    StreamLost,
    TooManyPending,
)
from agentchat.models import HistoryPage, LiveEvent, Member, Message, Position
from agentchat.presence import Presence
from agentchat.stream import Stream
from agentchat.subscription import EventFeed, Subscription

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
    "EventFeed",
    "HistoryPage",
    "LiveEvent",
    "Member",
    "Message",
    "Position",
    "Presence",
    "RateLimitedError",
    "RequestError",
    "Stream",
    "StreamCancelled",
    "StreamLost",
    "Subscription",
    "TokenProvider",
    "TooManyPending",
]
