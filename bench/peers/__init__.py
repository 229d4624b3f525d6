"""Peer servers the bench measures agentchat against: aiohttp floors, python-socketio, Node socket.io."""
