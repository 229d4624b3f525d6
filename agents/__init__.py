"""The agentchat Python SDK: a reconnecting Client, channels, presence, token streams and Bots."""

from agentchat.assembly import StreamUpdate
from agentchat.bot import Bot
from agentchat.channel import Channel
from agentchat.chatmodels import (
    LastReply,
    Reaction,
    ReadMark,
    Replies,
    Room,
    RoomsPage,
    Stamp,
    Unread,
    UnreadPage,
)
from agentchat.client import Client, TokenProvider
from agentchat.connection import Backoff
from agentchat.context import Context
from agentchat.errors import (
    AgentChatError,
    AlreadyExistsError,
    ConflictError,
    ConnectionClosed,
    ContinuityLost,
    DevModeOff,
    LinkGone,
    MessageDeleted,
    MessageNotFound,
    RateLimitedError,
    RequestError,
    ServerUnavailable,
    StreamCancelled,
    StreamLost,
    TooManyPending,
    TooManyReactions,
)
from agentchat.models import HistoryPage, LiveEvent, Member, Message, Position
from agentchat.presence import Presence
from agentchat.stream import Stream
from agentchat.subscription import EventFeed, StreamFeed, Subscription
from agentchat.timeline import Timeline, apply_event, count_reply
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
    "LastReply",
    "LinkGone",
    "LiveEvent",
    "Member",
    "Message",
    "MessageDeleted",
    "MessageNotFound",
    "Position",
    "Presence",
    "RateLimitedError",
    "Reaction",
    "ReadMark",
    "Replies",
    "RequestError",
    "Room",
    "RoomsPage",
    "ServerUnavailable",
    "Stamp",
    "Stream",
    "StreamCancelled",
    "StreamFeed",
    "StreamLost",
    "StreamUpdate",
    "Subscription",
    "Timeline",
    "TokenProvider",
    "TooManyPending",
    "TooManyReactions",
    "Unread",
    "UnreadPage",
    "apply_event",
    "count_reply",
    "dev_token",
]
