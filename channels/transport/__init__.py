"""Transports: WebSocket, REST, Server-Sent Events and the static web app, on aiohttp."""
