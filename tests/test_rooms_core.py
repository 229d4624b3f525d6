"""The pure rules of agent rooms: claims and fencing tokens, the loop brake, addressing, run status
and the channel's view of its runs, answers to input requests. No sockets, no database."""

from __future__ import annotations

import pathlib
from dataclasses import replace

import pytest

from agentchat_server.core.agentrooms import (
    BRAKED,
    Claimant,
    Refusal,
    brake,
    check_reply,
    decide_claim,
    decide_release,
    for_reader,
    like_pattern,
    to_column,
)
from agentchat_server.core.inputs import RequestRecord, check_answer, may_answer
from agentchat_server.core.runs import (
    ChannelRuns,
    RunRecord,
    asked,
    ended,
    request_closed,
    resumed,
    writer_lost,
)
from agentchat_server.protocol import Code
from agentchat_server.settings import Settings

NOW = 1_000_000


def who(client_id: str, session: str = "s1", token: int | None = None, ttl: int = 30_000) -> Claimant:
    return Claimant(client_id, session, token, ttl)


def test_first_claim_gets_token_one_and_a_lease() -> None:
    """A message never claimed is granted with fencing token 1 and a lease of the asked length."""
    claim = decide_claim(None, who("a"), "room:x", 5, NOW)
    assert not isinstance(claim, Refusal)
    assert (claim.holder, claim.token, claim.state, claim.expires_at) == ("a", 1, "held", NOW + 30_000)


def test_a_held_claim_refuses_rivals_and_a_lapsed_one_grows_the_token() -> None:
    """While the lease runs a rival is refused with the holder; after it, the rival gets token 2."""
    held = decide_claim(None, who("a"), "room:x", 5, NOW)
    assert not isinstance(held, Refusal)
    rival = decide_claim(held, who("b", "s2"), "room:x", 5, NOW + 10)
    assert isinstance(rival, Refusal) and rival.code == Code.CLAIMED and rival.details["holder"] == "a"
    later = decide_claim(held, who("b", "s2"), "room:x", 5, NOW + 30_000)
    assert not isinstance(later, Refusal) and (later.holder, later.token) == ("b", 2)


def test_renewal_needs_the_current_token_and_a_running_lease() -> None:
    """Renewing with the current token extends the lease; a stale token or a lapsed lease is 40906."""
    held = decide_claim(None, who("a"), "room:x", 5, NOW)
    assert not isinstance(held, Refusal)
    renewed = decide_claim(held, who("a", token=1), "room:x", 5, NOW + 20_000)
    assert not isinstance(renewed, Refusal) and renewed.expires_at == NOW + 50_000 and renewed.token == 1
    stale = decide_claim(held, who("a", token=7), "room:x", 5, NOW + 1)
    assert isinstance(stale, Refusal) and stale.code == Code.CLAIM_LOST
    lapsed = decide_claim(held, who("a", token=1), "room:x", 5, NOW + 31_000)
    assert isinstance(lapsed, Refusal) and lapsed.code == Code.CLAIM_LOST


def test_a_retry_from_the_holding_session_keeps_the_token_but_another_session_is_a_rival() -> None:
    """The same session claiming again gets its lease back; another session of the client does not."""
    held = decide_claim(None, who("a", "s1"), "room:x", 5, NOW)
    assert not isinstance(held, Refusal)
    again = decide_claim(held, who("a", "s1"), "room:x", 5, NOW + 5)
    assert not isinstance(again, Refusal) and again.token == 1
    other = decide_claim(held, who("a", "s9"), "room:x", 5, NOW + 5)
    assert isinstance(other, Refusal) and other.code == Code.CLAIMED


def test_done_claims_cannot_be_taken_and_releases_need_the_holder() -> None:
    """A done claim refuses every claimant; a release needs the holder's current, held token."""
    held = decide_claim(None, who("a"), "room:x", 5, NOW)
    assert not isinstance(held, Refusal)
    assert isinstance(decide_release(held, "b", 1, NOW), Refusal)
    released = decide_release(held, "a", 1, NOW)
    assert not isinstance(released, Refusal) and released.state == "released"
    refused = decide_claim(replace(held, state="done"), who("b", "s2"), "room:x", 5, NOW + 99_999_999)
    assert isinstance(refused, Refusal) and refused.details["state"] == "done"


def test_replies_to_claimed_messages_need_the_holders_token() -> None:
    """Without a claim anyone may reply; with one only the holder with its current token may."""
    assert check_reply(None, "b", None, NOW) is None
    held = decide_claim(None, who("a"), "room:x", 5, NOW)
    assert not isinstance(held, Refusal)
    assert check_reply(held, "a", 1, NOW) is None
    other = check_reply(held, "b", None, NOW)
    assert other is not None and other.code == Code.CLAIMED
    no_token = check_reply(held, "a", None, NOW)
    assert no_token is not None and no_token.code == Code.CLAIM_LOST
    lapsed = check_reply(held, "a", 1, NOW + 31_000)
    assert lapsed is not None and lapsed.code == Code.CLAIM_LOST
    assert check_reply(held, "b", None, NOW + 31_000) is None  # a lapsed claim binds no one


def test_loop_brake_counts_turns_as_changes_of_agent_speaker() -> None:
    """A lone agent's messages are one turn; alternating agents spend a turn each; a human resets."""
    turns, speaker = 0, None
    for _ in range(20):
        decided = brake(turns, speaker, 3, "agent", "solo")
        assert decided.allowed
        turns, speaker = decided.turns, decided.speaker
    assert turns == 1
    for writer in ("a", "b"):
        decided = brake(turns, speaker, 3, "agent", writer)
        assert decided.allowed
        turns, speaker = decided.turns, decided.speaker
    assert turns == 3
    refused = brake(turns, speaker, 3, "agent", "a")
    assert not refused.allowed and refused.notice and refused.turns == BRAKED
    again = brake(refused.turns, speaker, 3, "agent", "b")
    assert not again.allowed and not again.notice
    assert brake(BRAKED, speaker, 3, "human", "ana") == brake(0, None, 3, "human", "ana")
    assert brake(5, "a", None, "agent", "b").allowed  # no budget: never braked


def test_addressing_rules() -> None:
    """`to_me` keeps messages to nobody, to the reader, or from it; the SQL pattern escapes wildcards."""
    assert (
        for_reader(None, "x", "me") and for_reader(["me", "y"], "x", "me") and for_reader(["y"], "me", "me")
    )
    assert not for_reader(["y"], "x", "me")
    assert to_column(["a", "b"]) == ",a,b," and to_column(None) is None
    assert like_pattern("a_b%c") == "%,a\\_b\\%c,%"


def run_record(**fields: object) -> RunRecord:
    base: dict[str, object] = {
        "run_id": "r1",
        "channel": "room:x",
        "client_id": "planner",
        "kind": "agent",
        "serial": 4,
        "ts": 1,
        "writer": "s1",
    }
    base.update(fields)
    return RunRecord(**base)  # type: ignore[arg-type]


def test_run_status_follows_its_table() -> None:
    """Ask → input_required; the last answer with a writer → running; a lost writer parks a waiting
    run and aborts a running one; a parked run stays input_required until resumed."""
    run = run_record()
    waiting = asked(run)
    assert (waiting.status, waiting.pending, waiting.version) == ("input_required", 1, 2)
    assert request_closed(waiting).status == "running"
    parked = writer_lost(waiting)
    assert (parked.status, parked.writer) == ("input_required", None)
    answered = request_closed(parked)
    assert (answered.status, answered.pending) == ("input_required", 0)
    assert resumed(answered, "s2", "n1", 0).status == "running"
    assert writer_lost(run).status == "aborted"
    failed = ended(run, "failed", {"message": "model down"}, None)
    assert failed.header()["error"] == {"message": "model down"} and not failed.active


def test_channel_view_keeps_the_newest_version_and_never_revives_an_ended_run() -> None:
    """Frames and the Store's rows merge by version in any order; an ended run stays ended."""
    view = ChannelRuns()
    run = run_record()
    waiting = asked(run)
    view.status(waiting.header())
    assert view.load([run]) == []  # older than what frames taught: nothing learned
    assert view.runs["r1"].header["status"] == "input_required"
    view.status(ended(waiting, "completed", None, None).header())
    assert view.runs == {}
    view.status(waiting.header())
    assert view.runs == {}
    child = run_record(run_id="r2", serial=9, parent_id="r0")
    parent = run_record(run_id="r0", serial=2)
    learned = view.load([child, parent])
    assert [f["run_id"] for f in learned] == ["r2", "r0"]
    assert [f["run_id"] for f in view.snapshots()] == ["r0", "r2"]  # parents first
    view.state("r0", {"plan": []}, None)
    view.state("r0", None, [{"op": "add", "path": "/plan/-", "value": 1}])
    snap = view.snapshots()[0]
    assert snap["state"] == {"plan": []} and snap["deltas"] == [{"op": "add", "path": "/plan/-", "value": 1}]


def request(**fields: object) -> RequestRecord:
    base: dict[str, object] = {
        "request_id": "q1",
        "channel": "room:x",
        "serial": 3,
        "client_id": "planner",
        "ts": 1,
        "prompt": "deploy?",
        "shape": {"kind": "approval"},
        "deadline": 10,
    }
    base.update(fields)
    return RequestRecord(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("shape", "outcome", "data", "ok"),
    [
        ({"kind": "approval"}, "approve", None, True),
        ({"kind": "approval"}, "deny", "too risky", True),
        ({"kind": "approval"}, "data", 1, False),
        ({"kind": "choice", "options": ["a", "b"]}, "data", "b", True),
        ({"kind": "choice", "options": ["a", "b"]}, "data", "c", False),
        ({"kind": "choice", "options": ["a", "b"]}, "approve", None, False),
        ({"kind": "text"}, "data", "hello", True),
        ({"kind": "text"}, "data", 5, False),
        ({"kind": "json"}, "data", {"any": [1]}, True),
        ({"kind": "json"}, "deny", None, True),
    ],
)
def test_answers_must_fit_the_requests_shape(
    shape: dict[str, object], outcome: str, data: object, ok: bool
) -> None:
    """Each shape takes its answers (and deny); anything else is 40004."""
    problem = check_answer(shape, outcome, data)
    assert (problem is None) == ok
    if problem is not None:
        assert problem.code == Code.INVALID_VALUE


def test_only_addressees_may_answer_a_request_that_names_them() -> None:
    """A request with `to` takes answers from those members only."""
    assert may_answer(request(), "anyone") is None
    refused = may_answer(request(to=["ana"]), "bob")
    assert refused is not None and refused.code == Code.FORBIDDEN
    assert may_answer(request(to=["ana"]), "ana") is None


def test_namespace_settings_merge_star_defaults_and_refuse_unknown_fields(tmp_path: pathlib.Path) -> None:
    """`*` gives every namespace its defaults, a namespace's own fields win, a file path works,
    and an unknown field or a bad namespace name is refused at start."""
    settings = Settings(namespaces='{"*": {"loop_budget": 4}, "team": {"reply_policy": "addressed"}}')
    assert (
        settings.policy("team:a").reply_policy == "addressed" and settings.policy("team:a").loop_budget == 4
    )
    assert settings.policy("room:a").loop_budget == 4 and settings.policy("room:a").reply_policy == "open"
    path = tmp_path / "ns.json"
    path.write_text('{"ops": {"loop_budget": null, "claim_ttl": 5}}')
    from_file = Settings(namespaces=str(path))
    assert from_file.policy("ops:x").loop_budget is None and from_file.policy("ops:x").claim_ttl == 5
    assert Settings().policy("anything").loop_budget == 10
    with pytest.raises(ValueError, match="bogus"):
        Settings(namespaces='{"team": {"bogus": 1}}')
    with pytest.raises(ValueError, match="namespace name"):
        Settings(namespaces='{"bad name": {}}')
    with pytest.raises(ValueError, match="cannot read"):
        Settings(namespaces="/nonexistent/ns.json")
