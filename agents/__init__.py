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
from agentchat.claims import Claim, Claiming
from agentchat.client import Client, TokenProvider
from agentchat.connection import Backoff
from agentchat.context import Context
from agentchat.errors import (
    AgentChatError,
    AlreadyExistsError,
    ClaimHeld,
    ClaimLost,
    ConflictError,
    ConnectionClosed,
    ContinuityLost,
    DevModeOff,
    LinkGone,
    LoopBrake,
    MessageDeleted,
    MessageNotFound,
    NotAddressed,
    RateLimitedError,
    RequestClosed,
    RequestError,
    RunCancelled,
    ServerUnavailable,
    StreamCancelled,
    StreamLost,
    TooManyPending,
    TooManyReactions,
)
from agentchat.feeds import LatestFeed
from agentchat.models import HistoryPage, LiveEvent, Member, Message, Position
from agentchat.presence import Presence
from agentchat.requests import Asked
from agentchat.roommodels import ClaimEvent, InputAnswer, InputRequest, Policy, RunUpdate
from agentchat.runs import Run
from agentchat.stream import Stream
from agentchat.subscription import EventFeed, StreamFeed, Subscription
from agentchat.timeline import Timeline, apply_event, count_reply
from agentchat.tokens import dev_token

__all__ = [
    "AgentChatError",
    "AlreadyExistsError",
    "Asked",
    "Backoff",
    "Bot",
    "Channel",
    "Claim",
    "ClaimEvent",
    "ClaimHeld",
    "ClaimLost",
    "Claiming",
    "Client",
    "ConflictError",
    "ConnectionClosed",
    "Context",
    "ContinuityLost",
    "DevModeOff",
    "EventFeed",
    "HistoryPage",
    "InputAnswer",
    "InputRequest",
    "LastReply",
    "LatestFeed",
    "LinkGone",
    "LiveEvent",
    "LoopBrake",
    "Member",
    "Message",
    "MessageDeleted",
    "MessageNotFound",
    "NotAddressed",
    "Policy",
    "Position",
    "Presence",
    "RateLimitedError",
    "Reaction",
    "ReadMark",
    "Replies",
    "RequestClosed",
    "RequestError",
    "Room",
    "RoomsPage",
    "Run",
    "RunCancelled",
    "RunUpdate",
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
