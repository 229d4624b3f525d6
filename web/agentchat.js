// agentchat.js: a small browser client for the agentchat wire protocol (JSON frames over WebSocket).
//
// Rules, in plain words (docs/protocol.md is the contract, docs/web.md the API guide):
// - One AgentChat owns one WebSocket at a time. It reconnects by itself after a drop, resuming the
//   session (session_id + key, optionally kept in sessionStorage so a page reload resumes too).
// - Channels belong to the client object, attachments to the connection: after every (re)connect each
//   wanted channel is attached again with its position, so durable messages arrive in serial order with
//   no gap and no duplicate. When the server cannot keep continuity the channel says so
//   ("continuity_lost") and the app must reload its view from history.
// - Requests carry a `ref` and settle when their reply arrives. A request in flight when the connection
//   drops is sent again after the reconnect: every request the protocol defines is safe to repeat
//   (publishes carry an idempotency `id`, chunks an index), so nothing is lost or doubled.
// - Live streams are assembled here: snapshot content plus chunks in index order, chunks below what we
//   have are ignored. The durable message carrying the stream id replaces the live preview.
// - No dependencies, no build step, no network access except the WebSocket URL it is given.

export const PROTOCOL_VERSION = 1;

/**
 * What a client does after its WebSocket closes, per close code: "resume" (reconnect with back-off,
 * resume the session), "renew" (get a fresh token first, then resume; stop without a way to get one),
 * "stop" (reconnecting cannot help). The same table as docs/protocol.md ("WebSocket close codes") and
 * agentchat_server.protocol.RECONNECT_POLICY; tests/vectors/reconnect.json checks all of them.
 */
export const RECONNECT_POLICY = Object.freeze({
  1000: "stop",
  1001: "resume",
  1006: "resume",
  1009: "stop",
  1011: "resume",
  1012: "resume",
  4000: "resume",
  4002: "stop",
  4003: "renew",
  4004: "stop",
  4005: "stop",
  4006: "resume",
  4008: "resume",
  4009: "resume",
  4010: "stop",
});
/** The action for a code not in the table, and for a socket that dropped without a close code. */
export const DEFAULT_RECONNECT = "resume";

/** The action after a close with `code` (null or undefined: dropped without a close frame). */
export function reconnectPolicy(code) {
  if (code === null || code === undefined) return DEFAULT_RECONNECT;
  return Object.prototype.hasOwnProperty.call(RECONNECT_POLICY, code) ? RECONNECT_POLICY[code] : DEFAULT_RECONNECT;
}

const CLOSE_TAKEN_OVER = 4010;
/** Our own close code when the server went silent; any 4xxx code is allowed to a client. */
const CLOSE_DEAD_LINK = 4000;

/**
 * The ordering rule for a reader of one channel's durable messages (agentchat_server.protocol.Sequencer
 * states it; tests/vectors/ordering.json holds the cases):
 * - `position` is the serial of the last durable message delivered (null before any).
 * - A serial at or below the position is a "duplicate": dropped.
 * - position + 1 (or any serial without a position) is delivered ("deliver") and becomes the position.
 * - A serial beyond position + 1 is a "gap": never accepted. The reader attaches again from its position
 *   (the server replays what follows) and drops ("hold") every newer serial until that attach is
 *   answered; the replay brings them again, in order.
 * - `attached(serial, resumed)`: an `attached` frame ends the recovery; with resumed false (continuity
 *   lost) or without a position yet, the position becomes the frame's.
 */
export class Sequencer {
  constructor(position = null) {
    this.position = position;
    this.recovering = false;
  }

  /** Judges one durable serial: "deliver", "duplicate", "gap" or "hold". deliver and gap change the state. */
  offer(serial) {
    if (this.position !== null && serial <= this.position) return "duplicate";
    if (this.recovering) return "hold";
    if (this.position === null || serial === this.position + 1) {
      this.position = serial;
      return "deliver";
    }
    this.recovering = true;
    return "gap";
  }

  /** An `attached` frame arrived for the channel at `serial`. */
  attached(serial, resumed) {
    if (!resumed || this.position === null) this.position = serial;
    this.recovering = false;
  }
}

/** A refused request (`nack`), a server `error`, or a request abandoned because the client closed. */
export class AgentChatError extends Error {
  constructor(code, message, frame = null) {
    super(message);
    this.name = "AgentChatError";
    this.code = code;
    this.frame = frame;
  }
}

function randomId(prefix) {
  const bytes = new Uint8Array(9);
  crypto.getRandomValues(bytes);
  let out = "";
  for (const b of bytes) out += b.toString(36).padStart(2, "0");
  return `${prefix}${out}`;
}

function emit(target, type, detail) {
  target.dispatchEvent(new CustomEvent(type, { detail }));
}

/** Adds `on(type, fn)` returning an unsubscribe function, on top of EventTarget. */
class Emitter extends EventTarget {
  on(type, handler) {
    const listener = (event) => handler(event.detail, event);
    this.addEventListener(type, listener);
    return () => this.removeEventListener(type, listener);
  }
}

/** The WebSocket URL of the server that served this page: ws(s)://host/v1/ws?format=json. */
export function defaultUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/v1/ws?format=json`;
}

/**
 * A connection to an agentchat server.
 *
 * options:
 *   url        WebSocket URL (default: this page's server, `/v1/ws?format=json`)
 *   token      a JWT string, or an async function returning one (called on every connect and on
 *              `auth_renew`, so it can fetch a fresh token)
 *   storage    optional Storage-like object (e.g. window.sessionStorage) to keep the session for a reload
 *   storageKey key under which the session is kept (default "agentchat.session")
 *   takeover   what to do when another connection resumes our session (close 4010):
 *              "stop" (protocol default) or "fresh" (start a new session, e.g. for a duplicated tab)
 *   minDelay, maxDelay  reconnect back-off bounds in ms (default 250 and 10000)
 *   WebSocket  WebSocket implementation (default globalThis.WebSocket)
 *
 * Events (use `client.on(type, fn)`; fn receives the detail):
 *   state      {state, code?, reason?}: state is connecting | connected | reconnecting | closed
 *   connected  the `connected` frame (`resumed` says whether the session continued)
 *   session_lost  {reason}: we asked to resume and the server made a new session
 *   auth_renew the `auth_renew` frame (already handled when `token` is a function)
 *   error      an AgentChatError from an `error` frame or a failed token fetch
 *   frame      every frame received (for debugging)
 */
export class AgentChat extends Emitter {
  constructor(options = {}) {
    super();
    this.url = options.url || defaultUrl();
    this._token = options.token;
    this._storage = options.storage || null;
    this._storageKey = options.storageKey || "agentchat.session";
    this._takeover = options.takeover || "stop";
    this._minDelay = options.minDelay ?? 250;
    this._maxDelay = options.maxDelay ?? 10000;
    this._WebSocket = options.WebSocket || globalThis.WebSocket;

    this.state = "idle";
    this.session = this._loadSession(); // {session_id, key} or null
    this.resumed = false; // whether the last connect continued the previous session
    this.clientId = null;
    this.kind = null;
    this.limits = {};
    this.heartbeatInterval = 15;
    this.expiresAt = null;

    this._ws = null;
    this._channels = new Map();
    this._nextRef = 1;
    this._pending = new Map(); // ref -> {frame, resolve, reject, sent}
    this._attempt = 0;
    this._timer = null;
    this._heartbeat = null;
    this._lastSent = 0;
    this._lastReceived = 0;
    this._wantOpen = false;
    this._onOnline = () => {
      if (this.state === "reconnecting") this._reconnectNow();
    };
  }

  /** Opens the connection; resolves with the `connected` frame of the first successful connect. */
  connect() {
    if (this.state === "closed" || this.state === "idle") {
      this._wantOpen = true;
      if (typeof window !== "undefined") window.addEventListener("online", this._onOnline);
      this._setState("connecting");
      this._open();
    }
    if (this.state === "connected") return Promise.resolve(this._connectedFrame);
    return new Promise((resolve, reject) => {
      const offOk = this.on("connected", (frame) => {
        offOk();
        offState();
        resolve(frame);
      });
      const offState = this.on("state", ({ state, code, reason }) => {
        if (state !== "closed") return;
        offOk();
        offState();
        reject(new AgentChatError(code || 0, reason || "connection closed"));
      });
    });
  }

  /** Closes for good (no reconnect). Pending requests are rejected. The session stays resumable. */
  close() {
    this._wantOpen = false;
    if (typeof window !== "undefined") window.removeEventListener("online", this._onOnline);
    clearTimeout(this._timer);
    this._stopHeartbeat();
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      this._detachSocket(ws);
      try {
        ws.close(1000, "client closed");
      } catch (_) {
        /* already closed */
      }
    }
    for (const [ref, pending] of this._pending) {
      this._pending.delete(ref);
      pending.reject(new AgentChatError(0, "client closed"));
    }
    this._setState("closed", { code: 1000, reason: "client closed" });
  }

  /** Forgets the stored session, so the next connect starts a new one. */
  forgetSession() {
    this.session = null;
    if (this._storage) this._storage.removeItem(this._storageKey);
  }

  /** The Channel object for `name` (created on first use; call `attach()` to receive from it). */
  channel(name) {
    let channel = this._channels.get(name);
    if (!channel) {
      channel = new Channel(this, name);
      this._channels.set(name, channel);
    }
    return channel;
  }

  /**
   * Sends a request frame with a fresh `ref`; resolves with the `ack` (or `attached`/`detached`) frame,
   * rejects with an AgentChatError on `nack`. While disconnected the request waits and is sent after the
   * reconnect; a request in flight during a drop is sent again (all protocol requests are idempotent).
   */
  request(frame) {
    const ref = this._nextRef++;
    const full = { ...frame, ref };
    return new Promise((resolve, reject) => {
      this._pending.set(ref, { frame: full, resolve, reject, sent: false });
      if (this.state === "connected") this._sendPending(ref);
    });
  }

  /** Sends a frame without a ref (no reply unless it fails). Dropped when not connected. */
  send(frame) {
    if (this.state !== "connected" || !this._ws) return false;
    this._write(frame);
    return true;
  }

  // --- connection ---------------------------------------------------------------------------------

  async _open() {
    clearTimeout(this._timer);
    if (this._opening || this._ws) return; // one connection attempt at a time
    this._opening = true;
    let token;
    try {
      token = await this._fetchToken();
    } catch (err) {
      this._opening = false;
      emit(this, "error", new AgentChatError(0, `cannot get a token: ${err.message || err}`));
      this._scheduleReconnect(0, "no token");
      return;
    }
    this._opening = false;
    if (!this._wantOpen) return;
    let ws;
    try {
      ws = new this._WebSocket(this.url);
    } catch (err) {
      this._scheduleReconnect(0, String(err.message || err));
      return;
    }
    this._ws = ws;
    this._askedResume = Boolean(this.session);
    ws.onopen = () => {
      if (ws !== this._ws) return;
      const connect = { type: "connect", token };
      if (this.session) connect.resume = { session_id: this.session.session_id, key: this.session.key };
      this._write(connect);
    };
    ws.onmessage = (event) => {
      if (ws !== this._ws) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch (_) {
        return;
      }
      this._lastReceived = Date.now();
      this._onFrame(frame);
      // Background tabs run timers rarely, but network events still arrive: answer the server's
      // heartbeat from here too, so a hidden tab is not closed for silence.
      if (frame.type === "heartbeat" && this._ws === ws && this.state === "connected") this._write({ type: "ping" });
    };
    ws.onclose = (event) => {
      if (ws !== this._ws) return;
      this._onClose(event.code, event.reason);
    };
    ws.onerror = () => {
      /* a close event follows */
    };
  }

  async _fetchToken() {
    if (typeof this._token === "function") return await this._token();
    if (!this._token) throw new Error("no token given");
    return this._token;
  }

  _detachSocket(ws) {
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
  }

  _onClose(code, reason) {
    const ws = this._ws;
    if (ws) this._detachSocket(ws);
    this._ws = null;
    this._stopHeartbeat();
    for (const [ref, pending] of this._pending) {
      const type = pending.frame.type;
      if (type === "attach" || type === "detach") {
        // Attachments belong to the connection: channels re-attach on the next connect by themselves.
        this._pending.delete(ref);
        if (type === "detach") pending.resolve(null);
      } else if (type === "auth") {
        this._pending.delete(ref);
        pending.reject(new AgentChatError(0, "connection lost before the token was renewed"));
      } else {
        pending.sent = false;
      }
    }
    for (const channel of this._channels.values()) channel._onDisconnect();
    if (!this._wantOpen) return;
    const action = reconnectPolicy(code);
    if (code === CLOSE_TAKEN_OVER && this._takeover === "fresh") {
      this.forgetSession();
    } else if (action === "stop" || (action === "renew" && typeof this._token !== "function")) {
      this._wantOpen = false;
      for (const [ref, pending] of this._pending) {
        this._pending.delete(ref);
        pending.reject(new AgentChatError(code, reason || "connection closed"));
      }
      this._setState("closed", { code, reason });
      return;
    }
    this._scheduleReconnect(code, reason);
  }

  _scheduleReconnect(code, reason) {
    if (!this._wantOpen) return;
    const base = Math.min(this._maxDelay, this._minDelay * 2 ** this._attempt);
    const delay = this._attempt === 0 ? this._minDelay * Math.random() : base * (0.5 + Math.random() / 2);
    this._attempt += 1;
    this._setState("reconnecting", { code, reason, attempt: this._attempt, delay });
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._open(), delay);
  }

  _reconnectNow() {
    clearTimeout(this._timer);
    this._open();
  }

  _setState(state, extra = {}) {
    this.state = state;
    emit(this, "state", { state, ...extra });
  }

  _write(frame) {
    this._lastSent = Date.now();
    this._ws.send(JSON.stringify(frame));
  }

  _sendPending(ref) {
    const pending = this._pending.get(ref);
    if (!pending || pending.sent || !this._ws) return;
    pending.sent = true;
    this._write(pending.frame);
  }

  // --- frames -------------------------------------------------------------------------------------

  _onFrame(frame) {
    emit(this, "frame", frame);
    switch (frame.type) {
      case "connected":
        this._onConnected(frame);
        return;
      case "ack":
      case "nack":
        this._settle(frame);
        return;
      case "heartbeat":
        return;
      case "auth_renew":
        this._renew(frame);
        return;
      case "error":
        emit(this, "error", new AgentChatError(frame.code, frame.message, frame));
        return;
      default:
        break;
    }
    if (frame.ref !== undefined && frame.ref !== null) this._settle(frame);
    const channel = frame.channel !== undefined ? this._channels.get(frame.channel) : undefined;
    if (channel) channel._onFrame(frame);
  }

  _settle(frame) {
    const pending = this._pending.get(frame.ref);
    if (!pending) return;
    this._pending.delete(frame.ref);
    if (frame.type === "nack") pending.reject(new AgentChatError(frame.code, frame.message, frame));
    else pending.resolve(frame);
  }

  _onConnected(frame) {
    this._connectedFrame = frame;
    this._attempt = 0;
    this.session = { session_id: frame.session_id, key: frame.key };
    if (this._storage) this._storage.setItem(this._storageKey, JSON.stringify(this.session));
    this.clientId = frame.client_id;
    this.kind = frame.kind;
    this.limits = frame.limits || {};
    this.heartbeatInterval = frame.heartbeat_interval || 15;
    this.expiresAt = frame.expires_at ?? null;
    this.resumed = Boolean(frame.resumed);
    if (this._askedResume && !frame.resumed) emit(this, "session_lost", { reason: frame.reason || null });
    this._setState("connected", { resumed: Boolean(frame.resumed) });
    // Attach frames go first: the server handles one connection's frames in order, so the requests
    // flushed after them (publishes, presence) find their channels attached.
    for (const channel of this._channels.values()) channel._onConnected();
    for (const ref of [...this._pending.keys()]) this._sendPending(ref);
    this._startHeartbeat();
    emit(this, "connected", frame);
  }

  async _renew(frame) {
    emit(this, "auth_renew", frame);
    if (typeof this._token !== "function") return;
    try {
      const token = await this._token();
      const ack = await this.request({ type: "auth", token });
      this.expiresAt = ack.expires_at ?? this.expiresAt;
    } catch (err) {
      emit(this, "error", err instanceof AgentChatError ? err : new AgentChatError(0, String(err)));
    }
  }

  _startHeartbeat() {
    this._stopHeartbeat();
    const interval = this.heartbeatInterval * 1000;
    this._lastReceived = Date.now();
    this._heartbeat = setInterval(() => {
      const now = Date.now();
      if (now - this._lastReceived > 2 * interval) {
        // The link is dead without a close event (sleeping laptop, lost Wi-Fi): drop it ourselves.
        const ws = this._ws;
        if (ws) {
          this._detachSocket(ws);
          try {
            ws.close(CLOSE_DEAD_LINK, "heartbeat timeout");
          } catch (_) {
            /* ignore */
          }
        }
        this._onClose(CLOSE_DEAD_LINK, "heartbeat timeout");
        return;
      }
      if (now - this._lastSent >= interval / 2 && this._ws) this._write({ type: "ping" });
    }, Math.max(250, interval / 4));
  }

  _stopHeartbeat() {
    clearInterval(this._heartbeat);
    this._heartbeat = null;
  }

  _loadSession() {
    if (!this._storage) return null;
    try {
      const value = JSON.parse(this._storage.getItem(this._storageKey) || "null");
      return value && value.session_id && value.key ? value : null;
    } catch (_) {
      return null;
    }
  }
}

/**
 * One channel of a client. Create it with `client.channel(name)`.
 *
 * Properties: name, attached (bool), position ({serial, epoch} of the last durable message delivered),
 * members (Map connection_id -> presence member), streams (Map stream_id -> LiveStream).
 *
 * Events (use `channel.on(type, fn)`):
 *   attached         the `attached` frame (after every (re)attach)
 *   message          a message frame: durable ones in serial order without duplicates, ephemeral ones live
 *   continuity_lost  {reason, position}: messages may be missing; reload the view from history
 *   presence         {members: [...], action?, member?}: the presence set changed
 *   stream           {stream, event: "open" | "snapshot" | "chunk"}: a live stream grew
 *   stream_end       {stream, message}: a stream ended; `message` is its durable message
 *   stream_gone      {stream}: a stream vanished without its end reaching us (after a continuity loss)
 *   stream_cancelled the `stream_cancelled` frame (tells a writer to stop)
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
    this.client._channels.delete(this.name);
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
   * not given, so the retry after a reconnect cannot double it. Resolves with {serial, id, duplicate}.
   */
  async publish(data, { name = undefined, id = undefined, reply_to = undefined, ephemeral = false } = {}) {
    const frame = { type: "publish", channel: this.name, data };
    if (name !== undefined) frame.name = name;
    if (reply_to !== undefined && reply_to !== null) frame.reply_to = reply_to;
    if (ephemeral) frame.ephemeral = true;
    else frame.id = id || randomId(`${this.client.clientId || "c"}-`);
    if (id && ephemeral) frame.id = id;
    const ack = await this.client.request(frame);
    const serial = ack.serials ? ack.serials[0] : null;
    return { serial, id: frame.id ?? null, duplicate: Boolean(ack.duplicates && ack.duplicates.length) };
  }

  /**
   * One page of history: {messages, has_more}. Options as in the protocol: before, after (exclusive
   * serials), limit, direction ("backwards", the default, gives newest first).
   */
  async history({ before, after, limit, direction } = {}) {
    const frame = { type: "history", channel: this.name };
    if (before !== undefined && before !== null) frame.before = before;
    if (after !== undefined && after !== null) frame.after = after;
    if (limit !== undefined) frame.limit = limit;
    if (direction !== undefined) frame.direction = direction;
    const ack = await this.client.request(frame);
    return { messages: ack.messages || [], has_more: Boolean(ack.has_more) };
  }

  /** Enters presence with `data` (kept, and entered again after every re-attach). */
  enter(data = null) {
    this._presenceData = data;
    return this.client.request({ type: "presence", channel: this.name, action: "enter", data });
  }

  /** Updates this connection's presence data. */
  update(data = null) {
    this._presenceData = data;
    return this.client.request({ type: "presence", channel: this.name, action: "update", data });
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

  /**
   * Opens a token stream written by this client; resolves with a StreamWriter.
   * Options: name, reply_to, id (idempotency key of the final message), meta, format ("text" | "json").
   */
  async openStream({ name, reply_to, id, meta, format = "text" } = {}) {
    const frame = { type: "stream_open", channel: this.name, format };
    if (name !== undefined) frame.name = name;
    if (reply_to !== undefined && reply_to !== null) frame.reply_to = reply_to;
    if (id !== undefined) frame.id = id;
    if (meta !== undefined) frame.meta = meta;
    const ack = await this.client.request(frame);
    return new StreamWriter(this, ack.stream_id, format);
  }

  // --- internals ----------------------------------------------------------------------------------

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
      this.client
        .request({ type: "presence", channel: this.name, action: "enter", data: this._presenceData })
        .catch((err) => emit(this.client, "error", err));
    }
  }

  _onConnected() {
    if (this._wanted) this._sendAttach();
  }

  _onDisconnect() {
    this.attached = false;
  }

  _onFrame(frame) {
    switch (frame.type) {
      case "attached":
        this._onAttached(frame);
        break;
      case "detached":
        this.attached = false;
        if (frame.ref === undefined || frame.ref === null) {
          this._wanted = false;
          this.client._channels.delete(this.name);
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
      default:
        break;
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
    for (const stream of this.streams.values()) stream._stale = true;
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
    }
    if (frame.stream_id) {
      const stream = this.streams.get(frame.stream_id);
      if (stream) {
        this.streams.delete(frame.stream_id);
        stream.status = frame.status || "complete";
        stream.content = frame.data;
        stream.message = frame;
      }
      emit(this, "message", frame);
      emit(this, "stream_end", { stream: stream || null, message: frame });
      return;
    }
    emit(this, "message", frame);
  }

  _onPresenceSync(frame) {
    if (this._presenceReset) {
      this._presenceReset = false;
      this.members.clear();
      // Snapshots of open streams come before presence: any stream not refreshed by now is gone.
      for (const stream of [...this.streams.values()]) {
        if (stream._stale) {
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
    stream._stale = false;
    if (isSnapshot && frame.next > stream.next) {
      stream.content = frame.format === "json" ? [...(frame.content || [])] : frame.content || "";
      stream.next = frame.next;
      stream._drain();
    }
    emit(this, "stream", { stream, event: isSnapshot ? "snapshot" : "open" });
  }

  _onChunk(frame) {
    const stream = this.streams.get(frame.stream_id);
    if (!stream) return; // its snapshot comes with the next attach
    if (stream._add(frame.i, frame.d)) emit(this, "stream", { stream, event: "chunk" });
  }

  _dropStreams() {
    for (const stream of this.streams.values()) emit(this, "stream_gone", { stream });
    this.streams.clear();
  }
}

/**
 * The live state of a stream being read: stream_id, channel, client_id, kind, name, reply_to, meta,
 * format, ts, content (text so far, or the list of JSON chunks), next (index of the next chunk),
 * status ("open", then "complete" | "cancelled" | "aborted"), message (the final durable message).
 */
export class LiveStream {
  constructor(frame) {
    this.stream_id = frame.stream_id;
    this.channel = frame.channel;
    this.client_id = frame.client_id;
    this.kind = frame.kind;
    this.name = frame.name;
    this.reply_to = frame.reply_to ?? null;
    this.meta = frame.meta ?? null;
    this.format = frame.format || "text";
    this.ts = frame.ts;
    this.content = this.format === "json" ? [] : "";
    this.next = 0;
    this.status = "open";
    this.message = null;
    this._early = new Map(); // chunks that arrived ahead of a gap, bounded below
    this._stale = false;
  }

  /** Text of the stream so far (JSON chunks are shown as JSON). */
  text() {
    return typeof this.content === "string" ? this.content : JSON.stringify(this.content);
  }

  _add(i, d) {
    if (i < this.next) return false; // the snapshot already covered it
    if (i > this.next) {
      if (this._early.size < 1000) this._early.set(i, d);
      return false;
    }
    this._append(d);
    this._drain();
    return true;
  }

  _append(d) {
    if (this.format === "json") this.content.push(d);
    else this.content += typeof d === "string" ? d : JSON.stringify(d);
    this.next += 1;
  }

  _drain() {
    for (const i of [...this._early.keys()]) if (i < this.next) this._early.delete(i);
    while (this._early.has(this.next)) {
      const d = this._early.get(this.next);
      this._early.delete(this.next);
      this._append(d);
    }
  }
}

/**
 * Writes a stream opened with `channel.openStream()`: append(d) sends the next chunk, end() finishes it
 * as one durable message, cancel() cancels it. `cancelled` turns true when someone cancels it
 * (the channel's "stream_cancelled" event fires too).
 */
export class StreamWriter {
  constructor(channel, streamId, format) {
    this.channel = channel;
    this.stream_id = streamId;
    this.format = format;
    this.cancelled = false;
    this._chunks = [];
    this._off = channel.on("stream_cancelled", (frame) => {
      if (frame.stream_id === streamId) this.cancelled = true;
    });
  }

  /** Sends the next chunk (a string for text streams). Resolves when the server accepted it. */
  append(d) {
    const i = this._chunks.length;
    this._chunks.push(d);
    return this.channel.client.request({ type: "stream_append", stream_id: this.stream_id, i, d });
  }

  /** Ends the stream (status "complete" or "cancelled"); resolves with {serial} of the final message. */
  async end({ status = "complete", data = undefined } = {}) {
    this._off();
    const frame = { type: "stream_end", stream_id: this.stream_id, status, chunks: this._chunks.length };
    if (data !== undefined) frame.data = data;
    const ack = await this.channel.client.request(frame);
    return { serial: ack.serial ?? null };
  }

  /** Cancels the stream (the writer may cancel its own). */
  cancel() {
    this._off();
    return this.channel.cancelStream(this.stream_id);
  }
}
