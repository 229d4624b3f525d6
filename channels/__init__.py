"""agentchat server: realtime channels with ordered fan-out, presence, history and token streams."""

__version__ = "0.1.0"
