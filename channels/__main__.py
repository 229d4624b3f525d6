"""`python -m agentchat_server`: the `agentchat` command."""

from agentchat_server.cli import main

main()
