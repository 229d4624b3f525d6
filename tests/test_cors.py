"""CORS for browser apps on another origin: allowed origins get headers, others are refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp

from agentchat_server.testing import TestServer


async def test_cors_headers_only_for_allowed_origins(make_server: Callable[..., Any]) -> None:
    """Preflight and responses carry CORS headers for allowed origins; other origins get 403 on preflight."""
    srv: TestServer = await make_server(allowed_origins=["https://app.example"])
    url = f"{srv.url}/v1/channels/room:c/messages"
    headers = {"Authorization": f"Bearer {srv.token('ana')}"}
    async with aiohttp.ClientSession() as http:
        async with http.options(url, headers={"Origin": "https://app.example"}) as r:
            assert r.status == 204
            assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
        async with http.options(url, headers={"Origin": "https://evil.example"}) as r:
            assert r.status == 403
            assert "Access-Control-Allow-Origin" not in r.headers
        async with http.get(url, headers={**headers, "Origin": "https://app.example"}) as r:
            assert r.status == 200 and r.headers["Access-Control-Allow-Origin"] == "https://app.example"
        async with http.get(url, headers=headers) as r:
            assert r.status == 200 and "Access-Control-Allow-Origin" not in r.headers
