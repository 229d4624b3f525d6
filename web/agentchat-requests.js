// agentchat-requests.js: a client's requests in flight: their refs, their replies, and what becomes of
// them when the connection drops or the server asks a read to wait.
//
// Rules: every request gets a fresh `ref` and settles with its reply (`ack`, or `attached`/`detached`)
// or is rejected on `nack`. A request waits while there is no connection and is sent again after a
// drop: every protocol request is idempotent (publishes carry an `id`, chunks an index). Attach and
// detach belong to the connection that carried them: a drop forgets them (the channels attach again by
// themselves). A token renewal in flight fails with the drop. A read refused as one too many in flight
// (42900) is sent again after the server's `retry_after`.

import { AgentChatError } from "./agentchat-base.js";

const RATE_LIMITED = 42900;
/** Requests that only read, retried when refused as one too many in flight. */
const READS = new Set(["history", "rooms", "unread", "room_get", "presence_get", "occupancy", "claims", "requests"]);
const READ_RETRIES = 20;

export class Requests {
  /** write(frame): sends a frame on the connection now; returns false when there is none. */
  constructor(write) {
    this._write = write;
    this._nextRef = 1;
    this._pending = new Map(); // ref -> {frame, resolve, reject, sent, retries}
  }

  /** Adds a request (sent now when `connected`); the promise of its reply. */
  add(frame, connected) {
    const ref = this._nextRef++;
    const full = { ...frame, ref };
    return new Promise((resolve, reject) => {
      this._pending.set(ref, { frame: full, resolve, reject, sent: false, retries: 0 });
      if (connected) this._send(ref);
    });
  }

  /** Sends every request not sent on the current connection (after a connect). */
  flush() {
    for (const ref of [...this._pending.keys()]) this._send(ref);
  }

  /** A reply arrived (`ack`, `nack`, or `attached`/`detached` with a ref): settles its request. */
  settle(frame) {
    const pending = this._pending.get(frame.ref);
    if (!pending) return;
    if (
      frame.type === "nack" &&
      frame.code === RATE_LIMITED &&
      READS.has(pending.frame.type) &&
      pending.retries < READ_RETRIES
    ) {
      // A connection may have only a few reads in flight: this one waits its turn and goes again.
      pending.retries += 1;
      pending.sent = false;
      const wait = Math.min(5, Math.max(0.05, frame.retry_after || 0.2)) * 1000 * (1 + Math.random() / 2);
      setTimeout(() => this._send(frame.ref), wait);
      return;
    }
    this._pending.delete(frame.ref);
    if (frame.type === "nack") pending.reject(new AgentChatError(frame.code, frame.message, frame));
    else pending.resolve(frame);
  }

  /** The connection dropped: attach/detach are forgotten, a renewal fails, the rest go again later. */
  linkDown() {
    for (const [ref, pending] of this._pending) {
      const type = pending.frame.type;
      if (type === "attach" || type === "detach") {
        this._pending.delete(ref);
        if (type === "detach") pending.resolve(null);
      } else if (type === "auth") {
        this._pending.delete(ref);
        pending.reject(new AgentChatError(0, "connection lost before the token was renewed"));
      } else {
        pending.sent = false;
      }
    }
  }

  /** Rejects every request with `error` (the client closed for good). */
  rejectAll(error) {
    for (const [ref, pending] of this._pending) {
      this._pending.delete(ref);
      pending.reject(error);
    }
  }

  _send(ref) {
    const pending = this._pending.get(ref);
    if (!pending || pending.sent) return;
    pending.sent = this._write(pending.frame);
  }
}
