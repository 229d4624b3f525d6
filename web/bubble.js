// bubble.js: one message's element: avatar, author, time, reply quote, text, status, edit mark,
// reactions, thread summary and inline problems.
//
// A bubble is built once and refilled in place (final text of a stream, an edit, a reaction, a delete,
// a new name), so the timeline can update a message by serial without moving it. A deleted message is a
// tombstone: "message deleted by …", its author and time kept. `ctx` is what the page knows:
// {names: Names, isMine(clientId), isMe(mentionedName), onQuote(serial), threads, onThread(serial), and
// the reaction and action callbacks of reactions.js and actions.js}.

import { updateActions } from "./actions.js";
import { caretHost, el, excerpt, mentions, renderRich } from "./markdown.js";
import { fillReactions } from "./reactions.js";

export { el };

const STATUS_TITLE = {
  cancelled: "The answer was cancelled before it finished",
  aborted: "The writer went away before finishing; this is the text so far",
  failed: "The writer's model or tool failed; this is the text so far",
};

/** Text shown for a message's data: strings as they are, {text} objects by their text, else JSON. */
export function displayText(data) {
  if (typeof data === "string") return data;
  if (data && typeof data === "object" && typeof data.text === "string") return data.text;
  if (data === null || data === undefined) return "";
  return JSON.stringify(data, null, 2);
}

/** A stable colour for a client id. */
export function hue(clientId) {
  let h = 0;
  for (const ch of clientId || "") h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}

/** An avatar: the first letter of the name (any script, emoji too) on a colour from the client id. */
export function avatar(clientId, kind, name = clientId) {
  const first = [...String(name || "?")][0] || "?";
  const node = el("span", `avatar ${kind === "agent" ? "agent" : ""}`, first.toLocaleUpperCase());
  node.style.setProperty("--h", String(hue(clientId)));
  node.setAttribute("aria-hidden", "true");
  return node;
}

/** "14:05" */
export function shortTime(ts) {
  return new Date(ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/** "Tuesday, 4 March 2025 at 14:05:09" in the reader's locale: shown on hover of every time. */
export function fullTime(ts) {
  return new Date(ts).toLocaleString([], { dateStyle: "full", timeStyle: "medium" });
}

/** The local calendar day of a timestamp, as a sortable key. */
export function dayKey(ts) {
  const d = new Date(ts);
  return d.getFullYear() * 10000 + (d.getMonth() + 1) * 100 + d.getDate();
}

/** "Today", "Yesterday", or the full date of the day of `ts`. */
export function dayLabel(ts, now = Date.now()) {
  const key = dayKey(ts);
  if (key === dayKey(now)) return "Today";
  const yesterday = new Date(now);
  yesterday.setDate(yesterday.getDate() - 1);
  if (key === dayKey(yesterday.getTime())) return "Yesterday";
  return new Date(ts).toLocaleDateString([], { weekday: "long", year: "numeric", month: "long", day: "numeric" });
}

/** A <time> element with the short time, the full date and time on hover. */
export function timeElement(ts) {
  const time = el("time", "", shortTime(ts));
  time.dateTime = new Date(ts).toISOString();
  time.title = fullTime(ts);
  return time;
}

/** Builds the element of a message (durable, live or pending) without its text; fill it with fillBubble. */
export function buildBubble(msg, ctx) {
  const kind = msg.kind || "human";
  const ts = msg.ts || Date.now();
  const node = el("li", `msg ${kind}`);
  node.tabIndex = -1; // a tap focuses it, which shows a grouped message's time and Reply
  if (ctx.isMine(msg.client_id)) node.classList.add("mine");
  node.dataset.client = msg.client_id || "";
  node.dataset.ts = String(ts);
  node.append(avatar(msg.client_id, kind, ctx.names.name(msg.client_id)));
  const body = el("div", "body");
  const meta = el("div", "meta");
  const author = el("span", "author");
  meta.append(author);
  if (kind === "agent") meta.append(el("span", "tag", "agent"));
  else if (kind === "system") meta.append(el("span", "tag", "system"));
  meta.append(timeElement(ts));
  body.append(meta);
  if (msg.reply_to) body.append(quoteElement(msg.reply_to, ctx));
  body.append(el("div", "text"));
  node.append(body);
  labelBubble(node, ctx);
  return node;
}

/** Refreshes the author's label and avatar letter (names are learnt as people come and go). */
export function labelBubble(node, ctx) {
  const clientId = node.dataset.client;
  const author = node.querySelector(".author");
  author.textContent = ctx.names.label(clientId);
  author.title = ctx.names.full(clientId);
  const letter = [...ctx.names.name(clientId)][0] || "?";
  node.querySelector(".avatar").textContent = letter.toLocaleUpperCase();
}

function quoteElement(serial, ctx) {
  const quote = el("button", "reply-to loading");
  quote.type = "button";
  quote.dataset.replyTo = String(serial);
  quote.title = "Show the message this replies to";
  quote.append(el("span", "reply-arrow", "↪"), el("span", "reply-author"), el("span", "reply-text", "…"));
  quote.addEventListener("click", () => ctx.onQuote(serial));
  return quote;
}

/** Shows `original` (a message, or null when it cannot be found) in a reply quote. */
export function fillQuote(quote, original, ctx) {
  quote.classList.remove("loading");
  if (!original) {
    quote.classList.add("missing");
    quote.querySelector(".reply-text").textContent = "a message that is no longer available";
    return;
  }
  quote.querySelector(".reply-author").textContent = ctx.names.label(original.client_id);
  quote.querySelector(".reply-text").textContent = original.deleted
    ? "message deleted"
    : excerpt(displayText(original.data)) || "(no text)";
}

/** "message deleted by Bob" (or "by you"): what a tombstone says. */
export function deletedText(msg, ctx) {
  const by = msg.deleted && msg.deleted.by;
  if (!by) return "message deleted";
  return `message deleted by ${ctx.isMine(by) ? "you" : ctx.names.label(by)}`;
}

/**
 * Fills a bubble from a message ({data, status?, cancelled_by?, edited?, deleted?, reactions?,
 * my_reactions?, replies?}): its text (or tombstone), status, edit mark, reactions and thread summary.
 */
export function fillBubble(node, msg, ctx) {
  const body = node.querySelector(".text");
  node.classList.toggle("deleted", Boolean(msg.deleted));
  if (msg.deleted) {
    body.className = "text";
    body.replaceChildren(el("span", "deleted-note", deletedText(msg, ctx)));
    node.classList.remove("mentions-me");
    fillExtras(node, msg, ctx);
    return;
  }
  const text = displayText(msg.data);
  const json = typeof msg.data === "object" && msg.data !== null && typeof msg.data.text !== "string";
  const status = msg.status || null;
  body.classList.remove("plain", "markdown");
  body.classList.toggle("json", json);
  if (json) body.textContent = text;
  else if (text) body.classList.add(renderRich(body, text, ctx.isMe));
  else body.replaceChildren();
  if (!text && status) body.append(el("span", "empty", "(no text)"));
  node.classList.toggle("mentions-me", !json && mentions(text).some(ctx.isMe));
  node.dataset.status = status || "";
  const meta = node.querySelector(".meta");
  meta.querySelector(".status")?.remove();
  if (status && status !== "complete") {
    const badge = el("span", `status ${status}`, statusLabel(msg, ctx));
    badge.title = STATUS_TITLE[status] || "";
    meta.insertBefore(badge, meta.querySelector(".actions, .stop, .retry"));
  }
  fillExtras(node, msg, ctx);
}

function fillExtras(node, msg, ctx) {
  const text = node.querySelector(".text");
  text.querySelector(".edited")?.remove();
  if (msg.edited && !msg.deleted) {
    // At the end of the text's last line, where a reader finishes reading it.
    const edited = el("span", "edited", "(edited)");
    edited.title = `Edited ${fullTime(msg.edited.ts)}`;
    caretHost(text).append(edited);
  }
  if (typeof msg.serial === "number") {
    fillReactions(node, msg, ctx);
    fillReplies(node, msg, ctx);
    updateActions(node, msg, ctx);
  }
}

/** The thread summary under a root: "3 replies", the last reply's author and time; opens the thread. */
export function fillReplies(node, msg, ctx) {
  let line = node.querySelector(":scope > .body > .replies");
  const replies = msg.replies;
  if (!ctx.threads || !replies || !replies.count) {
    line?.remove();
    return;
  }
  if (!line) {
    line = el("button", "replies");
    line.type = "button";
    line.addEventListener("click", () => ctx.onThread(Number(node.dataset.serial)));
    node.querySelector(".body").insertBefore(line, node.querySelector(":scope > .body > .problem"));
  }
  const parts = [el("span", "replies-count", `${replies.count} repl${replies.count === 1 ? "y" : "ies"}`)];
  const last = replies.last;
  if (last) {
    const who = ctx.isMine(last.client_id) ? "you" : ctx.names.label(last.client_id);
    const when = el("span", "replies-last", `last reply by ${who} `);
    when.append(timeElement(last.ts));
    parts.push(when);
  }
  line.title = "Open the thread";
  line.replaceChildren(...parts);
}

function statusLabel(msg, ctx) {
  if (msg.status === "aborted") return "interrupted";
  if (msg.status === "failed") return `failed: ${(msg.error && msg.error.message) || "error"}`;
  if (msg.status !== "cancelled") return msg.status;
  // cancelled_by (and its display_name) come with servers that record who pressed Stop.
  const by = typeof msg.cancelled_by === "string" ? msg.cancelled_by : "";
  if (!by) return "stopped";
  if (ctx.isMine(by)) return "stopped by you";
  if (by === msg.client_id) return "stopped by its writer";
  return `stopped by ${ctx.names.label(by)}`;
}

/** Shows a problem under a message (a refused send or Stop); `retry` adds a Retry button. */
export function showProblem(node, text, retry = null) {
  node.querySelector(".problem")?.remove();
  const line = el("div", "problem");
  line.setAttribute("role", "alert");
  line.append(el("span", "problem-text", text));
  if (retry) {
    const button = el("button", "retry btn small", "Retry");
    button.type = "button";
    button.addEventListener("click", () => {
      line.remove();
      retry();
    });
    line.append(button);
  }
  node.querySelector(".body").append(line);
}
