// timeline.js: the room's message list: durable messages in serial order, live streams and sends below.
//
// Rules: every durable message is shown once, at its serial's place, whatever order history pages,
// replays and live frames bring it in. A live stream's bubble is the same element that later shows its
// durable message, so the answer never jumps or doubles. Message data is only ever set with
// textContent / text nodes (never innerHTML), so nothing a sender writes can run in the page.

const MENTION = /@([A-Za-z0-9][A-Za-z0-9_\-.@]*)/g;
const GROUP_WINDOW_MS = 5 * 60 * 1000;

/** Creates an element with an optional class and text (set with textContent). */
export function el(tag, className = "", text = undefined) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A stable colour for a client id. */
export function hue(clientId) {
  let h = 0;
  for (const ch of clientId || "") h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}

/** An avatar element: initial on a colour from the id; agents get a rounded square. */
export function avatar(clientId, kind) {
  const node = el("span", `avatar ${kind === "agent" ? "agent" : ""}`, (clientId || "?").slice(0, 1).toUpperCase());
  node.style.setProperty("--h", String(hue(clientId)));
  node.setAttribute("aria-hidden", "true");
  return node;
}

/** Appends `text` to `parent` with @mentions wrapped in spans (text nodes only, no HTML parsing). */
export function renderText(parent, text, me) {
  let last = 0;
  for (const match of text.matchAll(MENTION)) {
    let name = match[1];
    while (name.endsWith(".") || name.endsWith("-")) name = name.slice(0, -1);
    const start = match.index;
    const end = start + 1 + name.length;
    if (start > last) parent.append(text.slice(last, start));
    const span = el("span", name === me ? "mention me" : "mention", `@${name}`);
    parent.append(span);
    last = end;
  }
  if (last < text.length) parent.append(text.slice(last));
}

/** The mentions in a text, without the @. */
export function mentions(text) {
  const names = [];
  for (const match of String(text).matchAll(MENTION)) names.push(match[1].replace(/[.-]+$/, ""));
  return names;
}

/** Text shown for a message's data: strings as they are, {text} objects by their text, else JSON. */
export function displayText(data) {
  if (typeof data === "string") return data;
  if (data && typeof data === "object" && typeof data.text === "string") return data.text;
  if (data === null || data === undefined) return "";
  return JSON.stringify(data, null, 2);
}

function timeOf(ts) {
  const date = new Date(ts || Date.now());
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

const STATUS_LABEL = {
  cancelled: "stopped",
  aborted: "interrupted",
};
const STATUS_TITLE = {
  cancelled: "The answer was cancelled before it finished",
  aborted: "The writer went away before finishing; this is the text so far",
};

export class Timeline {
  /**
   * scroller: the scrolling element; list: the <ol> of durable messages; live: the <ol> below it for
   * streams and sends in flight; top: the element above the list (loading / beginning marker).
   * hooks: {me(): string, onStop(streamId, button), onRetry(pendingId)}.
   */
  constructor({ scroller, list, live, top, hooks }) {
    this.scroller = scroller;
    this.list = list;
    this.live = live;
    this.top = top;
    this.hooks = hooks;
    this.clear();
  }

  /** Empties the view (room switch, continuity lost). */
  clear() {
    this.bySerial = new Map();
    this.streams = new Map(); // stream_id -> {node, textNode}
    this.pending = new Map(); // message id -> node
    this.oldest = null;
    this.hasMore = true;
    this.list.replaceChildren();
    this.live.replaceChildren();
    this.setTop("loading");
  }

  /** "loading" | "more" | "start" | "error": what the top of the list says. */
  setTop(state, text = "") {
    this.top.dataset.state = state;
    this.top.textContent =
      state === "loading" ? "Loading…" : state === "start" ? "This is the beginning of the room." : text;
  }

  nearBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
  }

  scrollToBottom() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  /** Runs `change`, keeping the view pinned to the bottom if it was there (or if `force`). */
  pinned(change, force = false) {
    const stick = force || this.nearBottom();
    change();
    if (stick) this.scrollToBottom();
  }

  /** Runs `change` that adds content above, keeping what the reader sees in place. */
  keepingPlace(change) {
    const before = this.scroller.scrollHeight;
    const top = this.scroller.scrollTop;
    change();
    this.scroller.scrollTop = top + (this.scroller.scrollHeight - before);
  }

  /** Shows a durable message at its serial's place (once). Returns its element. */
  addMessage(msg) {
    if (msg.serial === null || msg.serial === undefined) return null;
    const known = this.bySerial.get(msg.serial);
    if (known) return known;
    let node = null;
    const stream = msg.stream_id ? this.streams.get(msg.stream_id) : null;
    if (stream) {
      node = stream.node;
      this.streams.delete(msg.stream_id);
      node.classList.remove("streaming");
      node.querySelector(".stop")?.remove();
    } else if (msg.id && this.pending.has(msg.id)) {
      this.pending.get(msg.id).remove();
      this.pending.delete(msg.id);
    }
    node = node || this._bubble(msg);
    node.dataset.serial = String(msg.serial);
    if (msg.id) node.dataset.id = msg.id;
    this._fillBody(node, msg.data, msg.status || null);
    this.bySerial.set(msg.serial, node);
    this._insertSorted(node, msg.serial);
    if (this.oldest === null || msg.serial < this.oldest) this.oldest = msg.serial;
    this._group(node);
    if (node.nextElementSibling) this._group(node.nextElementSibling);
    return node;
  }

  /** A line in the timeline that is not a message (continuity notices). */
  addNotice(text, afterSerial) {
    const node = el("li", "notice", text);
    const serial = (afterSerial ?? 0) + 0.5;
    node.dataset.serial = String(serial);
    this._insertSorted(node, serial);
    return node;
  }

  /** Creates or refreshes the bubble of a live stream from the module's LiveStream. */
  updateStream(stream) {
    let entry = this.streams.get(stream.stream_id);
    if (!entry) {
      const node = this._bubble({
        client_id: stream.client_id,
        kind: stream.kind,
        ts: stream.ts,
        reply_to: stream.reply_to,
      });
      node.classList.add("streaming");
      node.dataset.streamId = stream.stream_id;
      const stop = el("button", "stop btn small", "Stop");
      stop.type = "button";
      stop.title = "Cancel this answer";
      stop.addEventListener("click", () => this.hooks.onStop(stream.stream_id, stop));
      node.querySelector(".meta").append(stop);
      entry = { node, body: node.querySelector(".text"), tail: null, length: 0 };
      this.streams.set(stream.stream_id, entry);
      // Streams sit above my sends in flight, so my next line does not land inside a running answer.
      this.live.insertBefore(node, this.live.querySelector(".pending"));
    }
    const text = stream.text();
    if (!entry.tail || text.length < entry.length) {
      entry.tail = document.createTextNode("");
      entry.body.replaceChildren(entry.tail, el("span", "caret"));
      entry.length = 0;
    }
    // Chunks only extend the text: render the new part only. Text up to the last whitespace is final
    // (a mention never spans whitespace) and gets its mentions; the rest waits in the tail text node.
    let open = entry.tail.data + text.slice(entry.length);
    entry.length = text.length;
    const cut = open.search(/\s\S*$/);
    if (cut >= 0) {
      const done = document.createDocumentFragment();
      renderText(done, open.slice(0, cut + 1), this.hooks.me());
      entry.body.insertBefore(done, entry.tail);
      open = open.slice(cut + 1);
    }
    entry.tail.data = open;
    return entry.node;
  }

  /** Drops a live bubble whose stream vanished (its end will come from history). */
  removeStream(streamId) {
    const entry = this.streams.get(streamId);
    if (!entry) return;
    entry.node.remove();
    this.streams.delete(streamId);
  }

  /** Shows my message while its publish is in flight. */
  addPending(id, text, me) {
    const node = this._bubble({ client_id: me, kind: "human", ts: Date.now() });
    node.classList.add("pending");
    node.dataset.pendingId = id;
    this._fillBody(node, text, null);
    this.pending.set(id, node);
    this.live.append(node);
    return node;
  }

  /** Marks a pending send as failed, with a retry button. */
  failPending(id, reason) {
    const node = this.pending.get(id);
    if (!node) return;
    node.classList.add("failed");
    const meta = node.querySelector(".meta");
    meta.querySelector(".retry")?.remove();
    const retry = el("button", "retry btn small", "Retry");
    retry.type = "button";
    retry.title = reason;
    retry.addEventListener("click", () => {
      node.classList.remove("failed");
      retry.remove();
      this.hooks.onRetry(id);
    });
    meta.append(retry);
  }

  /** Forgets a pending send whose message is already shown (acked duplicate). */
  settlePending(id) {
    const node = this.pending.get(id);
    if (node && this.list.querySelector(`[data-id="${CSS.escape(id)}"]`)) {
      node.remove();
      this.pending.delete(id);
    }
  }

  // --- building -----------------------------------------------------------------------------------

  _bubble(msg) {
    const me = this.hooks.me();
    const kind = msg.kind || "human";
    const node = el("li", `msg ${kind}`);
    if (msg.client_id === me) node.classList.add("mine");
    node.dataset.client = msg.client_id || "";
    node.dataset.ts = String(msg.ts || Date.now());
    node.append(avatar(msg.client_id, kind));
    const body = el("div", "body");
    const meta = el("div", "meta");
    meta.append(el("span", "author", msg.client_id || "?"));
    if (kind === "agent") meta.append(el("span", "tag", "agent"));
    else if (kind === "system") meta.append(el("span", "tag", "system"));
    const time = el("time", "", timeOf(msg.ts));
    time.dateTime = new Date(msg.ts || Date.now()).toISOString();
    meta.append(time);
    body.append(meta);
    if (msg.reply_to) {
      const quoted = this.bySerial.get(msg.reply_to);
      const reply = el("div", "reply-to");
      const who = quoted ? quoted.dataset.client : "";
      const what = quoted ? quoted.querySelector(".text")?.textContent || "" : `message #${msg.reply_to}`;
      reply.append(el("span", "reply-arrow", "↪"));
      if (who) reply.append(el("span", "reply-author", who));
      reply.append(el("span", "reply-text", what.length > 90 ? `${what.slice(0, 90)}…` : what));
      body.append(reply);
    }
    body.append(el("div", "text"));
    node.append(body);
    return node;
  }

  _fillBody(node, data, status) {
    const me = this.hooks.me();
    const body = node.querySelector(".text");
    const text = displayText(data);
    body.replaceChildren();
    body.classList.toggle("json", typeof data === "object" && data !== null && typeof data.text !== "string");
    if (text) renderText(body, text, me);
    else if (status) body.append(el("span", "empty", "(no text)"));
    if (mentions(text).includes(me)) node.classList.add("mentions-me");
    node.dataset.status = status || "";
    const meta = node.querySelector(".meta");
    meta.querySelector(".status")?.remove();
    if (status && status !== "complete") {
      const badge = el("span", `status ${status}`, STATUS_LABEL[status] || status);
      badge.title = STATUS_TITLE[status] || "";
      meta.append(badge);
    }
  }

  _insertSorted(node, serial) {
    const last = this.list.lastElementChild;
    if (!last || Number(last.dataset.serial) < serial) {
      this.list.append(node);
      return;
    }
    for (const child of this.list.children) {
      if (Number(child.dataset.serial) > serial) {
        this.list.insertBefore(node, child);
        return;
      }
    }
    this.list.append(node);
  }

  _group(node) {
    // Consecutive messages of one sender within a few minutes share one header.
    const prev = node.previousElementSibling;
    const same =
      prev &&
      prev.classList.contains("msg") &&
      node.classList.contains("msg") &&
      prev.dataset.client === node.dataset.client &&
      !node.querySelector(".reply-to") &&
      Number(node.dataset.ts) - Number(prev.dataset.ts) < GROUP_WINDOW_MS;
    node.classList.toggle("cont", Boolean(same));
  }
}
