"""Runs, pure: a run's record and its status rules, and the view of a channel's active runs.

Rules (status moves only along this table; `version` grows by one with every change):

| from | event | to |
|---|---|---|
| (none) | start | running |
| running, input_required | ask | input_required (pending + 1) |
| input_required | a request closes | running once none is pending and a writer holds the run |
| running, input_required | resume | running (input_required while requests are pending) |
| input_required | writer lost | input_required, no writer (parked: it waits for its agent) |
| running | writer lost | aborted |
| running, input_required | end | completed, failed (with the error), cancelled (with who) |

- A run with no writer keeps `input_required` even once its requests closed: the answers wait
  for its agent, which takes the run back with `run_resume`.
- Readers keep, per run, the frame with the highest `version`; a snapshot never takes a run back.
- A channel's view keeps active runs only, parents before children; ended runs leave a bounded
  trail of tombstones so a late, older frame cannot bring one back. A node learns a channel's
  runs from every run frame it sees, and once from the Store (the runs that started before it
  served the channel); versions make the order of the two irrelevant.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

from agentchat_server.protocol import server as frames

RUN_RECORD = "agentchat.run"  # the event name of a run's start and end records
ACTIVE = frozenset({"running", "input_required"})
ENDED = frozenset({"completed", "failed", "cancelled", "aborted"})
TOMBSTONES = 256  # ended run ids a view remembers


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run as the Store keeps it. `serial` is its start record; `writer` the session writing it."""

    run_id: str
    channel: str
    client_id: str
    kind: str
    serial: int
    ts: int
    status: str = "running"
    version: int = 1
    pending: int = 0
    writer: str | None = None
    parent_id: str | None = None
    depth: int = 0
    reply_to: int | None = None
    requester: str | None = None
    claim_token: int | None = None
    display_name: str | None = None
    error: dict[str, Any] | None = None
    cancelled_by: str | None = None
    node: str | None = None  # the node whose session writes it; it renews the run's lease
    lease_until: int = 0  # ms; a writer whose lease lapsed (its node died) is lost

    @property
    def active(self) -> bool:
        """True until the run ends."""
        return self.status in ACTIVE

    def header(self) -> dict[str, Any]:
        """The fields of `run_status` and `run_snapshot` frames."""
        fields: dict[str, Any] = {
            "channel": self.channel,
            "run_id": self.run_id,
            "version": self.version,
            "status": self.status,
            "client_id": self.client_id,
            "kind": self.kind,
            "serial": self.serial,
            "ts": self.ts,
            "pending": self.pending,
            "writer": self.writer,
        }
        optional = {
            "display_name": self.display_name,
            "parent_run_id": self.parent_id,
            "reply_to": self.reply_to,
            "requester": self.requester,
            "error": self.error,
            "cancelled_by": self.cancelled_by,
        }
        fields.update({k: v for k, v in optional.items() if v is not None})
        return fields


def asked(run: RunRecord) -> RunRecord:
    """The run after it asked for input."""
    return replace(run, status="input_required", pending=run.pending + 1, version=run.version + 1)


def request_closed(run: RunRecord) -> RunRecord:
    """The run after one of its requests was answered or expired."""
    pending = max(0, run.pending - 1)
    status = "running" if pending == 0 and run.writer is not None else "input_required"
    return replace(run, status=status, pending=pending, version=run.version + 1)


def resumed(run: RunRecord, session: str, node: str, lease_until: int) -> RunRecord:
    """The run after a session of its client (on `node`) took it over."""
    status = "input_required" if run.pending else "running"
    return replace(
        run, status=status, writer=session, node=node, lease_until=lease_until, version=run.version + 1
    )


def writer_lost(run: RunRecord) -> RunRecord:
    """The run after its writer's session ended: parked while it waits for input, else aborted."""
    if run.status == "input_required":
        return replace(run, writer=None, version=run.version + 1)
    return replace(run, status="aborted", version=run.version + 1)


def ended(run: RunRecord, status: str, error: dict[str, Any] | None, cancelled_by: str | None) -> RunRecord:
    """The run after it ended with `status`."""
    return replace(run, status=status, error=error, cancelled_by=cancelled_by, version=run.version + 1)


@dataclass(slots=True)
class RunView:
    """What readers are told of one active run: its header and its shared state."""

    header: dict[str, Any]
    state: Any = None
    deltas: list[Any] | None = None

    def snapshot_frame(self) -> dict[str, Any]:
        """The `run_snapshot` frame an attaching reader gets."""
        return frames.run_snapshot(self.header, self.state, self.deltas or ())


class ChannelRuns:
    """One node's view of a channel's active runs, kept from the Store (once) and run frames."""

    __slots__ = ("_ended", "loaded", "runs")

    def __init__(self) -> None:
        self.runs: dict[str, RunView] = {}
        self._ended: OrderedDict[str, int] = OrderedDict()  # run id -> its last version
        self.loaded = False

    def load(self, records: list[RunRecord]) -> list[dict[str, Any]]:
        """Merge the Store's active runs (frames seen meanwhile are newer or equal: they win);
        returns the snapshots of the runs this taught the view."""
        learned = [record.run_id for record in records if self.status(record.header())]
        self.loaded = True
        return [self.runs[run_id].snapshot_frame() for run_id in learned if run_id in self.runs]

    def status(self, header: dict[str, Any]) -> bool:
        """Apply a `run_status` header if it is newer than what is known; True if it was."""
        run_id = header["run_id"]
        version = header["version"]
        if self._ended.get(run_id, 0) >= version:
            return False
        view = self.runs.get(run_id)
        if view is not None and view.header["version"] >= version:
            return False
        if header["status"] in ENDED:
            self.runs.pop(run_id, None)
            self._ended[run_id] = version
            self._ended.move_to_end(run_id)
            if len(self._ended) > TOMBSTONES:
                self._ended.popitem(last=False)
            return True
        if view is None:
            self.runs[run_id] = RunView(dict(header))
        else:
            view.header = dict(header)
        return True

    def state(self, run_id: str, snapshot: Any, delta: list[Any] | None) -> None:
        """Apply a `run_state` frame: a snapshot replaces the state, a delta is kept after it."""
        view = self.runs.get(run_id)
        if view is None:
            return
        if delta is None:
            view.state, view.deltas = snapshot, None
        else:
            view.deltas = [*(view.deltas or ()), *delta]

    def snapshots(self) -> list[dict[str, Any]]:
        """`run_snapshot` frames of the active runs, parents before their sub-runs."""
        # A sub-run starts after its parent, so its start record's serial is higher.
        order = sorted(self.runs.values(), key=lambda v: int(v.header["serial"]))
        return [view.snapshot_frame() for view in order]
