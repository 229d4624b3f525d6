// agentchat-channel.js: one channel of the browser client: attachment, ordered delivery, presence, live
// streams, and the requests that name the channel (publish, history, edits, reactions, read marks).
//
// Rules: durable messages are delivered in serial order, each once (agentchat-rules.js's Sequencer); a
// gap is never skipped: the channel attaches again from its position and the server's replay fills it.
// A durable message carrying `action` is an event on another message (edit, delete, react, unreact): it
// is delivered as "event", never as "message", so a handler of messages never answers a reaction. Events
// are applied to held messages with agentchat-events.js.

import { Emitter, emit, randomId } from "./agentchat-base.js";
import { Sequencer } from "./agentchat-rules.js";
import { AgentRoom } from "./agentchat-runs.js";
import { LiveStream, StreamWriter } from "./agentchat-streams.js";

function optional(frame, fields) {
  for (const [key, value] of Object.entries(fields)) if (value !== undefined && value !== null) frame[key] = value;
  return frame;
}

/**
 * One channel of a client. Create it with `client.channel(name)`.
 *
 * Properties: name, attached (bool), position ({serial, epoch} of the last durable message delivered),
 * members (Map connection_id -> presence member), streams (Map stream_id -> LiveStream), agents (the
 * AgentRoom of runs, claims and input requests).
 *
 * Events (use `channel.on(type, fn)`):
 *   attached         the `attached` frame (after every (re)attach)
 *   message          a message: durable ones in serial order without duplicates, ephemeral ones live
 *   event            a durable event on a message ({action, target, ...}), in the same serial order
 *   continuity_lost  {reason, position}: messages may be missing; reload the view from history
 *   presence         {members: [...], action?, member?}: the presence set changed
 *   stream           {stream, event: "open" | "snapshot" | "chunk"}: a live stream grew
 *   stream_end       {stream, message}: a stream ended; `message` is its durable message
 *   stream_gone      {stream}: a stream vanished without its end reaching us (after a continuity loss)
 *   stream_cancelled the `stream_cancelled` frame (tells a writer to stop)
 *   room             a live `room` frame: the room's title or topic changed
 *   run, claim, request  {run} / {claim} / {request}: agents' work changed (agentchat-runs.js, `agents`)
 *   detached         the server detached us ({code, message})
 */
export class Channel extends Emitter {
  constructor(client, name) {
    super();
    this.client = client;
    this.name = name;
    this.attached = false;
    this._seq = new Sequencer();
    this._epoch = null;
    this.members = new Map();
    this.streams = new Map();
    this.agents = new AgentRoom(name, {
      request: (frame) => client.request(frame),
      changed: (changes) => changes.forEach(({ type, value }) => emit(this, type, { [type]: value })),
    });
    this._wanted = false;
    this._withPresence = true;
    this._presenceData = undefined;
    this._presenceReset = false;
    this._attachWaiters = [];
  }

  /** {serial, epoch} of the last durable message delivered, or null before the first attach. */
  get position() {
    return this._seq.position === null ? null : { serial: this._seq.position, epoch: this._epoch };
  }

  set position(value) {
    this._seq = new Sequencer(value ? value.serial : null);
    this._epoch = value ? value.epoch ?? null : null;
  }

  /**
   * Attaches the channel. `position` (a serial number or {serial, epoch}) replays every durable message
   * after it first; without it delivery starts live. Resolves with the `attached` frame. The client
   * re-attaches by itself after a reconnect, from the last serial it delivered.
   */
  attach({ position = undefined, presence = true } = {}) {
    if (typeof position === "number") position = { serial: position, epoch: null };
    if (position !== undefined) this.position = position ? { ...position } : null;
    this._wanted = true;
    this._withPresence = presence;
    const done = new Promise((resolve, reject) => this._attachWaiters.push({ resolve, reject }));
    if (this.client.state === "connected") this._sendAttach();
    return done;
  }

  /** Detaches and forgets the channel on this client (no re-attach after reconnects). */
  async detach() {
    this._wanted = false;
    this._presenceData = undefined;
    this.client.forget(this);
    const wasAttached = this.attached;
    this.attached = false;
    this.members.clear();
    this.streams.clear();
    if (wasAttached && this.client.state === "connected") {
      return await this.client.request({ type: "detach", channel: this.name });
    }
    return null;
  }

  /**
   * Publishes one durable message (or an ephemeral one with `ephemeral: true`). An `id` is generated when
   * not given, so the retry after a reconnect cannot double it. `thread`: the serial of a root message
   * this is a reply in; `to`: the client ids it is addressed to. Resolves with {serial, id, duplicate}.
   */
  async publish(data, { name, id, reply_to, thread, to, ephemeral = false } = {}) {
    const frame = optional({ type: "publish", channel: this.name, data }, { name, reply_to, thread, to });
    if (ephemeral) frame.ephemeral = true;
    else frame.id = id || randomId(`${this.client.clientId || "c"}-`);
    if (id && ephemeral) frame.id = id;
    const ack = await this.client.request(frame);
    const serial = ack.serials ? ack.serials[0] : null;
    return { serial, id: frame.id ?? null, duplicate: Boolean(ack.duplicates && ack.duplicates.length) };
  }

  /**
   * One page of history: {messages, has_more}. Options as in the protocol: before, after (exclusive
   * serials), limit, direction ("backwards", the default, gives newest first), thread (the replies of
   * one root), view ("all", the default, or "main": top-level messages only, no events).
   */
  async history({ before, after, limit, direction, thread, view } = {}) {
    const frame = optional({ type: "history", channel: this.name }, { before, after, limit, direction, thread, view });
    const ack = await this.client.request(frame);
    return { messages: ack.messages || [], has_more: Boolean(ack.has_more) };
  }

  /** Replaces the data of your message `serial`; resolves {serial, duplicate} of the edit event. */
  async edit(serial, data, { id } = {}) {
    const ack = await this.client.request(optional({ type: "edit", channel: this.name, serial, data }, { id }));
    return { serial: ack.serial ?? null, duplicate: Boolean(ack.duplicate) };
  }

  /** Deletes message `serial` (yours, or any with `moderate`); resolves {serial, duplicate} of the delete event. */
  async delete(serial, { id } = {}) {
    const ack = await this.client.request(optional({ type: "delete", channel: this.name, serial }, { id }));
    return { serial: ack.serial ?? null, duplicate: Boolean(ack.duplicate) };
  }

  /** Adds your `reaction` (one emoji or a short name) to message `serial`; {serial: null} when you had it. */
  async react(serial, reaction) {
    const ack = await this.client.request({ type: "react", channel: this.name, serial, reaction });
    return { serial: ack.serial ?? null };
  }

  /** Takes your `reaction` back from message `serial`; {serial: null} when you had not reacted so. */
  async unreact(serial, reaction) {
    const ack = await this.client.request({ type: "react", channel: this.name, serial, reaction, remove: true });
    return { serial: ack.serial ?? null };
  }

  /** Moves your read mark to `serial` (it never moves back); resolves {serial, moved} with the stored mark. */
  async markRead(serial) {
    const ack = await this.client.request({ type: "read", channel: this.name, serial });
    return { serial: ack.serial, moved: Boolean(ack.moved) };
  }

  /** Enters presence with `data` (kept, and entered again after every re-attach). */
  enter(data = null) {
    this._presenceData = data;
    return this.client.request(this._presenceFrame("enter", data));
  }

  /** Updates this connection's presence data. */
  update(data = null) {
    this._presenceData = data;
    return this.client.request(this._presenceFrame("update", data));
  }

  /** Leaves presence. */
  leave() {
    this._presenceData = undefined;
    return this.client.request({ type: "presence", channel: this.name, action: "leave" });
  }

  /** The presence set as an array of members (one per connection). */
  presence() {
    return [...this.members.values()];
  }

  /** Asks for a live stream to stop; it ends `cancelled` with the text so far. Resolves with {serial}. */
  async cancelStream(streamId) {
    const ack = await this.client.request({ type: "stream_cancel", stream_id: streamId });
    return { serial: ack.serial ?? null };
  }

  /** Answers input request `requestId` ("approve", "deny", or "data" with `data`); see AgentRoom.answer. */
  answer(requestId, outcome, data = undefined) {
    return this.agents.answer(requestId, outcome, data);
  }

  /** Stops a run (it ends `cancelled`, with you as `cancelled_by`); resolves with the ack. */
  cancelRun(runId) {
    return this.client.request({ type: "run_cancel", run_id: runId });
  }

  /** The claims held now ({after?}), and input requests ({status?, mine?, after?, limit?}), taken into
   * `agents` too; resolve {claims, has_more} and {requests, has_more}. */
  claims(options) {
    return this.agents.fetchClaims(options);
  }

  requests(options) {
    return this.agents.fetchRequests(options);
  }

  /**
   * Opens a token stream written by this client; resolves with a StreamWriter. Options: name, reply_to,
   * thread, id (idempotency key of the final message), meta, format ("text" | "json").
   */
  async openStream({ name, reply_to, thread, id, meta, format = "text" } = {}) {
    const frame = optional({ type: "stream_open", channel: this.name, format }, { name, reply_to, thread, id, meta });
    const ack = await this.client.request(frame);
    return new StreamWriter(this, ack.stream_id, format);
  }

  // --- what the client tells its channels -----------------------------------------------------------

  /** The connection is up (after every connect): attach again if wanted. Called by AgentChat. */
  linkUp() {
    if (this._wanted) this._sendAttach();
  }

  /** The connection dropped. Called by AgentChat. */
  linkDown() {
    this.attached = false;
  }

  /** Handles one server frame for this channel. Called by AgentChat (tests may feed frames too). */
  receive(frame) {
    switch (frame.type) {
      case "attached":
        this._onAttached(frame);
        break;
      case "detached":
        this.attached = false;
        if (frame.ref === undefined || frame.ref === null) {
          this._wanted = false;
          this.client.forget(this);
          emit(this, "detached", frame);
        }
        break;
      case "message":
        this._onMessage(frame);
        break;
      case "presence_sync":
        this._onPresenceSync(frame);
        break;
      case "presence":
        this._onPresence(frame);
        break;
      case "stream_open":
      case "stream_snapshot":
        this._onStreamStart(frame);
        break;
      case "stream_chunk":
        this._onChunk(frame);
        break;
      case "stream_cancelled":
        emit(this, "stream_cancelled", frame);
        break;
      case "room":
        emit(this, "room", frame);
        break;
      case "run_status":
      case "run_snapshot":
      case "run_state":
      case "claim":
        this.agents.frame(frame);
        break;
      default:
        break;
    }
  }

  // --- internals ----------------------------------------------------------------------------------

  _presenceFrame(action, data) {
    const frame = { type: "presence", channel: this.name, action, data };
    // After a session we could not resume, our entry of that session leaves at once instead of
    // lapsing later: a person is never listed twice.
    const lost = this.client.lostSession;
    if (lost) frame.replaces = lost;
    return frame;
  }

  _sendAttach({ repair = false } = {}) {
    const frame = { type: "attach", channel: this.name, presence: this._withPresence };
    const position = this.position;
    if (position) {
      frame.position = { serial: position.serial };
      if (position.epoch) frame.position.epoch = position.epoch;
    }
    this.client.request(frame).then(
      () => {},
      (err) => {
        const waiters = this._attachWaiters.splice(0);
        for (const w of waiters) w.reject(err);
      },
    );
    // A repair re-attaches on the same connection: presence is still entered there.
    if (!repair && this._presenceData !== undefined) {
      this.client.request(this._presenceFrame("enter", this._presenceData)).catch((err) => emit(this.client, "error", err));
    }
  }

  _onAttached(frame) {
    this.attached = true;
    const at = frame.position || null;
    const resumed = frame.resumed !== false;
    // Replayed messages run up to the frame's position; ours advances as they are delivered.
    if (at) this._seq.attached(at.serial, resumed);
    if (at && (!resumed || this._epoch === null)) this._epoch = at.epoch ?? null;
    if (!resumed) {
      this._dropStreams();
      emit(this, "continuity_lost", { reason: frame.reason || null, position: this.position });
    }
    this._presenceReset = true;
    for (const stream of this.streams.values()) stream.stale = true;
    const waiters = this._attachWaiters.splice(0);
    for (const w of waiters) w.resolve(frame);
    emit(this, "attached", frame);
  }

  _onMessage(frame) {
    if (frame.serial !== null && frame.serial !== undefined && !frame.ephemeral) {
      const verdict = this._seq.offer(frame.serial);
      if (verdict === "gap") {
        // The server promises no gaps; never skip one: attach again from our position and hold
        // newer serials until the reply, the replay brings them in order.
        console.warn(`agentchat: ${this.name} jumped from ${this._seq.position} to ${frame.serial}; re-attaching`);
        if (this.client.state === "connected") this._sendAttach({ repair: true });
        return;
      }
      if (verdict !== "deliver") return;
      if (frame.action) {
        emit(this, "event", frame);
        return;
      }
    }
    if (frame.stream_id) {
      const stream = this.streams.get(frame.stream_id);
      if (stream) {
        this.streams.delete(frame.stream_id);
        stream.finish(frame);
      }
      this.agents.learn(frame);
      emit(this, "message", frame);
      emit(this, "stream_end", { stream: stream || null, message: frame });
      return;
    }
    if (!frame.ephemeral) this.agents.learn(frame);
    emit(this, "message", frame);
  }

  _onPresenceSync(frame) {
    if (this._presenceReset) {
      this._presenceReset = false;
      this.members.clear();
      // Snapshots of open streams come before presence: any stream not refreshed by now is gone.
      for (const stream of [...this.streams.values()]) {
        if (stream.stale) {
          this.streams.delete(stream.stream_id);
          emit(this, "stream_gone", { stream });
        }
      }
    }
    for (const member of frame.members || []) this.members.set(member.connection_id, member);
    if (frame.last !== false) emit(this, "presence", { members: this.presence() });
  }

  _onPresence(frame) {
    const member = frame.member;
    if (!member) return;
    if (frame.action === "leave") this.members.delete(member.connection_id);
    else this.members.set(member.connection_id, member);
    emit(this, "presence", { members: this.presence(), action: frame.action, member });
  }

  _onStreamStart(frame) {
    let stream = this.streams.get(frame.stream_id);
    const isSnapshot = frame.type === "stream_snapshot";
    if (!stream) {
      stream = new LiveStream(frame);
      this.streams.set(frame.stream_id, stream);
    }
    stream.stale = false;
    if (isSnapshot) stream.adopt(frame.content, frame.next);
    emit(this, "stream", { stream, event: isSnapshot ? "snapshot" : "open" });
    this.agents.stream(stream);
  }

  _onChunk(frame) {
    const stream = this.streams.get(frame.stream_id);
    if (!stream) return; // its snapshot comes with the next attach
    if (!stream.add(frame.i, frame.d)) return;
    emit(this, "stream", { stream, event: "chunk" });
    this.agents.stream(stream);
  }

  _dropStreams() {
    for (const stream of this.streams.values()) emit(this, "stream_gone", { stream });
    this.streams.clear();
  }
}
