"""The docs stay true to the code: every error code the server uses is in docs/protocol.md's table,
every setting in docs/configuration.md, every server frame type in docs/protocol.md."""

from __future__ import annotations

import re
from pathlib import Path

from agentchat_server.protocol import SERVER_FRAME_TYPES, Code
from agentchat_server.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def used_codes() -> dict[str, int]:
    """Codes the server refers to somewhere outside their definition."""
    names = {name: value for name, value in vars(Code).items() if name.isupper()}
    source = "\n".join(
        path.read_text() for path in (ROOT / "channels").rglob("*.py") if path.name != "codes.py"
    )
    return {name: value for name, value in names.items() if re.search(rf"Code\.{name}\b", source)}


def test_every_code_the_server_uses_is_in_the_error_table() -> None:
    """A code the server can send has a row in docs/protocol.md's error table."""
    doc = (ROOT / "docs" / "protocol.md").read_text()
    missing = {name: value for name, value in used_codes().items() if f"| {value} |" not in doc}
    assert missing == {}


def test_every_setting_is_in_the_configuration_page() -> None:
    """Each setting's environment variable is documented in docs/configuration.md."""
    doc = (ROOT / "docs" / "configuration.md").read_text()
    missing = [name for name in Settings.model_fields if f"AGENTCHAT_{name.upper()}" not in doc]
    assert missing == []


def test_every_server_frame_type_is_in_the_protocol_page() -> None:
    """Each server frame type appears in docs/protocol.md as a frame."""
    doc = (ROOT / "docs" / "protocol.md").read_text()
    missing = sorted(
        kind for kind in SERVER_FRAME_TYPES if f'"type": "{kind}"' not in doc and f"`{kind}`" not in doc
    )
    assert missing == []
