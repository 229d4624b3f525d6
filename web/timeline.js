// timeline.js: the room's message list: durable messages in serial order, live streams and sends below.
//
// Rules: every durable message is shown once, at its serial's place, whatever order history pages,
// replays and live frames bring it in; it is kept by serial (and id) so later changes (the final text of
// a stream, edits, counts) update the same element in place. A live stream's bubble is the element that
// later shows its durable message, so the answer never jumps or doubles; its preview is re-rendered at
// most once per `previewMs` however fast chunks come. A day separator stands before each day's first
// message. Events (edits, deletes, reactions) are applied to held messages by `rev`, and thread replies
// counted onto held roots, with agentchat-events.js. Message text only reaches the page through
// markdown.js (escaped, no raw HTML).

import { addActions, startEdit } from "./actions.js";
import { applyEvent, countReply } from "./agentchat.js";
import {
  buildBubble,
  dayKey,
  dayLabel,
  displayText,
  el,
  fillBubble,
  fillQuote,
  fillReplies,
  labelBubble,
  showProblem,
} from "./bubble.js";
import { caretHost, renderRich } from "./markdown.js";

const GROUP_WINDOW_MS = 5 * 60 * 1000;
const PREVIEW_MS = 100;

export class Timeline {
  /**
   * scroller: the scrolling element; list: the <ol> of durable messages; live: the <ol> below it for
   * streams and sends in flight; top: the element above the list (loading / beginning marker).
   * ctx: bubble.js's context plus me(), onStop(streamId, button), quote(serial) -> Promise<message|null>.
   * startText: what the top says when everything is loaded; observe(node): called with each durable
   * message's element once it is shown (read marks watch them).
   */
  constructor({ scroller, list, live, top, ctx, startText = "This is the beginning of the room.", observe = null }) {
    this.scroller = scroller;
    this.list = list;
    this.live = live;
    this.top = top;
    this.startText = startText;
    this.observe = observe;
    this.ctx = {
      ...ctx,
      onQuote: (serial) => this.scrollToMessage(serial),
      messageText: (serial) => displayText(this.messages.get(serial)?.data),
    };
    this.previewMs = PREVIEW_MS; // least time between two renders of a live preview
    this.clear();
  }

  /** Empties the view (room switch, continuity lost). */
  clear() {
    for (const entry of this.streams?.values() || []) clearTimeout(entry.timer);
    this.messages = new Map(); // serial -> message
    this.bySerial = new Map(); // serial -> element
    this.byId = new Map(); // message id -> serial
    this.quoted = new Map(); // serial -> Promise of an original fetched for a reply quote
    this.days = new Map(); // day key -> separator element
    this.streams = new Map(); // stream_id -> {node, body, stream, timer, last, renders}
    this.pending = new Map(); // message id -> node
    this.divider = null;
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
      state === "loading" ? "Loading…" : state === "start" ? this.startText : text;
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
    const result = change();
    if (stick) this.scrollToBottom();
    return result;
  }

  /** Runs `change` that adds content above, keeping what the reader sees in place. */
  keepingPlace(change) {
    const before = this.scroller.scrollHeight;
    const top = this.scroller.scrollTop;
    change();
    this.scroller.scrollTop = top + (this.scroller.scrollHeight - before);
  }

  /** The durable message with this serial, if it is loaded. */
  message(serial) {
    return this.messages.get(serial);
  }

  /** Shows a durable message at its serial's place (once). Returns its element. */
  addMessage(msg) {
    if (msg.serial === null || msg.serial === undefined) return null;
    const known = this.bySerial.get(msg.serial);
    if (known) return known;
    let node = null;
    const stream = msg.stream_id ? this.streams.get(msg.stream_id) : null;
    if (stream) {
      clearTimeout(stream.timer);
      node = stream.node;
      this.streams.delete(msg.stream_id);
      node.classList.remove("streaming");
      node.querySelector(".stop")?.remove();
    } else if (msg.id && this.pending.has(msg.id)) {
      this.pending.get(msg.id).remove();
      this.pending.delete(msg.id);
    }
    node = node || buildBubble(msg, this.ctx);
    node.dataset.serial = String(msg.serial);
    if (msg.id) {
      node.dataset.id = msg.id;
      this.byId.set(msg.id, msg.serial);
    }
    this.messages.set(msg.serial, msg);
    fillBubble(node, msg, this.ctx);
    addActions(node, msg, this.ctx);
    this.bySerial.set(msg.serial, node);
    this._insertSorted(node, msg.serial);
    if (this.oldest === null || msg.serial < this.oldest) this.oldest = msg.serial;
    this._placeDay(node);
    this._group(node);
    if (node.nextElementSibling) this._group(node.nextElementSibling);
    this._fillQuotes(node);
    for (const quote of this._quotesOf(msg.serial)) fillQuote(quote, msg, this.ctx);
    this.observe?.(node);
    return node;
  }

  /** Shows `msg` as the new state of the loaded message with its serial; returns its element or null. */
  replaceMessage(msg) {
    const node = this.bySerial.get(msg.serial);
    if (!node) return null;
    this.messages.set(msg.serial, msg);
    fillBubble(node, msg, this.ctx);
    for (const quote of this._quotesOf(msg.serial)) fillQuote(quote, msg, this.ctx);
    return node;
  }

  /** Applies an event (edit, delete, reaction) to the loaded message it targets; its element, or null. */
  applyEvent(event) {
    const next = applyEvent(this.messages.get(event.target), event, this.ctx.me());
    return next ? this.replaceMessage(next) : null;
  }

  /** Counts a thread reply onto its root when the root is loaded; the root's element, or null. */
  countReply(reply) {
    const next = countReply(this.messages.get(reply.thread), reply);
    return next ? this.replaceMessage(next) : null;
  }

  /** Opens the editor on your newest editable message here; false when there is none. */
  editLast() {
    const node = [...this.list.querySelectorAll('.msg[data-editable="1"]')].at(-1);
    if (!node) return false;
    startEdit(node, this.ctx);
    return true;
  }

  /** The element of the durable message with this serial, or of the one with this id. */
  element(serialOrId) {
    const serial = typeof serialOrId === "number" ? serialOrId : this.byId.get(serialOrId);
    return this.bySerial.get(serial) || null;
  }

  /** A line in the timeline that is not a message (continuity notices), after serial `afterSerial`. */
  addNotice(text, afterSerial, className = "notice") {
    return this.place(el("li", className, text), (afterSerial ?? 0) + 0.5);
  }

  /** Puts an element that is not a bubble (a run card, a notice) at `serial`'s place. */
  place(node, serial) {
    node.dataset.serial = String(serial);
    this._insertSorted(node, serial);
    return node;
  }

  /** A history page down to `serial` is in (its records may have shown as cards): paging back goes on
   * below it. */
  reached(serial) {
    if (this.oldest === null || serial < this.oldest) this.oldest = serial;
  }

  /** Puts the "new messages" divider just before the message with this serial (one divider at a time). */
  placeDivider(serial) {
    this.removeDivider();
    const node = el("li", "unread-divider");
    node.setAttribute("role", "separator");
    node.append(el("span", "unread-label", "New messages"));
    node.dataset.serial = String(serial - 0.1);
    this._insertSorted(node, serial - 0.1);
    this.divider = node;
    return node;
  }

  /** Removes the "new messages" divider. */
  removeDivider() {
    this.divider?.remove();
    this.divider = null;
  }

  /** Scrolls the message with this serial into view and flashes it; false when it is not loaded. */
  scrollToMessage(serial) {
    const node = this.bySerial.get(serial);
    if (!node) return false;
    node.scrollIntoView({ block: "center" });
    node.classList.remove("flash");
    void node.offsetWidth; // restart the animation when the same quote is clicked twice
    node.classList.add("flash");
    return true;
  }

  /** Creates or refreshes the bubble of a live stream from the module's LiveStream. */
  updateStream(stream) {
    let entry = this.streams.get(stream.stream_id);
    if (!entry) {
      const node = buildBubble(
        { client_id: stream.client_id, kind: stream.kind, ts: stream.ts, reply_to: stream.reply_to },
        this.ctx,
      );
      node.classList.add("streaming");
      node.dataset.streamId = stream.stream_id;
      const stop = el("button", "stop btn small", "Stop");
      stop.type = "button";
      stop.title = "Cancel this answer";
      stop.addEventListener("click", () => this.ctx.onStop(stream.stream_id, stop));
      node.querySelector(".meta").append(stop);
      entry = { node, body: node.querySelector(".text"), stream, timer: null, last: -Infinity, renders: 0, cost: 0 };
      this.streams.set(stream.stream_id, entry);
      // Streams sit above my sends in flight, so my next line does not land inside a running answer.
      this.live.insertBefore(node, this.live.querySelector(".pending"));
      this._fillQuotes(node);
    }
    entry.stream = stream;
    if (entry.timer === null) {
      // Re-rendering markdown costs time: at most once per interval, and longer for long texts.
      const wait = entry.last + Math.max(this.previewMs, 4 * entry.cost) - performance.now();
      if (wait <= 0) this._renderPreview(entry);
      else entry.timer = setTimeout(() => this.pinned(() => this._renderPreview(entry)), wait);
    }
    return entry.node;
  }

  /** Drops a live bubble whose stream vanished (its end will come from history). */
  removeStream(streamId) {
    const entry = this.streams.get(streamId);
    if (!entry) return;
    clearTimeout(entry.timer);
    entry.node.remove();
    this.streams.delete(streamId);
  }

  /** The live bubble of a stream, if it is still open. */
  streamElement(streamId) {
    return this.streams.get(streamId)?.node || null;
  }

  /** Shows my message while its publish is in flight. */
  addPending(id, text, me, replyTo = null) {
    const node = buildBubble({ client_id: me, kind: "human", ts: Date.now(), reply_to: replyTo }, this.ctx);
    node.classList.add("pending");
    node.dataset.pendingId = id;
    fillBubble(node, { data: text }, this.ctx);
    this.pending.set(id, node);
    this.live.append(node);
    this._fillQuotes(node);
    return node;
  }

  /** Marks a pending send as failed, saying why; `retry` (a function) only when trying again can help. */
  failPending(id, problem, retry = null) {
    const node = this.pending.get(id);
    if (!node) return;
    node.classList.add("failed");
    showProblem(node, problem, retry && (() => {
      node.classList.remove("failed");
      retry();
    }));
  }

  /** Removes a pending send (it moved to another thread). */
  dropPending(id) {
    this.pending.get(id)?.remove();
    this.pending.delete(id);
  }

  /** Forgets a pending send whose message is already shown (acked duplicate). */
  settlePending(id) {
    const node = this.pending.get(id);
    if (node && this.byId.has(id)) {
      node.remove();
      this.pending.delete(id);
    }
  }

  /** Refreshes every author label (someone with a known name arrived, or two now share a name). */
  relabel() {
    for (const node of [...this.list.children, ...this.live.children]) {
      if (!node.classList.contains("msg")) continue;
      labelBubble(node, this.ctx);
      const msg = this.messages.get(Number(node.dataset.serial));
      if (msg && msg.replies) fillReplies(node, msg, this.ctx);
    }
    for (const quote of document.querySelectorAll(".reply-to:not(.loading):not(.missing)")) {
      const original = this.messages.get(Number(quote.dataset.replyTo));
      if (original) fillQuote(quote, original, this.ctx);
    }
  }

  // --- internals ----------------------------------------------------------------------------------

  _renderPreview(entry) {
    entry.timer = null;
    if (!this.streams.has(entry.stream.stream_id)) return;
    const started = performance.now();
    const text = entry.stream.text();
    entry.body.classList.remove("plain", "markdown");
    entry.body.classList.add(renderRich(entry.body, text, this.ctx.isMe));
    caretHost(entry.body).append(el("span", "caret"));
    if (!text) return; // an opened, still empty stream: its first text shows at once
    entry.last = performance.now();
    entry.cost = entry.last - started;
    entry.renders += 1;
    entry.node.dataset.renders = String(entry.renders);
  }

  _quotesOf(serial) {
    return [...this.list.querySelectorAll(`.reply-to[data-reply-to="${serial}"]`),
      ...this.live.querySelectorAll(`.reply-to[data-reply-to="${serial}"]`)];
  }

  _fillQuotes(node) {
    const quote = node.querySelector(".reply-to");
    if (!quote) return;
    const serial = Number(quote.dataset.replyTo);
    const original = this.messages.get(serial);
    if (original) {
      fillQuote(quote, original, this.ctx);
      return;
    }
    // A history page is added newest first: wait until the page is in before deciding the original is
    // missing, then fetch that one message, once per serial.
    const room = this.quoted;
    queueMicrotask(() => {
      if (room !== this.quoted || !quote.classList.contains("loading")) return;
      if (!this.quoted.has(serial)) this.quoted.set(serial, this.ctx.quote(serial).catch(() => null));
      this.quoted.get(serial).then((found) => {
        if (room !== this.quoted || !quote.classList.contains("loading")) return;
        fillQuote(quote, this.messages.get(serial) || found, this.ctx);
      });
    });
  }

  _insertSorted(node, serial) {
    const last = this.list.lastElementChild;
    if (!last || Number(last.dataset.serial) < serial) {
      this.list.append(node);
      return;
    }
    for (const child of this.list.children) {
      if (child !== node && Number(child.dataset.serial) > serial) {
        this.list.insertBefore(node, child);
        return;
      }
    }
    this.list.append(node);
  }

  _placeDay(node) {
    // One separator per local day, just before that day's first message (serial - 0.25 keeps order).
    const ts = Number(node.dataset.ts);
    const key = dayKey(ts);
    const serial = Number(node.dataset.serial);
    let separator = this.days.get(key);
    if (separator && Number(separator.dataset.serial) < serial) return;
    if (!separator) {
      separator = el("li", "day");
      separator.setAttribute("role", "separator");
      separator.append(el("span", "day-label", dayLabel(ts)));
      separator.dataset.day = String(key);
      this.days.set(key, separator);
    }
    separator.dataset.serial = String(serial - 0.25);
    separator.title = new Date(ts).toLocaleDateString([], { dateStyle: "full" });
    this.list.insertBefore(separator, node);
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
