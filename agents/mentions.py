"""The mention rule (which members a message names), shared with the server: see
`agentchat_server.protocol.mentions` for the rules. Kept as `agentchat.mentions` for bot authors."""

from agentchat_server.protocol.mentions import MAX_MENTIONS, MENTION, mentioned, text_of

__all__ = ["MAX_MENTIONS", "MENTION", "mentioned", "text_of"]
