// agentchat-runs.js: what agents do in a room, as a reader keeps it: runs (status, lanes, shared state),
// claims on messages, and input requests with their answers (docs/protocol.md, "Agent rooms").
//
// Rules, in plain words:
// - Everything is rebuilt the same way from live frames, attach snapshots and history records, in any
//   order and with any overlap: applying the same record twice changes nothing.
// - A run keeps the `run_status`/`run_snapshot` with the highest `version`; its end record (or a terminal
//   status) is never taken back by an older, non-terminal frame.
// - State is a snapshot plus RFC 6902 JSON Patch deltas applied in order; a delta that does not apply
//   leaves the state as it was and marks it `stale` until the next snapshot. State changes do not bump
//   the version, so a `run_snapshot`'s state is taken whatever its version.
// - A message's claim is the frame with the highest `token`; for the same token, a held claim may end
//   (released, expired, done) but an ended one never comes back.
// - A tool call lane is keyed by its tool call id, so its result (lane `tool_result`) finds it whichever
//   arrives first; other lanes by their stream id, or their record's serial when published whole.

import { applyPatch } from "./agentchat-patch.js";

const TERMINAL = new Set(["completed", "failed", "cancelled", "aborted"]);
const RUN_FIELDS = ["client_id", "kind", "display_name", "serial", "ts", "pending", "writer", "parent_run_id",
  "reply_to", "requester", "error", "cancelled_by"];

/** Whether a run status is final (completed, failed, cancelled, aborted). */
export function isTerminal(status) {
  return TERMINAL.has(status);
}

/**
 * The agent side of one channel: `runs` (Map run_id -> run), `claims` (Map serial -> claim frame) and
 * `requests` (Map request_id -> request). Feed it with `frame(f)` (run_status, run_snapshot, run_state,
 * claim), `stream(liveStream)` and `learn(message)`; each returns the changes as
 * [{type: "run" | "claim" | "request", value}] and hands them to the `changed` option (the Channel
 * emits them). The `request` option sends a request frame (the client's): answer, fetchClaims and
 * fetchRequests use it.
 *
 * A run: {run_id, channel, client_id, kind, display_name, status, version, serial, ts, pending, writer,
 * parent_run_id, reply_to, requester, error, cancelled_by, result, state, stale, lanes, requests}. Its
 * `lanes()` are in order: {key, lane ("text" | "reasoning" | "tool_call"), tool_call, text, status,
 * error, serial, ts, result (a tool call's result, or undefined)}. `requests` are request ids.
 *
 * A request: {request_id, serial, client_id, ts, prompt, shape, deadline, data, to, run_id, status
 * ("pending" | "answered" | "expired"), answer ({outcome, data, client_id, ts, serial} or null)}.
 */
export class AgentRoom {
  constructor(channel, { request = null, changed = () => {} } = {}) {
    this.channel = channel;
    this.runs = new Map();
    this.claims = new Map();
    this.requests = new Map();
    this._send = request;
    this._changed = changed;
  }

  /** Answers input request `requestId` (`outcome` "approve" | "deny" | "data"); resolves {serial}. A
   * closed request rejects with 40907, and the request takes the answer the refusal carries. */
  async answer(requestId, outcome, data = undefined) {
    const frame = { type: "answer", channel: this.channel, request_id: requestId, outcome };
    if (data !== undefined) frame.data = data;
    try {
      return { serial: (await this._send(frame)).serial ?? null };
    } catch (err) {
      if (err.code === 40907 && err.frame) this.closed(requestId, err.frame);
      throw err;
    }
  }

  /** The claims held now (after serial `after`), taken in; resolves {claims, has_more}. */
  async fetchClaims({ after } = {}) {
    const ack = await this._send(withFields({ type: "claims", channel: this.channel }, { after }));
    for (const claim of ack.claims || []) this.claim({ state: "held", ...claim });
    return { claims: ack.claims || [], has_more: Boolean(ack.has_more) };
  }

  /** Input requests ({status?, mine?, after?, limit?}), taken in; resolves {requests, has_more}. */
  async fetchRequests({ status, mine, after, limit } = {}) {
    const frame = withFields({ type: "requests", channel: this.channel }, { status, mine, after, limit });
    const ack = await this._send(frame);
    for (const request of ack.requests || []) this.listed(request);
    return { requests: ack.requests || [], has_more: Boolean(ack.has_more) };
  }

  /** The run with this id, or null. */
  run(runId) {
    return this.runs.get(runId) || null;
  }

  /** A live frame about runs or claims; the changes. */
  frame(f) {
    switch (f.type) {
      case "run_status":
      case "run_snapshot":
        return this._tell(this._status(f));
      case "run_state":
        return this._tell(this._state(f));
      case "claim":
        return this.claim(f);
      default:
        return [];
    }
  }

  /** A claim (a live frame, or an entry of the `claims` list); a change when it is newer. */
  claim(f) {
    const held = this.claims.get(f.serial);
    const ends = held && f.token === held.token && held.state === "held" && f.state !== "held";
    const newer = !held || f.token > held.token || ends;
    if (!newer) return [];
    this.claims.set(f.serial, { ...f });
    return this._tell([{ type: "claim", value: this.claims.get(f.serial) }]);
  }

  /** A live lane of a run grew or opened (a LiveStream with `run_id`); the run's change. */
  stream(stream) {
    if (!stream.run_id) return [];
    const run = this._run(stream.run_id, stream);
    const lane = this._lane(run, laneKey(stream.lane, stream.tool_call, stream.stream_id));
    if (lane.status === "open") {
      Object.assign(lane, { lane: stream.lane || "text", ts: stream.ts, text: stream.text() });
      if (stream.tool_call) lane.tool_call = { ...lane.tool_call, ...stream.tool_call };
    }
    return this._tell([{ type: "run", value: run }]);
  }

  /** A durable message (live, replayed or from history); the changes it makes (none for others). */
  learn(m) {
    return this._tell(this._learn(m));
  }

  _learn(m) {
    if (m.name === "agentchat.input_request") return this._asked(m);
    if (m.name === "agentchat.input_answer") return this._answer(m);
    if (!m.run_id) return [];
    const run = this._run(m.run_id, m);
    if (m.name === "agentchat.run") this._record(run, m);
    else if (m.lane === "tool_result") {
      const lane = this._lane(run, laneKey("tool_call", m.tool_call, null));
      lane.result = m.data;
      lane.result_serial = m.serial;
    } else {
      const lane = this._lane(run, laneKey(m.lane, m.tool_call, m.stream_id || `m${m.serial}`));
      Object.assign(lane, {
        lane: m.lane || "text",
        text: typeof m.data === "string" ? m.data : JSON.stringify(m.data ?? ""),
        status: m.status || "complete",
        error: m.error || null,
        serial: m.serial,
        ts: m.ts,
      });
      if (m.tool_call) lane.tool_call = { ...lane.tool_call, ...m.tool_call };
    }
    return [{ type: "run", value: run }];
  }

  /** An entry of the `requests` list (with its `answer` when closed); the changes. */
  listed(r) {
    const data = { prompt: r.prompt, shape: r.shape, deadline: r.deadline, data: r.data };
    const changes = this._learn({ ...r, name: "agentchat.input_request", data });
    if (!r.answer) return this._tell(changes);
    const answer = { ...r.answer, name: "agentchat.input_answer", request_id: r.request_id, run_id: r.run_id };
    return this._tell(this._learn({ ...answer, data: { outcome: r.answer.outcome, data: r.answer.data } }));
  }

  /** A closed request as a `40907` refusal tells it (`status`, `answer`); its change. */
  closed(requestId, nack) {
    const request = this.requests.get(requestId);
    if (!request || request.status !== "pending") return [];
    request.status = nack.status === "expired" ? "expired" : "answered";
    request.answer = nack.answer || request.answer;
    return this._tell(this._requestChanged(request));
  }

  // --- internals ----------------------------------------------------------------------------------

  _tell(changes) {
    if (changes.length) this._changed(changes);
    return changes;
  }

  _run(runId, from) {
    let run = this.runs.get(runId);
    if (!run) {
      run = {
        run_id: runId, channel: this.channel, client_id: from.client_id, kind: from.kind || "agent",
        display_name: from.display_name ?? null, status: "running", version: 0, serial: null, ts: from.ts,
        pending: 0, writer: null, parent_run_id: null, reply_to: null, requester: null, error: null,
        cancelled_by: null, result: undefined, state: undefined, stale: false, ended: false,
        lanesByKey: new Map(), requests: [],
        lanes() {
          const order = (lane) => (lane.serial ?? Infinity);
          return [...this.lanesByKey.values()].sort((a, b) => order(a) - order(b) || (a.ts || 0) - (b.ts || 0));
        },
      };
      this.runs.set(runId, run);
    }
    return run;
  }

  _lane(run, key) {
    let lane = run.lanesByKey.get(key);
    if (!lane) {
      const kind = key.startsWith("tool:") ? "tool_call" : "text";
      lane = { key, lane: kind, tool_call: null, text: "", status: "open", error: null, serial: null, ts: 0 };
      lane.result = undefined; // a tool call's result, once its tool_result arrives
      run.lanesByKey.set(key, lane);
    }
    return lane;
  }

  _status(f) {
    const run = this._run(f.run_id, f);
    // State changes without a new version: a snapshot's state is the current one whatever its version.
    const state = f.type === "run_snapshot" && f.state !== undefined;
    if (state) {
      run.state = f.state;
      run.stale = false;
      this._patch(run, f.deltas || []);
    }
    const newer = f.version > run.version && !(run.ended && !isTerminal(f.status));
    if (newer) {
      run.version = f.version;
      run.status = f.status;
      for (const key of RUN_FIELDS) if (f[key] !== undefined) run[key] = f[key];
    }
    return newer || state ? [{ type: "run", value: run }] : [];
  }

  _state(f) {
    const run = this.runs.get(f.run_id);
    if (!run) return [];
    if (f.snapshot !== undefined) {
      run.state = f.snapshot;
      run.stale = false;
    } else this._patch(run, f.delta || []);
    return [{ type: "run", value: run }];
  }

  _patch(run, ops) {
    if (run.stale || !ops.length) return;
    try {
      run.state = applyPatch(run.state ?? null, ops);
    } catch (_) {
      run.stale = true; // the next snapshot repairs it
    }
  }

  _record(run, m) {
    const data = m.data && typeof m.data === "object" ? m.data : {};
    if (!isTerminal(data.status)) {
      // The start record: where the run stands in the room and what it answers.
      run.serial = m.serial;
      run.ts = m.ts;
      run.client_id = m.client_id;
      run.kind = m.kind || run.kind;
      if (m.display_name) run.display_name = m.display_name;
      if (m.reply_to) run.reply_to = m.reply_to;
      if (data.parent_run_id) run.parent_run_id = data.parent_run_id;
      return;
    }
    run.ended = true;
    run.status = data.status;
    run.error = data.error || null;
    run.cancelled_by = data.cancelled_by || null;
    run.result = data.result;
    run.pending = 0;
    // Lanes whose final message we missed end with the run, as the server ends them.
    const ended = data.status === "completed" ? "complete" : data.status;
    for (const lane of run.lanesByKey.values()) if (lane.status === "open") lane.status = ended;
  }

  _asked(m) {
    const data = m.data && typeof m.data === "object" ? m.data : {};
    const request = this._requestOf(m.request_id);
    Object.assign(request, {
      serial: m.serial, client_id: m.client_id, kind: m.kind, ts: m.ts, prompt: data.prompt ?? "",
      shape: data.shape || { kind: "approval" }, deadline: data.deadline ?? null, data: data.data,
      to: m.to || null, run_id: m.run_id || null,
    });
    return this._requestChanged(request);
  }

  _answer(m) {
    const data = m.data && typeof m.data === "object" ? m.data : {};
    const request = this._requestOf(m.request_id);
    request.answer = { outcome: data.outcome, data: data.data, client_id: m.client_id, ts: m.ts, serial: m.serial };
    request.status = data.outcome === "expired" ? "expired" : "answered";
    if (m.run_id && !request.run_id) request.run_id = m.run_id;
    return this._requestChanged(request);
  }

  _requestOf(requestId) {
    let request = this.requests.get(requestId);
    if (!request) {
      request = { request_id: requestId, serial: null, client_id: null, ts: 0, prompt: "", shape: { kind: "approval" },
        deadline: null, data: undefined, to: null, run_id: null, status: "pending", answer: null };
      this.requests.set(requestId, request);
    }
    return request;
  }

  _requestChanged(request) {
    const changes = [{ type: "request", value: request }];
    if (request.run_id) {
      const run = this._run(request.run_id, request);
      if (!run.requests.includes(request.request_id)) run.requests.push(request.request_id);
      changes.push({ type: "run", value: run });
    }
    return changes;
  }
}

function withFields(frame, fields) {
  for (const [key, value] of Object.entries(fields)) if (value !== undefined && value !== null) frame[key] = value;
  return frame;
}

function laneKey(lane, toolCall, fallback) {
  if ((lane === "tool_call" || lane === "tool_result") && toolCall && toolCall.id) return `tool:${toolCall.id}`;
  return `lane:${fallback}`;
}
