// threads.js: the thread panel: one root message, its replies page by page, live replies and answers,
// and a composer whose messages go into the thread.
//
// Rules: a thread is the replies to one top-level message (its root). The panel shows the root in its
// current version and the replies from `history` with `thread` (newest page first, older ones on
// scrolling up), then live ones; events (edits, deletes, reactions) update both in place. A root that
// turns out to be a reply itself (a link, or the server's 40004 naming the real root) sends you to the
// real root's thread, with what you were posting. The address (#room:lobby/thread/12) names the thread.

import { Composer } from "./composer.js";
import { Timeline } from "./timeline.js";

const PAGE_SIZE = 50;
const $ = (id) => document.getElementById(id);

export class ThreadPanel {
  /**
   * app: the App (channel, client, me(), publish(...), timeline, showThread(root|null)); names: the
   * page's Names; ctx: the bubble context of the page (replies inside a thread open no threads).
   */
  constructor({ app, names, ctx }) {
    this.app = app;
    this.root = null;
    this.seq = 0; // bumps on every open, so late pages of another thread are dropped
    this.oldest = null; // the oldest reply loaded, for paging back
    this.hasMore = false;
    this.loading = false;
    this.panel = $("thread");
    this.count = $("thread-count");
    this.timeline = new Timeline({
      scroller: $("thread-timeline"),
      list: $("thread-messages"),
      live: $("thread-live"),
      top: $("thread-top"),
      ctx: { ...ctx, threads: false, onReply: (serial) => this.composer.replyTo(serial) },
      startText: "",
    });
    this.composer = new Composer({
      app,
      timeline: this.timeline,
      names,
      form: $("thread-composer"),
      input: $("thread-input"),
      replying: { box: $("thread-replying"), author: $("thread-replying-author"), text: $("thread-replying-text"), cancel: $("thread-replying-cancel") },
      thread: () => this.root,
    });
  }

  bind() {
    this.composer.bind();
    this.composer.setHint("Reply in the thread");
    $("thread-close").addEventListener("click", () => this.close());
    $("thread-timeline").addEventListener("scroll", () => {
      if ($("thread-timeline").scrollTop < 120) this.loadOlder();
    });
  }

  /** Opens the thread on root `serial`: the root (from the room's timeline, or fetched), then its replies. */
  async open(serial) {
    if (this.root === serial && !this.panel.hidden) return;
    const seq = ++this.seq;
    this.root = serial;
    this.oldest = null;
    this.hasMore = false;
    this.loading = false;
    this.timeline.clear();
    this.composer.reset();
    this.panel.hidden = false;
    this.count.textContent = "";
    this.app.showThread(serial);
    const channel = this.app.channel;
    const held = this.app.timeline.message(serial);
    try {
      const [root, page] = await Promise.all([
        held ? Promise.resolve(held) : this._fetchRoot(channel, serial),
        channel.history({ thread: serial, limit: PAGE_SIZE }),
      ]);
      if (seq !== this.seq) return;
      if (root && root.thread) {
        this.open(root.thread); // a reply: its thread is its root's
        return;
      }
      if (!root) {
        this.timeline.setTop("error", "This message is no longer available.");
        return;
      }
      this.timeline.pinned(() => {
        this.timeline.addMessage(root);
        this._showCount(root);
        this._addPage(page);
      }, true);
      this.composer.input.focus();
    } catch (err) {
      if (seq === this.seq) this.timeline.setTop("error", `Cannot open the thread: ${err.message}`);
    }
  }

  /** Loads the open thread again (the room's continuity was lost). */
  reload() {
    const root = this.root;
    if (root === null) return;
    this.root = null;
    this.open(root);
  }

  /** Closes the panel. */
  close() {
    this.seq += 1;
    this.root = null;
    this.panel.hidden = true;
    this.timeline.clear();
    this.app.showThread(null);
  }

  /** A durable message of the room arrived: a reply of this thread is shown, and counted on the root. */
  onMessage(m) {
    if (this.root === null || m.thread !== this.root) return;
    this.timeline.pinned(() => {
      this.timeline.addMessage(m);
      const root = this.timeline.countReply(m);
      if (root) this._showCount(this.timeline.message(this.root));
    }, m.client_id === this.app.me());
  }

  /** An event of the room: applied to the root or a reply it targets. */
  onEvent(event) {
    if (this.root !== null) this.timeline.pinned(() => this.timeline.applyEvent(event));
  }

  /** A live stream of the room: shown when it answers in this thread. */
  onStream(stream) {
    if (this.root !== null && stream.thread === this.root) this.timeline.pinned(() => this.timeline.updateStream(stream));
  }

  /** A stream vanished (continuity loss). */
  onStreamGone(stream) {
    this.timeline.removeStream(stream.stream_id);
  }

  /**
   * The server said the root of a reply we sent is a reply in thread `realRoot` (40004): go there and
   * send it again, with the same id, so it is posted once.
   */
  async moved(id, entry, realRoot) {
    await this.open(realRoot);
    this.composer.sendAs(id, { ...entry, thread: realRoot });
  }

  async loadOlder() {
    if (this.loading || !this.hasMore || this.oldest === null || this.root === null) return;
    const seq = this.seq;
    this.loading = true;
    this.timeline.setTop("loading");
    try {
      const page = await this.app.channel.history({ thread: this.root, before: this.oldest, limit: PAGE_SIZE });
      if (seq !== this.seq) return;
      this.timeline.keepingPlace(() => this._addPage(page));
    } catch (err) {
      if (seq === this.seq) this.timeline.setTop("error", `Could not load earlier replies: ${err.message}`);
    } finally {
      if (seq === this.seq) this.loading = false;
    }
  }

  // --- internals ----------------------------------------------------------------------------------

  async _fetchRoot(channel, serial) {
    const page = await channel.history({ before: serial + 1, limit: 1 });
    const found = page.messages.find((m) => m.serial === serial);
    return found && !found.action ? found : null;
  }

  _addPage(page) {
    let learnt = false;
    for (const m of page.messages) {
      learnt = this.app.names.learnFrom(m) || learnt;
      this.timeline.addMessage(m);
      if (this.oldest === null || m.serial < this.oldest) this.oldest = m.serial;
    }
    if (learnt) this.app.relabel();
    this.hasMore = page.has_more;
    this.timeline.setTop(page.has_more ? "more" : "start");
  }

  _showCount(root) {
    const count = (root && root.replies && root.replies.count) || 0;
    this.count.textContent = count ? `${count} repl${count === 1 ? "y" : "ies"}` : "No replies yet";
  }
}
