"""Markdown in the web app: what renders, what never runs, and live previews that re-render in batches."""

# The fixtures come from test_browser.py by import, so test parameters shadow the imported names.
# ruff: noqa: F811

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from playwright.async_api import expect

from tests.browser_helpers import publish
from tests.test_browser import (  # noqa: F401 (fixtures)
    ARTIFACTS,
    TIMEOUT_MS,
    Visitors,
    agents,
    browser,
    http,
    message,
    server,
    server_settings,
    tokens,
    visitors,
)

pytestmark = pytest.mark.browser

RICH = """**Release plan** for *Friday*, see `make release`:

- freeze `main`
- write the notes

1. build
2. ship

Docs at https://example.com/docs and [the tracker](https://example.org/issues?q=1),
or <mailto:ops@example.com>.

| step | owner |
|------|-------|
| build | ana |
| ship | @bob |

```python
print("hello <world>")
```
"""

# Each line tries to run code or load something; the page must show all of it as inert text.
ATTACKS = [
    "[click me](javascript:window.__pwned='link')",
    "[upper](JAVASCRIPT:window.__pwned='upper')",
    "<img src=x onerror=\"window.__pwned='raw-img'\">",
    "<script>window.__pwned='script'</script>",
    "![pic](https://example.com/x.png\" onerror=\"window.__pwned='img-attr')",
    "![pic](javascript:window.__pwned='img-js')",
    "[data](data:text/html;base64,PHNjcmlwdD53aW5kb3cuX19wd25lZD0nZGF0YSc8L3NjcmlwdD4=)",
    "<javascript:window.__pwned='autolink'>",
    "[vb](vbscript:msgbox) [file](file:///etc/passwd)",
    "<a href=\"javascript:window.__pwned='anchor'\">anchor</a>",
    "<iframe src=\"data:text/html,<script>parent.__pwned='frame'</script>\"></iframe>",
]


async def test_markdown_renders_emphasis_lists_links_code_and_tables(
    visitors: Visitors, http: aiohttp.ClientSession
) -> None:
    """A markdown message shows emphasis, lists, safe links in a new tab, code with a copy button, tables."""
    await publish(http, visitors.server, "ana", RICH)
    bob = await visitors.open("bob", permissions=["clipboard-read", "clipboard-write"])
    text = message(bob, "Release plan").locator(".text")
    await expect(text).to_have_class("text markdown")
    await expect(text.locator("strong")).to_have_text("Release plan")
    await expect(text.locator("em")).to_have_text("Friday")
    await expect(text.locator("p code")).to_have_text(["make release"])
    await expect(text.locator("ul > li")).to_have_text(["freeze main", "write the notes"])
    await expect(text.locator("ol > li")).to_have_text(["build", "ship"])
    await expect(text.locator("th")).to_have_text(["step", "owner"])
    await expect(text.locator("td")).to_have_text(["build", "ana", "ship", "@bob"])
    await expect(text.locator("td .mention.me")).to_have_text("@bob")

    links = text.locator("a")
    await expect(links).to_have_text(["https://example.com/docs", "the tracker", "mailto:ops@example.com"])
    hrefs = await links.evaluate_all("els => els.map(a => [a.href, a.target, a.rel])")
    assert hrefs == [
        ["https://example.com/docs", "_blank", "noopener noreferrer"],
        ["https://example.org/issues?q=1", "_blank", "noopener noreferrer"],
        ["mailto:ops@example.com", "_blank", "noopener noreferrer"],
    ]

    code = text.locator(".code-block pre code")
    await expect(code).to_have_text('print("hello <world>")\n')
    font = await code.evaluate("e => getComputedStyle(e).fontFamily")
    assert "monospace" in font
    await text.locator(".code-block .copy").click()
    await expect(text.locator(".code-block .copy")).to_have_text("Copied")
    assert await bob.evaluate("navigator.clipboard.readText()") == 'print("hello <world>")\n'

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await message(bob, "Release plan").screenshot(path=str(ARTIFACTS / "markdown.png"))


async def test_plain_messages_keep_their_exact_text(visitors: Visitors, http: aiohttp.ClientSession) -> None:
    """A message without markdown is shown exactly as sent: spaces, line breaks and all."""
    plain = "two  spaces\nand a second line   "
    await publish(http, visitors.server, "ana", plain)
    bob = await visitors.open("bob")
    text = message(bob, "two  spaces").locator(".text")
    await expect(text).to_have_class("text plain")
    assert await text.text_content() == plain


async def test_scripts_links_and_images_from_messages_never_run(
    visitors: Visitors, http: aiohttp.ClientSession, agents: Callable[..., Any]
) -> None:
    """javascript:/data: links, raw HTML and image tricks render as inert text, in messages and previews."""
    for n, attack in enumerate(ATTACKS):
        await publish(http, visitors.server, "mallory", f"attack {n}: {attack}")
    writer = await agents("writer", status="streaming")
    ana = await visitors.open("ana")
    stream_id = await writer.open_stream()
    await writer.append(stream_id, 0, [f"live {n}: {attack}\n\n" for n, attack in enumerate(ATTACKS)])
    live = ana.locator(f'[data-stream-id="{stream_id}"]')
    await expect(live).to_contain_text(f"live {len(ATTACKS) - 1}:")

    for n in range(len(ATTACKS)):
        await expect(message(ana, f"attack {n}:")).to_have_count(1)
    shown = await ana.locator("#timeline").text_content() or ""
    for keyword in ("javascript:window.__pwned='link'", "<script>", "onerror", "data:text/html", "<iframe"):
        assert keyword in shown, keyword
    texts = ana.locator("#timeline .text")
    assert await texts.locator("img, script, iframe, object, embed, svg, style").count() == 0
    hrefs = await texts.locator("a").evaluate_all("els => els.map(a => a.getAttribute('href'))")
    assert all(h.startswith(("https://", "mailto:")) for h in hrefs), hrefs
    handlers = await texts.evaluate_all(
        "els => els.flatMap(e => [...e.querySelectorAll('*')]).flatMap(n => [...n.attributes])"
        ".map(a => a.name).filter(name => name.startsWith('on'))"
    )
    assert handlers == []
    # Clicking where a link would have been does nothing either.
    await message(ana, "attack 0:").locator(".text").click()
    assert await ana.evaluate("window.__pwned") is None


async def test_live_preview_renders_markdown_in_batches_not_per_chunk(
    visitors: Visitors, agents: Callable[..., Any]
) -> None:
    """A live answer renders as markdown; chunks arriving within the preview interval wait for one render."""
    writer = await agents("writer", status="streaming")
    ana = await visitors.open("ana")
    # An hour between renders: everything after the first render waits, whatever the machine's speed.
    await ana.evaluate("window.agentchatApp.timeline.previewMs = 3600 * 1000")
    stream_id = await writer.open_stream()
    bubble = ana.locator(f'[data-stream-id="{stream_id}"]')
    await writer.append(stream_id, 0, ["**Plan**\n\n"])
    await expect(bubble.locator(".text strong")).to_have_text("Plan")
    await expect(bubble).to_have_attribute("data-renders", "1")

    chunks = tokens(0, 60)
    await writer.append(stream_id, 1, chunks)
    await ana.wait_for_function(
        "([id, n]) => window.agentchatApp.channel.streams.get(id)?.next === n",
        arg=[stream_id, 1 + len(chunks)],
        timeout=TIMEOUT_MS,
    )
    await expect(bubble).to_have_attribute("data-renders", "1")
    assert "w000" not in (await bubble.locator(".text").text_content() or "")

    # With the normal interval the preview catches up with the text by itself.
    await ana.evaluate("window.agentchatApp.timeline.previewMs = 100")
    stream2 = await writer.open_stream()
    await writer.append(stream2, 0, ["- first\n", *[f"- item {n}\n" for n in range(40)]])
    preview = ana.locator(f'[data-stream-id="{stream2}"]')
    await expect(preview.locator(".text li")).to_have_count(41)
    await expect(preview.locator(".text li").last.locator(".caret")).to_have_count(1)

    ended = await writer.request(
        type="stream_end", stream_id=stream_id, status="complete", chunks=1 + len(chunks)
    )
    assert ended["type"] == "ack", ended
    final = ana.locator(f'#messages [data-serial="{ended["serial"]}"]')
    await expect(final.locator(".text strong")).to_have_text("Plan")
    await expect(final.locator(".text")).to_contain_text("w059")
    await expect(final.locator(".caret")).to_have_count(0)


async def test_vendored_libraries_are_served_and_nothing_else_there(
    server: Any, http: aiohttp.ClientSession
) -> None:
    """/vendor/<name>.js is served as JavaScript; licences, other folders and odd names are not."""
    async with http.get(f"{server.url}/vendor/markdown-it.js") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/javascript")
        assert "markdown-it 15" in (await response.text())[:200]
    for path in (
        "/vendor/markdown-it.LICENSE.txt",
        "/vendor/README.md",
        "/vendor/missing.js",
        "/vendor/..%2Fapp.js",
        "/vendor/.hidden.js",
        "/other/markdown-it.js",
        "/vendor/sub/markdown-it.js",
    ):
        async with http.get(f"{server.url}{path}") as response:
            assert response.status == 404, path
