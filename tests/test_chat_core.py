"""The pure rules of group chat: mentions, room names and titles, reactions, who may change what."""

from __future__ import annotations

import pytest

from agentchat_server.core.capabilities import Capabilities
from agentchat_server.core.chat import ChatEvent, Duplicate, Refusal, Target, judge, reaction_problem
from agentchat_server.core.rooms import canonical_room, room_name_problem, text_problem
from agentchat_server.protocol import Code
from agentchat_server.protocol.mentions import MAX_MENTIONS, mentioned


def test_mentions_follow_one_rule() -> None:
    """@client_id in the text names a member once; emails, the author and a trailing dot do not count."""
    assert mentioned("hi @bob and @cy. and @bob", "ana") == ("bob", "cy")
    assert mentioned({"text": "@planner go"}, "ana") == ("planner",)
    assert mentioned("mail ana@bob.example, @@bob", "ana") == ()
    assert mentioned("@ana talks to herself", "ana") == ()
    assert mentioned({"no": "text"}, "ana") == ()
    assert mentioned("plain text, no names", "ana") == ()  # no `@`: the regex is skipped
    assert mentioned("no @ alone", "ana", to=["bob"]) == ("bob",)  # the list needs no `@` in text
    assert mentioned("@bob", "ana", to=["cy", "ana", "cy"]) == ("cy",)  # an addressee list wins
    many = " ".join(f"@m{i}" for i in range(MAX_MENTIONS + 10))
    assert len(mentioned(many, "ana")) == MAX_MENTIONS


@pytest.mark.parametrize(
    ("name", "canonical", "ok"),
    [
        ("room:design-review", "room:design-review", True),
        ("room:Design-Review", "room:design-review", False),
        ("room:a:b", None, False),
        ("room:-x", None, False),
        ("support:Queue-1", "support:queue-1", True),  # other namespaces keep their case
    ],
)
def test_room_names_are_lowercase_in_the_room_namespace(name: str, canonical: str | None, ok: bool) -> None:
    """room: names are canonical lowercase slugs; other namespaces are left as they are."""
    assert (room_name_problem(name) is None) is ok
    if name.startswith("room:"):
        assert canonical_room(name) == canonical


def test_titles_refuse_control_and_formatting_characters() -> None:
    """Titles take any script and emoji, never bidi overrides, controls or surrounding spaces."""
    assert text_problem("设计评审 👩‍💻", "title", 1, 100) is None
    for bad in ("", " x", "a\u202eb", "a\nb", "x" * 101):
        assert text_problem(bad, "title", 1, 100) is not None


def test_reactions_are_one_emoji_or_a_short_name() -> None:
    """Short lowercase names and single emoji (skin tones, ZWJ sequences, flags) pass; the rest is refused."""
    for good in ("+1", "thumbs_up", "👍", "👍🏽", "👩‍👩‍👧", "🇫🇷"):
        assert reaction_problem(good) is None, good
    for bad in ("Yes", "👍👍", "a b", "<b>", "\u200f", "x" * 33):
        assert reaction_problem(bad) is not None, bad


def test_who_may_change_a_message() -> None:
    """Authors edit and delete; moderators delete only; events and tombstones are no targets."""
    mine = Target(5, "ana", None, None, {}, '"x"', None)
    assert judge(ChatEvent("edit", 5), mine, "ana") is None
    assert isinstance(judge(ChatEvent("edit", 5, moderator=True), mine, "mod"), Refusal)
    assert judge(ChatEvent("delete", 5, moderator=True), mine, "mod") is None
    refused = judge(ChatEvent("delete", 5), mine, "bob")
    assert isinstance(refused, Refusal) and refused.code == Code.FORBIDDEN
    event = Target(6, "ana", "edit", None, {}, "null", None)
    missing = judge(ChatEvent("edit", 6), event, "ana")
    assert isinstance(missing, Refusal) and missing.code == Code.MESSAGE_NOT_FOUND
    tomb = Target(5, "ana", None, None, {"deleted": {"by": "ana", "ts": 1}, "rev": 9}, "null", None)
    assert judge(ChatEvent("delete", 5), tomb, "ana") == Duplicate(9)
    gone = judge(ChatEvent("react", 5), tomb, "bob")
    assert isinstance(gone, Refusal) and gone.code == Code.MESSAGE_DELETED


def test_directory_prefixes_come_from_subscribe_patterns() -> None:
    """The prefixes a directory scan uses are the patterns granting subscribe (exact names included)."""
    caps = Capabilities({"room:*": ["subscribe"], "room:secret*": ["publish"], "team:x": ["*"], "*": []})
    assert sorted(caps.prefixes_with("subscribe")) == ["room:", "team:x"]
    assert caps.can("room:secret-1", "subscribe") is False
