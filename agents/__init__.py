"""The agentchat Python SDK: a reconnecting Client, channels, presence, token streams and Bots."""

from agents.bot import Bot
from agents.channel import Channel
from agents.client import Backoff, Client, TokenProvider
from agents.context import Context
from agents.errors import (
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
from agents.models import HistoryPage, LiveEvent, Member, Message, Position
from agents.presence import Presence
from agents.stream import Stream
from agents.subscription import EventFeed, Subscription

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
