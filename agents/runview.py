"""A reader's view of a channel's runs and claims, built from their frames and records; no I/O.

Rules (docs/protocol.md, "Runs" and "Claims"):
- Per run, the `run_status` / `run_snapshot` with the highest `version` wins; a run whose end
  record or terminal status was seen is never taken back: only a newer terminal status follows.
- A `run_snapshot` carries the run's state as the last snapshot plus the deltas since: it replaces
  the state, then its deltas apply in order; live `run_state` frames follow (a snapshot replaces,
  a delta is an RFC 6902 JSON Patch). A delta that does not apply leaves the state as it was and
  is logged: the next snapshot repairs it.
- A run's end record (`agentchat.run` with a terminal status) is authoritative for how it ended.
- Per message, the claim change with the highest token wins; for one token a later state wins.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict
from typing import Any

import jsonpatch

from agentchat.models import Message
from agentchat.roommodels import RUN_RECORD, TERMINAL_RUN, ClaimEvent, RunUpdate

log = logging.getLogger("agentchat.runs")

MAX_RUNS = 1000  # overflow policy: beyond this many runs, the oldest ended ones are forgotten
MAX_CLAIMS = 1000  # likewise for claims no longer held


class RunBook:
    """The runs and claims of one channel as one reader knows them."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.runs: OrderedDict[str, RunUpdate] = OrderedDict()
        self.claims: OrderedDict[int, ClaimEvent] = OrderedDict()

    def status(self, frame: dict[str, Any]) -> RunUpdate | None:
        """Apply a `run_status` or `run_snapshot`; the run's new view, None when nothing changed."""
        run_id = frame.get("run_id")
        if not isinstance(run_id, str):
            return None
        known = self.runs.get(run_id)
        update = RunUpdate.from_wire(frame, self.channel)
        snapshot = frame.get("type") == "run_snapshot"
        state = known.state if known is not None else None
        if snapshot:
            state = _patched(frame.get("state"), frame.get("deltas"), run_id)
        if known is not None and known.done:
            if not (update.done and update.version > known.version):
                return None
            # The terminal status after the end record: a newer header, the record's details.
            update = dataclasses.replace(
                update,
                error=update.error or known.error,
                cancelled_by=update.cancelled_by or known.cancelled_by,
                result=known.result,
            )
            return self._keep(dataclasses.replace(update, state=known.state))
        if known is not None and update.version <= known.version:
            if not snapshot:
                return None
            update = known  # an older header, but its state is the freshest there is
        return self._keep(dataclasses.replace(update, state=state, result=_result(known)))

    def state(self, frame: dict[str, Any]) -> RunUpdate | None:
        """Apply a live `run_state` (a snapshot or a delta); the run's new view, None if unknown."""
        known = self.runs.get(str(frame.get("run_id")))
        if known is None or known.done:
            return None
        if "delta" in frame:
            state = _patched(known.state, frame.get("delta"), known.run_id)
        else:
            state = frame.get("snapshot")
        return self._keep(dataclasses.replace(known, state=state))

    def record(self, message: Message) -> RunUpdate | None:
        """Apply a run's start or end record (`agentchat.run`); the new view, None if not one."""
        if message.name != RUN_RECORD or message.run_id is None or not isinstance(message.data, dict):
            return None
        data = message.data
        status = data.get("status")
        known = self.runs.get(message.run_id)
        if status not in TERMINAL_RUN:
            if known is not None:
                return None
            update = RunUpdate(
                run_id=message.run_id,
                channel=self.channel,
                status="running",
                version=0,
                client_id=message.client_id,
                kind=message.kind,
                display_name=message.display_name,
                serial=message.serial,
                ts=message.ts,
                reply_to=message.reply_to,
                parent=data.get("parent_run_id") if isinstance(data.get("parent_run_id"), str) else None,
            )
            return self._keep(update)
        if known is not None and known.done and known.result is not None:
            return None
        base = known or RunUpdate(message.run_id, self.channel, str(status), 0, client_id=message.client_id)
        error = data.get("error")
        cancelled_by = data.get("cancelled_by")
        update = dataclasses.replace(
            base,
            status=str(status),
            error=dict(error) if isinstance(error, dict) else base.error,
            cancelled_by=cancelled_by if isinstance(cancelled_by, str) else base.cancelled_by,
            result=data.get("result"),
            writer=None,
        )
        return self._keep(update)

    def claim(self, frame: dict[str, Any]) -> ClaimEvent | None:
        """Apply a live `claim` frame; the change, None when it is older than what is known."""
        event = ClaimEvent.from_wire(frame, self.channel)
        known = self.claims.get(event.serial)
        if known is not None and (
            event.token < known.token or (event.token == known.token and event.state == known.state)
        ):
            return None
        self.claims[event.serial] = event
        self.claims.move_to_end(event.serial)
        if len(self.claims) > MAX_CLAIMS:
            over = [s for s, c in self.claims.items() if c.state != "held"]
            for serial in over[: len(self.claims) - MAX_CLAIMS]:
                del self.claims[serial]
        return event

    def _keep(self, update: RunUpdate) -> RunUpdate:
        self.runs[update.run_id] = update
        self.runs.move_to_end(update.run_id)
        if len(self.runs) > MAX_RUNS:
            for run_id in [r for r, u in self.runs.items() if u.done][: len(self.runs) - MAX_RUNS]:
                del self.runs[run_id]
        return update


def _result(known: RunUpdate | None) -> Any:
    return known.result if known is not None else None


def _patched(state: Any, deltas: Any, run_id: str) -> Any:
    if not isinstance(deltas, list):
        return state
    for delta in deltas:
        operations = delta if isinstance(delta, list) else [delta]
        try:
            state = jsonpatch.apply_patch(state, operations)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError) as exc:
            log.warning("run %s: a state delta does not apply (%s); waiting for a snapshot", run_id, exc)
            return state
    return state
