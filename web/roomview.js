// roomview.js: the open room: its history and live frames routed to the timeline, the thread panel,
// presence and read state, and the requests made on its messages (publish, stop, edit, delete, react).
//
// Rules: on opening a room the newest page of top-level messages (`view: "main"`) loads first, then
// the channel attaches from that page's newest serial: the replay brings exactly what came after, and
// events in it that a loaded message already includes (its `rev`) change nothing. After that the client
// module keeps the room continuous across reconnects; a continuity loss reloads the view. Thread
// replies never enter the room's timeline: they count onto their root and go to the thread panel.
// A refused request is shown in words under its message. What agents do (runs, their lanes, input
// requests, claims, the loop brake) is kept by the channel's AgentRoom and shown by runcards.js: their
// records never become bubbles.

import { showProblem } from "./bubble.js";
import { messageProblem, publishProblem, retryable, stopProblem } from "./errors.js";

const PAGE_SIZE = 50;
const RECORDS = new Set(["agentchat.run", "agentchat.input_request", "agentchat.input_answer", "agentchat.loop_brake"]);

/** Whether a message is an agent-room record (shown by runcards.js, not as a bubble). */
function isAgentRecord(m) {
  return Boolean(m.run_id) || RECORDS.has(m.name);
}

export class RoomView {
  /** app: the App and its parts (client, timeline, unread, people, threads, rooms, composer, names, shell). */
  constructor({ app }) {
    this.app = app;
    this.room = null;
    this.channel = null;
    this.seq = 0; // bumps on every room switch, so late replies for the old room are dropped
    this.offs = [];
    this.loadingOlder = false;
  }

  /** Opens `room` (a channel name): leaves the previous one, loads history, attaches, enters presence. */
  async open(room) {
    if (room === this.room) return;
    const app = this.app;
    const seq = ++this.seq;
    for (const off of this.offs) off();
    this.offs = [];
    if (this.channel) app.rooms.release(this.channel, app.unread.hasRead());
    this.room = room;
    app.threads.close();
    app.timeline.clear();
    app.cards.clear();
    app.composer.reset();
    const channel = app.client.channel(room);
    this.channel = channel;
    app.unread.reset(app.client, channel);
    app.people.show(channel);
    app.roomChanged();
    const on = (type, fn) => this.offs.push(channel.on(type, fn));
    on("message", (m) => this.onMessage(m));
    on("event", (e) => this.onEvent(e));
    on("stream", ({ stream }) => this.onStream(stream));
    on("stream_gone", ({ stream }) => {
      app.timeline.removeStream(stream.stream_id);
      app.threads.onStreamGone(stream);
    });
    on("presence", () => {
      app.people.render();
      app.updateHint();
    });
    on("room", (frame) => app.rooms.apply(frame));
    for (const type of ["run", "request", "claim"]) {
      on(type, (detail) => app.timeline.pinned(() => app.cards.apply([{ type, value: detail[type] }])));
    }
    on("continuity_lost", ({ reason }) => this.onContinuityLost(reason));
    on("detached", (frame) => app.timeline.addNotice(`Detached from the room: ${frame.message || frame.code}`,
      channel.position ? channel.position.serial : 0));
    app.client.room(room).then((found) => app.rooms.apply(found), () => {}); // 40400: no entry yet
    // A room watched for its badge is attached already: what the page will not have from history
    // arrives live, so it attaches again where it is (now with presence), replaying nothing.
    const continuous = channel.attached && channel.position !== null;

    try {
      // History first, then attach from its newest serial: the replay brings exactly what came after.
      const page = await channel.history({ limit: PAGE_SIZE, view: "main" });
      if (seq !== this.seq) return;
      this.showPage(page, true);
      const newest = page.messages.reduce((max, m) => Math.max(max, m.serial), 0);
      app.unread.opened(newest);
      if (continuous && channel.attached) await channel.attach({ presence: true });
      else await channel.attach({ position: { serial: newest, epoch: null } });
      if (seq !== this.seq) return;
      // Claims held now and requests still open (asked before the loaded page, too); then live frames.
      channel.claims().catch(() => {});
      channel.requests({ status: "pending", limit: 50 }).catch(() => {});
      await channel.enter({ kind: "human", display_name: app.myName() });
    } catch (err) {
      if (seq !== this.seq) return;
      app.timeline.setTop("error", `Cannot open ${room}: ${err.message}`);
    }
  }

  showPage(page, initial) {
    const tl = this.app.timeline;
    const add = () => {
      for (const m of page.messages) {
        this.app.names.learnFrom(m);
        if (isAgentRecord(m)) this.showRecord(m);
        else this.showClaimOf(tl.addMessage(m), m.serial);
      }
      if (page.messages.length) tl.reached(Math.min(...page.messages.map((m) => m.serial)));
      tl.hasMore = page.has_more;
      tl.setTop(page.has_more ? "more" : "start");
    };
    if (initial) tl.pinned(add, true);
    else tl.keepingPlace(add);
    // A first page that does not fill the screen cannot be scrolled up: fetch the next one now.
    const s = tl.scroller;
    if (page.has_more && s.scrollHeight <= s.clientHeight + 100) this.loadOlder();
  }

  async loadOlder() {
    const tl = this.app.timeline;
    if (this.loadingOlder || !tl.hasMore || tl.oldest === null || !this.channel) return;
    const seq = this.seq;
    this.loadingOlder = true;
    tl.setTop("loading");
    try {
      const page = await this.channel.history({ before: tl.oldest, limit: PAGE_SIZE, view: "main" });
      if (seq !== this.seq) return;
      this.showPage(page, false);
    } catch (err) {
      if (seq === this.seq) tl.setTop("error", `Could not load older messages: ${err.message}`);
    } finally {
      if (seq === this.seq) this.loadingOlder = false;
    }
  }

  /** The message with this serial from history (for a reply quote whose original is not loaded). */
  async fetchOriginal(serial) {
    const page = await this.channel.history({ after: serial - 1, limit: 1, direction: "forwards" });
    const found = page.messages.find((m) => m.serial === serial) || null;
    if (found && this.app.names.learnFrom(found)) this.app.relabel();
    return found;
  }

  async onContinuityLost(reason) {
    // Messages may be missing from the view: start it again from the newest history page.
    const app = this.app;
    app.shell.markContinuityLost(app.client.state);
    const seq = this.seq;
    app.timeline.clear();
    app.cards.clear();
    app.unread.reset(app.client, this.channel);
    app.threads.reload();
    for (const stream of this.channel.streams.values()) this.onStream(stream);
    try {
      const page = await this.channel.history({ limit: PAGE_SIZE, view: "main" });
      if (seq !== this.seq) return;
      this.showPage(page, true);
      const newest = page.messages.reduce((max, m) => Math.max(max, m.serial), 0);
      app.unread.opened(newest);
      app.timeline.addNotice(`Continuity lost (${reason.message || reason.code}); the room was reloaded.`, newest);
    } catch (err) {
      app.timeline.setTop("error", `Could not reload the room: ${err.message}`);
    }
  }

  // --- live frames ----------------------------------------------------------------------------------

  onMessage(m) {
    const app = this.app;
    if (m.ephemeral) {
      if (m.name === "typing") app.people.typing(m.client_id);
      return;
    }
    if (app.names.learnFrom(m)) app.relabel();
    app.people.spoke(m.client_id);
    if (isAgentRecord(m)) {
      // The channel's AgentRoom took it in already ("run", "request" events); only the brake is shown here.
      if (m.name === "agentchat.loop_brake") app.timeline.pinned(() => app.cards.showLoopBrake(m));
      if (m.client_id !== app.me()) app.unread.arrived();
      return;
    }
    if (m.thread) {
      app.timeline.pinned(() => app.timeline.countReply(m)); // a root that grows keeps the bottom in view
      app.threads.onMessage(m);
      return;
    }
    const mine = m.client_id === app.me();
    app.timeline.pinned(() => app.timeline.addMessage(m), mine);
    if (!mine) app.unread.arrived();
    app.unread.render();
  }

  onEvent(event) {
    const app = this.app;
    if (app.names.learnFrom(event)) app.relabel();
    app.timeline.pinned(() => app.timeline.applyEvent(event));
    app.threads.onEvent(event);
    app.unread.render();
  }

  onStream(stream) {
    const app = this.app;
    if (stream.run_id) return; // a run's lane: its card follows the run ("run" events)
    if (stream.thread) {
      app.threads.onStream(stream);
      return;
    }
    app.timeline.pinned(() => app.timeline.updateStream(stream));
    app.unread.render();
  }

  /** A record from a history page: into the AgentRoom (idempotent with live frames), whose changes
   * come back as the channel's run and request events, which show the cards. */
  showRecord(m) {
    if (m.name === "agentchat.loop_brake") this.app.cards.showLoopBrake(m);
    else this.channel.agents.learn(m);
  }

  showClaimOf(node, serial) {
    const claim = node && this.channel.agents.claims.get(serial);
    if (claim) this.app.cards.showClaim(claim);
  }

  // --- requests on messages -------------------------------------------------------------------------

  /** Publishes a send from a composer (`timeline` shows it); a refusal is shown under it. */
  async publish(id, entry, timeline) {
    const channel = this.channel;
    try {
      // The id makes the publish idempotent: the client resends it after a drop, the room keeps one.
      const options = { id, reply_to: entry.replyTo ?? undefined, thread: entry.thread ?? undefined, to: entry.to };
      await channel.publish(entry.text, options);
      timeline.settlePending(id);
      return true;
    } catch (err) {
      if (channel !== this.channel) return false;
      const realRoot = err.frame && err.frame.thread;
      if (err.code === 40004 && entry.thread && typeof realRoot === "number") {
        timeline.dropPending(id); // the root is a reply itself: post in its root's thread
        this.app.threads.moved(id, entry, realRoot);
        return false;
      }
      const retry = retryable(err.code) ? () => this.publish(id, entry, timeline) : null;
      timeline.failPending(id, publishProblem(err, entry.text, this.app.client.limits), retry);
      return false;
    }
  }

  async stop(streamId, button) {
    button.disabled = true;
    button.textContent = "Stopping…";
    try {
      await this.channel.cancelStream(streamId);
    } catch (err) {
      if (err.code === 40401) return; // it ended meanwhile; its final message is on its way
      button.disabled = false;
      button.textContent = "Stop";
      for (const tl of this._timelines()) {
        const node = tl.streamElement(streamId);
        if (node) tl.pinned(() => showProblem(node, stopProblem(err)));
      }
    }
  }

  /** Answers an input request from its card; a refusal is said on the card (40907: who answered). */
  async answer(request, outcome, data) {
    const channel = this.channel;
    try {
      await channel.answer(request.request_id, outcome, data);
    } catch (err) {
      if (channel !== this.channel) return;
      const closed = err.code === 40907 && err.frame;
      const answer = closed && err.frame.answer;
      const who = answer && (answer.client_id === this.app.me() ? "you" : this.app.names.label(answer.client_id));
      const text = !closed ? `Could not answer: ${err.message}` : err.frame.status === "expired"
        ? "This request expired before your answer." : `Already answered${who ? ` by ${who}` : ""}.`;
      this.app.timeline.pinned(() => this.app.cards.problem(request, text));
    }
  }

  /** Stops a run from its card's Stop button; resolves with the refusal in words, or null. */
  async cancelRun(run) {
    try {
      await this.channel.cancelRun(run.run_id);
      return null;
    } catch (err) {
      return err.code === 40404 ? null : `Could not stop it: ${err.message}`; // 40404: it ended meanwhile
    }
  }

  /** Edits your message `serial` to `text`; true when the server took it (the event shows it). */
  async edit(serial, text) {
    try {
      await this.channel.edit(serial, text);
      this._clearProblem(serial);
      return true;
    } catch (err) {
      this._problem(serial, messageProblem(err, "edit", text, this.app.client.limits));
      return err.code === 40904 || err.code === 40402; // nothing left to edit: close the editor
    }
  }

  /** Deletes message `serial`; a refusal (not yours, without `moderate`) is shown under it. */
  async remove(serial) {
    try {
      await this.channel.delete(serial);
      this._clearProblem(serial);
      return true;
    } catch (err) {
      this._problem(serial, messageProblem(err, "delete"));
      return false;
    }
  }

  /** Adds (`add`) or takes back your `reaction` on message `serial`. */
  async react(serial, reaction, add) {
    try {
      if (add) await this.channel.react(serial, reaction);
      else await this.channel.unreact(serial, reaction);
      this._clearProblem(serial);
    } catch (err) {
      const retry = retryable(err.code) ? () => this.react(serial, reaction, add) : null;
      this._problem(serial, messageProblem(err, "react"), retry);
    }
  }

  _timelines() {
    return [this.app.timeline, this.app.threads.timeline];
  }

  _problem(serial, text, retry = null) {
    for (const tl of this._timelines()) {
      const node = tl.element(serial);
      if (node) tl.pinned(() => showProblem(node, text, retry));
    }
  }

  _clearProblem(serial) {
    for (const tl of this._timelines()) tl.element(serial)?.querySelector(":scope > .body > .problem")?.remove();
  }
}
