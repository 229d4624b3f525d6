// agentchat-rules.js: the rules the browser client shares with the server and the Python SDK, as data:
// what to do after each WebSocket close code, and the ordering rule of a channel's durable messages.
// tests/vectors/reconnect.json and tests/vectors/ordering.json check both (tests/js/).

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
