// agentchat.js: a small browser client for the agentchat wire protocol (JSON frames over WebSocket).
//
// Rules, in plain words (docs/protocol.md is the contract, docs/web.md the API guide):
// - One AgentChat owns one WebSocket at a time. It reconnects by itself after a drop, resuming the
//   session (session_id + key, optionally kept in sessionStorage so a page reload resumes too). When
//   the session cannot be resumed, presence is entered again naming the lost session (`replaces`), so
//   its entry leaves at once and nobody is listed twice.
// - Channels belong to the client object, attachments to the connection: after every (re)connect each
//   wanted channel is attached again with its position, so durable messages arrive in serial order with
//   no gap and no duplicate. When the server cannot keep continuity the channel says so
//   ("continuity_lost") and the app must reload its view from history.
// - Requests carry a `ref` and settle when their reply arrives (agentchat-requests.js). A request in
//   flight when the connection drops is sent again after the reconnect: every request the protocol
//   defines is safe to repeat (publishes carry an idempotency `id`, chunks an index, edits and
//   reactions name their change), so nothing is lost or doubled.
// - No dependencies, no build step, no network access except the WebSocket URL it is given. The client
//   is this module and its agentchat-*.js parts; import this one.

import { AgentChatError, Emitter, emit } from "./agentchat-base.js";
import { Channel } from "./agentchat-channel.js";
import { Requests } from "./agentchat-requests.js";
import { reconnectPolicy } from "./agentchat-rules.js";

export { AgentChatError } from "./agentchat-base.js";
export { Channel } from "./agentchat-channel.js";
export { applyEvent, countReply } from "./agentchat-events.js";
export { applyPatch } from "./agentchat-patch.js";
export { AgentRoom, isTerminal } from "./agentchat-runs.js";
export { DEFAULT_RECONNECT, RECONNECT_POLICY, Sequencer, reconnectPolicy } from "./agentchat-rules.js";
export { LiveStream, StreamWriter } from "./agentchat-streams.js";

export const PROTOCOL_VERSION = 1;

const CLOSE_TAKEN_OVER = 4010;
/** Our own close code when the server went silent; any 4xxx code is allowed to a client. */
const CLOSE_DEAD_LINK = 4000;

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
 *   session_lost  {reason, session_id}: we asked to resume session_id and the server made a new session
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
    this.lostSession = null; // the session the last connect could not resume (presence `replaces` it)
    this.clientId = null;
    this.kind = null;
    this.limits = {};
    this.heartbeatInterval = 15;
    this.expiresAt = null;

    this._ws = null;
    this._channels = new Map();
    this._requests = new Requests((frame) => {
      if (!this._ws) return false;
      this._write(frame);
      return true;
    });
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
    this._requests.rejectAll(new AgentChatError(0, "client closed"));
    this._setState("closed", { code: 1000, reason: "client closed" });
  }

  /**
   * Your unread and mention counts: for `channels` (1-100 names; a channel without a read mark counts
   * from its start), or else a page of the channels where you have a read mark, by name after `after`.
   * Resolves {channels: [{channel, last_read, last_serial, unread, mentions, capped?}], has_more, next?}.
   */
  async unread({ channels, after } = {}) {
    const frame = { type: "unread" };
    if (channels !== undefined && channels !== null) frame.channels = channels;
    if (after !== undefined && after !== null) frame.after = after;
    const ack = await this.request(frame);
    return { channels: ack.channels || [], has_more: Boolean(ack.has_more), next: ack.next ?? null };
  }

  /**
   * One page of the room directory: the channels your token may subscribe to, in name order after
   * `after`, narrowed by `prefix`. Resolves {rooms: [{channel, title?, topic?, members, last_serial,
   * last_ts?, updated_by?, updated_ts?}], has_more, next?}; a page may be short with has_more true.
   */
  async rooms({ after, prefix, limit } = {}) {
    const frame = { type: "rooms" };
    if (after !== undefined && after !== null) frame.after = after;
    if (prefix !== undefined && prefix !== null) frame.prefix = prefix;
    if (limit !== undefined && limit !== null) frame.limit = limit;
    const ack = await this.request(frame);
    return { rooms: ack.rooms || [], has_more: Boolean(ack.has_more), next: ack.next ?? null };
  }

  /** The directory entry of `channel` (rejects with code 40400 when the server knows no such room). */
  async room(channel) {
    return (await this.request({ type: "room_get", channel })).room;
  }

  /**
   * Sets a room's `title` and `topic` (needs the `manage` right; a field left out stays). With `create`
   * it is refused with 40902 when the room exists already. Resolves with the room's directory entry.
   */
  async setRoom(channel, { title, topic, create = false } = {}) {
    const frame = { type: "room_set", channel };
    if (title !== undefined && title !== null) frame.title = title;
    if (topic !== undefined && topic !== null) frame.topic = topic;
    if (create) frame.create = true;
    return (await this.request(frame)).room;
  }

  /** Forgets a detached channel (called by the Channel), so it is not attached again. */
  forget(channel) {
    if (this._channels.get(channel.name) === channel) this._channels.delete(channel.name);
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
   * reconnect; a request in flight during a drop is sent again (all protocol requests are idempotent). A
   * read (history, rooms, unread, room_get, presence_get, occupancy) refused as one too many in flight
   * (42900) is sent again after the server's `retry_after`.
   */
  request(frame) {
    return this._requests.add(frame, this.state === "connected");
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
    this._requests.linkDown();
    for (const channel of this._channels.values()) channel.linkDown();
    if (!this._wantOpen) return;
    const action = reconnectPolicy(code);
    if (code === CLOSE_TAKEN_OVER && this._takeover === "fresh") {
      this.forgetSession();
    } else if (action === "stop" || (action === "renew" && typeof this._token !== "function")) {
      this._wantOpen = false;
      this._requests.rejectAll(new AgentChatError(code, reason || "connection closed"));
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

  // --- frames -------------------------------------------------------------------------------------

  _onFrame(frame) {
    emit(this, "frame", frame);
    switch (frame.type) {
      case "connected":
        this._onConnected(frame);
        return;
      case "ack":
      case "nack":
        this._requests.settle(frame);
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
    if (frame.ref !== undefined && frame.ref !== null) this._requests.settle(frame);
    const channel = frame.channel !== undefined ? this._channels.get(frame.channel) : undefined;
    if (channel) channel.receive(frame);
  }

  _onConnected(frame) {
    this._connectedFrame = frame;
    this._attempt = 0;
    const asked = this._askedResume && this.session ? this.session.session_id : null;
    this.lostSession = asked && !frame.resumed && asked !== frame.session_id ? asked : null;
    this.session = { session_id: frame.session_id, key: frame.key };
    if (this._storage) this._storage.setItem(this._storageKey, JSON.stringify(this.session));
    this.clientId = frame.client_id;
    this.kind = frame.kind;
    this.limits = frame.limits || {};
    this.heartbeatInterval = frame.heartbeat_interval || 15;
    this.expiresAt = frame.expires_at ?? null;
    this.resumed = Boolean(frame.resumed);
    if (this.lostSession) emit(this, "session_lost", { reason: frame.reason || null, session_id: this.lostSession });
    this._setState("connected", { resumed: Boolean(frame.resumed) });
    // Attach frames go first: the server handles one connection's frames in order, so the requests
    // flushed after them (publishes, presence) find their channels attached.
    for (const channel of this._channels.values()) channel.linkUp();
    this._requests.flush();
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
