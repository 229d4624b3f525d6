from agentchat_server.cli import main

main()
