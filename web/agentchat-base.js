// agentchat-base.js: the small parts every piece of the agentchat client uses: events, errors and ids.

/** A refused request (`nack`), a server `error`, or a request abandoned because the client closed. */
export class AgentChatError extends Error {
  constructor(code, message, frame = null) {
    super(message);
    this.name = "AgentChatError";
    this.code = code;
    this.frame = frame;
  }
}

/** A random id with `prefix`: 72 random bits in base 36 (idempotency keys of publishes). */
export function randomId(prefix) {
  const bytes = new Uint8Array(9);
  crypto.getRandomValues(bytes);
  let out = "";
  for (const b of bytes) out += b.toString(36).padStart(2, "0");
  return `${prefix}${out}`;
}

/** Dispatches a CustomEvent `type` carrying `detail` on `target`. */
export function emit(target, type, detail) {
  target.dispatchEvent(new CustomEvent(type, { detail }));
}

/** An EventTarget with `on(type, fn)`: fn receives the event's detail; returns the unsubscribe function. */
export class Emitter extends EventTarget {
  on(type, handler) {
    const listener = (event) => handler(event.detail, event);
    this.addEventListener(type, listener);
    return () => this.removeEventListener(type, listener);
  }
}
