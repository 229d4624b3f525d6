"""Shared test vectors (tests/vectors/*.json) run against the server's rules and the Python SDK's.

web/agentchat.js runs the same files under node's test runner (tests/js/); together they keep the
ordering/gap rule and the reconnect policy one rule in three places.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from agentchat.connection import Closed
from agentchat.events import Delivered
from agentchat.state import ClientState
from agentchat_server.core.ordering import Cursor, Offer
from agentchat_server.protocol import RECONNECT_POLICY, Sequencer, reconnect_policy
from tests.conftest import need
from tests.wire import UNIT

VECTORS = Path(__file__).parent / "vectors"
ROOT = Path(__file__).resolve().parent.parent


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


def cases(name: str, reader: str) -> list[Any]:
    return [pytest.param(case, id=case["name"]) for case in load(name)["cases"] if reader in case["applies"]]


@pytest.mark.parametrize("case", cases("ordering.json", "sdk"))
def test_ordering_vectors_protocol_sequencer(case: dict[str, Any]) -> None:
    """The protocol's Sequencer (the SDK's rule) gives every verdict and position of the vectors."""
    seq = Sequencer(case["position"])
    for step in case["steps"]:
        if step["op"] == "message":
            assert seq.offer(step["serial"]).value == step["expect"], step
        else:
            assert step["op"] == "attached"
            seq.attached(step["serial"], step["resumed"])
        assert seq.position == step["position"], step


@pytest.mark.parametrize("case", cases("ordering.json", "sdk"))
def test_ordering_vectors_sdk_core(case: dict[str, Any]) -> None:
    """The SDK's core delivers, drops and attaches again exactly as the vectors say, frames in and out."""
    events: list[Any] = []
    sent: list[dict[str, Any]] = []
    core = ClientState(events.append)
    connected = {"session_id": "s", "key": "k", "client_id": "ana", "kind": "human", "resumed": False}
    core.link_up(connected, sent.append)
    core.want("room:x", case["position"])
    if case["position"] is not None:
        core.receive(attached_frame(case["position"], True, sent[-1]["ref"]))
    for step in case["steps"]:
        attaches, delivered = len(sent), len(events)
        if step["op"] == "message":
            core.receive(
                {"type": "message", "channel": "room:x", "serial": step["serial"], "id": "m", "data": 1}
            )
            new = [e.message.serial for e in events[delivered:] if isinstance(e, Delivered)]
            assert new == ([step["serial"]] if step["expect"] == "deliver" else []), step
            asked = [f for f in sent[attaches:] if f["type"] == "attach"]
            if step["expect"] == "gap":
                assert [f["position"]["serial"] for f in asked] == [step["position"]], step
            else:
                assert asked == [], step
        else:
            outstanding = core.channel("room:x").attaching
            core.receive(
                attached_frame(step["serial"], step["resumed"], sent[-1]["ref"] if outstanding else None)
            )
        position = core.channel("room:x").position
        assert position is not None and position.serial == step["position"], step


def attached_frame(serial: int, resumed: bool, ref: int | None) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": "attached",
        "channel": "room:x",
        "position": {"serial": serial, "epoch": "e"},
        "resumed": resumed,
    }
    if ref is not None:
        frame["ref"] = ref
    return frame


@pytest.mark.parametrize("case", cases("ordering.json", "server"))
def test_ordering_vectors_server_cursor(case: dict[str, Any]) -> None:
    """The server's delivery cursor gives every verdict and position of the vectors."""
    cursor = Cursor(case["position"])
    for step in case["steps"]:
        op = step["op"]
        if op == "message":
            verdict = {Offer.DELIVER: "deliver", Offer.START_FILL: "gap", Offer.SKIP: None}[
                cursor.offer(step["serial"])
            ]
            if verdict is None:
                verdict = "duplicate" if step["serial"] <= cursor.last else "hold"
        elif op == "filled":
            verdict = "deliver" if cursor.filled(step["serial"]) else "duplicate"
        else:
            assert op == "fill_done"
            verdict = "live" if cursor.fill_done() else "again"
        assert verdict == step["expect"], step
        assert cursor.last == step["position"], step


RECONNECT = [pytest.param(c, id=str(c["code"])) for c in load("reconnect.json")["cases"]]


@pytest.mark.parametrize("case", RECONNECT)
def test_reconnect_vectors_protocol_table(case: dict[str, Any]) -> None:
    """The protocol's reconnect table gives the action of every vector."""
    assert reconnect_policy(case["code"]) == case["action"]


@pytest.mark.parametrize("case", RECONNECT)
def test_reconnect_vectors_sdk(case: dict[str, Any]) -> None:
    """The SDK decides what to do after a close by the same table."""
    assert Closed(case["code"], "test").action == case["action"]


def test_reconnect_table_is_covered_by_vectors() -> None:
    """Every code of the table has a vector, so a new code cannot slip in untested."""
    covered = {c["code"] for c in load("reconnect.json")["cases"]}
    assert set(RECONNECT_POLICY) <= covered


def test_docs_close_code_table_matches_policy() -> None:
    """docs/protocol.md's close-code table says the same action for every code as the policy."""
    text = (ROOT / "docs" / "protocol.md").read_text()
    section = text.split("## WebSocket close codes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d{4}) \|[^|]*\| `(resume|renew|stop)`", section, re.M)
    documented = {int(code): action for code, action in rows}
    assert documented == {code: action for code, (action, _) in RECONNECT_POLICY.items()}


def test_web_client_passes_the_vectors_under_node() -> None:
    """web/agentchat.js passes the ordering and reconnect vectors under node's test runner (tests/js/)."""
    node = shutil.which("node")
    need(node is not None, "node is not installed: the web client's vector tests (tests/js/) cannot run")
    assert node is not None
    result = subprocess.run(
        [node, "--test", "tests/js/"], cwd=ROOT, capture_output=True, text=True, timeout=UNIT * 12
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout and "# pass 0" not in result.stdout
