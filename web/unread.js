// unread.js: read state of the open room: read marks as messages scroll into view, and what arrived
// while you were not looking (the "New messages" divider, the "3 new messages" button, the tab title),
// all from the server's read mark and `unread` counts, never counted on the page.
//
// Rules: a message is read once half of it (or half the view, for a tall one) was on screen in a
// visible tab; at the bottom of a visible room everything delivered is read. Read marks go to the server
// (`read`, at most one in flight, never backwards), so they survive reloads and follow you to other
// devices. Counts come from `unread` after each mark and whenever a message from someone else arrives
// while you are away (scrolled up or the tab hidden). The divider stands before the first top-level
// message from someone else after your read mark (on a first visit, after what the room showed when you
// opened it); a new divider starts with the next unread spell.

import { el } from "./markdown.js";

const MARK_DELAY_MS = 250; // read marks are batched: one per delay at most
const COUNT_DELAY_MS = 150; // arrivals in a burst share one `unread` request

export class Unread {
  /**
   * timeline: the Timeline; jump: the "N new messages" button; bottom: the scroll-to-bottom button;
   * onChange(entry?): the counts changed, with the server's `unread` entry when one came (the app puts
   * them in the tab title and the room list).
   */
  constructor({ timeline, jump, bottom, onChange }) {
    this.timeline = timeline;
    this.jump = jump;
    this.bottom = bottom;
    this.onChange = onChange;
    this.observer = new IntersectionObserver((entries) => this._saw(entries), {
      root: timeline.scroller,
      threshold: [0, 0.25, 0.5, 0.75, 1],
    });
    this.visible = new Set();
    jump.addEventListener("click", () => this.jumpToFirst());
    bottom.addEventListener("click", () => {
      this.timeline.scrollToBottom();
      this.update();
    });
    this._clear(null, null);
  }

  /** Starts over for `channel` of `client` (another room, a reloaded view). */
  reset(client, channel) {
    this._clear(client, channel);
    this.onChange();
  }

  _clear(client, channel) {
    this.client = client;
    this.channel = channel;
    this.lastRead = 0; // the server's read mark, as far as we know
    this.baseline = null; // newest serial shown at opening: a first visit's "already there"
    this.seen = 0; // the highest serial read on this page, sent or to be sent
    this.counts = { unread: 0, mentions: 0, capped: false };
    this.spell = false; // a divider marks the current unread spell
    this.visible.clear();
    this.observer.disconnect();
    clearTimeout(this.markTimer);
    clearTimeout(this.countTimer);
    this.marking = false;
    this.timeline.removeDivider();
    this.render();
  }

  /** The room's first page is shown; `newest` is its newest serial. Fetches the room's counts. */
  opened(newest) {
    this.baseline = newest;
    this.refresh();
  }

  /** Whether anything was read in this room (a read mark exists, or is on its way). */
  hasRead() {
    return this.lastRead > 0 || this.seen > 0;
  }

  /** Watches a durable message's element: it is read once seen. */
  watch(node) {
    this.observer.observe(node);
  }

  /** The unread count to show in the title: the server's, while you are away; none while you read. */
  get count() {
    return this.away() ? this.counts.unread : 0;
  }

  /** Whether new messages are unread rather than read at once (scrolled up or tab hidden). */
  away() {
    return document.hidden || !this.timeline.nearBottom();
  }

  /** A top-level message from someone else arrived live (it is shown already). */
  arrived() {
    if (this.away()) this.refreshSoon();
    else this._consider();
  }

  /** Re-checks after a scroll, a resize or the tab becoming visible. */
  update() {
    this._consider();
    this.render();
    this.onChange();
  }

  /** Asks the server for this room's counts soon (arrivals in a burst share one request). */
  refreshSoon() {
    clearTimeout(this.countTimer);
    this.countTimer = setTimeout(() => this.refresh(), COUNT_DELAY_MS);
  }

  /** Asks the server for the room's unread and mention counts now (the room list takes them even when
   * the room was left meanwhile). */
  async refresh(channel = this.channel) {
    if (!channel) return;
    try {
      const reply = await this.client.unread({ channels: [channel.name] });
      const entry = reply.channels.find((c) => c.channel === channel.name);
      if (!entry) return;
      if (channel === this.channel) this._adopt(entry);
      else this.onChange(entry);
    } catch (err) {
      console.warn("agentchat: unread counts:", err.code, err.message);
    }
  }

  /** Scrolls to the first unread message (the divider). */
  jumpToFirst() {
    const divider = this.timeline.divider;
    if (divider) divider.scrollIntoView({ block: "start" });
    else this.timeline.scrollToBottom();
    this.update();
  }

  render() {
    const scrolledUp = !this.timeline.nearBottom();
    const count = this.counts.unread;
    this.bottom.hidden = !scrolledUp;
    this.jump.hidden = !(scrolledUp && count > 0);
    const shown = `${count}${this.counts.capped ? "+" : ""}`;
    const parts = [el("span", "jump-count", `${shown} new message${count === 1 ? "" : "s"}`)];
    const mentions = this.counts.mentions;
    if (mentions) parts.push(el("span", "jump-mentions", `${mentions} mention${mentions === 1 ? "" : "s"}`));
    this.jump.replaceChildren(...parts);
  }

  // --- internals ----------------------------------------------------------------------------------

  _adopt(entry) {
    this.lastRead = Math.max(this.lastRead, entry.last_read || 0);
    this.counts = { unread: entry.unread || 0, mentions: entry.mentions || 0, capped: Boolean(entry.capped) };
    if (!this.counts.unread) this.spell = false;
    else if (!this.spell) this._placeDivider(entry.last_read ? entry.last_read : this.baseline);
    this.render();
    this.onChange(entry);
  }

  _placeDivider(after) {
    if (after === null || after === undefined) return;
    let first = null;
    for (const [serial, msg] of this.timeline.messages) {
      if (serial > after && !msg.thread && !this.timeline.ctx.isMine(msg.client_id) && (first === null || serial < first)) {
        first = serial;
      }
    }
    if (first === null) return;
    this.timeline.placeDivider(first);
    this.spell = true;
  }

  _saw(entries) {
    for (const entry of entries) {
      const serial = Number(entry.target.dataset.serial);
      const room = entry.rootBounds ? entry.rootBounds.height : Infinity;
      const shown = entry.intersectionRect.height;
      const enough = entry.isIntersecting && (entry.intersectionRatio >= 0.5 || shown >= room / 2);
      if (enough && entry.target.isConnected) this.visible.add(serial);
      else this.visible.delete(serial);
    }
    this._consider();
  }

  _consider() {
    if (!this.channel || document.hidden) return;
    let read = 0;
    for (const serial of this.visible) read = Math.max(read, serial);
    const position = this.channel.position;
    if (this.timeline.nearBottom() && position) read = Math.max(read, position.serial);
    if (read > this.seen) this.seen = read;
    if (this.seen > this.lastRead && !this.marking) {
      clearTimeout(this.markTimer);
      this.markTimer = setTimeout(() => this._mark(), MARK_DELAY_MS);
    }
  }

  async _mark() {
    const channel = this.channel;
    if (!channel || this.marking || this.seen <= this.lastRead) return;
    this.marking = true;
    let again = true;
    try {
      const ack = await channel.markRead(this.seen);
      if (channel === this.channel) this.lastRead = Math.max(this.lastRead, ack.serial);
      await this.refresh(channel);
    } catch (err) {
      if (err.code === 42900) {
        // Read marks share the publish budget: try again when the server says it can take one.
        const wait = Math.min(60, (err.frame && err.frame.retry_after) || 1) * 1000;
        this.markTimer = setTimeout(() => this._consider(), wait);
      } else {
        console.warn("agentchat: read mark:", err.code, err.message);
      }
      again = false; // otherwise not retried until something new is read
    } finally {
      if (channel === this.channel) {
        this.marking = false;
        if (again && this.seen > this.lastRead) this._consider();
      }
    }
  }
}
