// errors.js: what a refused request means for a person: a sentence with the limit, and whether Retry helps.
//
// Rules: codes from docs/protocol.md. A retry cannot fix a refusal of the content or of your rights
// (too large, not allowed, invalid), so those get no Retry button; transient refusals (rate limit,
// server unavailable, connection lost) keep it. Sizes are measured as the server measures them: the
// UTF-8 bytes of the JSON-encoded data.

const FINAL = new Set([40000, 40002, 40003, 40004, 40005, 40100, 40101, 40102, 40300, 40301, 40400, 40401, 40402, 40900, 40901, 40902, 40904, 41300, 41301, 41302, 42901, 42903, 42904]);

/** Whether trying the same request again can succeed (false for too large, not allowed, invalid...). */
export function retryable(code) {
  return !FINAL.has(Number(code));
}

/** Bytes the server counts for a message's data: its JSON encoding in UTF-8. */
export function dataBytes(data) {
  return new TextEncoder().encode(JSON.stringify(data)).length;
}

/** "80 kB", "900 bytes": sizes as people read them (1 kB = 1024 bytes, as the limits are set). */
export function size(bytes) {
  if (bytes < 1024) return `${bytes} bytes`;
  const kb = bytes / 1024;
  if (kb < 1024) return `${kb < 10 ? kb.toFixed(1).replace(/\.0$/, "") : Math.round(kb)} kB`;
  return `${(kb / 1024).toFixed(1).replace(/\.0$/, "")} MB`;
}

/** The sentence for a publish of `data` that was refused with `err` ({code, message, frame}). */
export function publishProblem(err, data, limits = {}) {
  const code = Number(err.code);
  const bytes = dataBytes(data);
  if (code === 41301 && limits.max_message_bytes) {
    return `Message is ${size(bytes)}; the limit is ${size(limits.max_message_bytes)}.`;
  }
  if (code === 41300 && limits.max_frame_bytes) {
    return `Message is ${size(bytes)}; a frame may be at most ${size(limits.max_frame_bytes)}.`;
  }
  if (code === 40300) return "You are not allowed to post in this room.";
  if (code === 42900) {
    const after = err.frame && err.frame.retry_after;
    return after ? `Too many messages; you can send again in ${Math.ceil(after)} s.` : "Too many messages; wait a moment.";
  }
  if (code === 50300) return "The server is unavailable right now.";
  return err.message ? `Not sent: ${err.message}` : "Not sent.";
}

/** A refusal checked before sending, so an oversized message never leaves the page; null when fine. */
export function precheck(data, limits = {}) {
  const max = limits.max_message_bytes;
  if (max && dataBytes(data) > max) return { code: 41301, message: "message too large", frame: null };
  return null;
}

/** The sentence for a refused Stop. */
export function stopProblem(err) {
  if (Number(err.code) === 40300) return "You are not allowed to stop this answer.";
  return `Could not stop: ${err.message || err.code}`;
}

const REFUSED = {
  edit: "You can only edit your own messages.",
  delete: "Only moderators can delete other people's messages.",
  react: "You are not allowed to react in this room.",
};
const DONE = { edit: "Not edited", delete: "Not deleted", react: "Reaction not saved" };

function waitText(err) {
  const after = err.frame && err.frame.retry_after;
  return after ? `try again in ${Math.ceil(after)} s` : "wait a moment";
}

/** The sentence for a refused edit, delete or reaction (`what`), shown under the message. */
export function messageProblem(err, what, data = null, limits = {}) {
  const code = Number(err.code);
  if (code === 40300) return REFUSED[what];
  if (code === 40904) return what === "react" ? "This message was deleted: it takes no reactions." : "This message was deleted.";
  if (code === 40402) return "This message is no longer there.";
  if (code === 42904) return "This message has all the reactions it can hold.";
  if (code === 42900) return `Too many ${what === "react" ? "reactions" : "changes"} at once; ${waitText(err)}.`;
  if (code === 41301 && limits.max_message_bytes) {
    return `Message is ${size(dataBytes(data))}; the limit is ${size(limits.max_message_bytes)}.`;
  }
  if (code === 40004 && what === "react") return "That is not a reaction: use an emoji or a short name (a-z, 0-9, _ + -).";
  if (code === 50300) return "The server is unavailable right now.";
  return `${DONE[what]}: ${err.message || err.code}`;
}
