// app.js: the agentchat browser app: rooms, who you are, the timeline, presence and live agent answers.
//
// Rules: the app talks to the server only through agentchat.js (plus tokens.js's token fetch). On
// opening a room it loads the newest history page first and then attaches from that page's last
// serial, so nothing is missed or shown twice; after that the client module keeps the room continuous
// across reconnects, and a continuity loss reloads the view. The session id and key live in
// sessionStorage, so a page reload resumes the same session (and its presence) where it was.

import { AgentChat } from "./agentchat.js";
import { avatar, displayText, el, showProblem } from "./bubble.js";
import { Composer } from "./composer.js";
import { publishProblem, retryable, stopProblem } from "./errors.js";
import { Names, cleanDisplayName, legacyName, loadIdentity, saveIdentity } from "./identity.js";
import { mentions } from "./markdown.js";
import { People } from "./people.js";
import { LocalRooms, isChannel, roomFromTyped } from "./rooms.js";
import { Shell } from "./shell.js";
import { Timeline } from "./timeline.js";
import { NoTokenSource, configFetcher, devToken, embeddedConfig, tokenFunction } from "./tokens.js";
import { Unread } from "./unread.js";

const PAGE_SIZE = 50;

const $ = (id) => document.getElementById(id);

class App {
  constructor() {
    this.config = embeddedConfig();
    this.identity = this.config ? null : loadIdentity();
    this.names = new Names();
    this.rooms = new LocalRooms();
    this.client = null;
    this.channel = null;
    this.room = null;
    this.roomSeq = 0; // bumps on every room switch, so late replies for the old room are dropped
    this.offs = [];
    this.loadingOlder = false;
    this.tokenProblem = null;
    const ctx = {
      names: this.names,
      isMine: (clientId) => Boolean(clientId) && clientId === this.me(),
      isMe: (name) => this.isMe(name),
      onReply: (serial) => this.composer.replyTo(serial),
      onStop: (streamId, button) => this.stop(streamId, button),
      quote: (serial) => this.fetchOriginal(serial),
    };
    this.timeline = new Timeline({ scroller: $("timeline"), list: $("messages"), live: $("live"), top: $("timeline-top"), ctx });
    this.unread = new Unread({
      timeline: this.timeline,
      jump: $("jump-unread"),
      bottom: $("jump-bottom"),
      onChange: () => this.updateTitle(),
    });
    this.people = new People({
      list: $("people-list"),
      count: $("people-count"),
      activity: $("activity"),
      names: this.names,
      me: () => this.me(),
      onMention: (handle) => {
        this.composer.mention(handle);
        this.shell.closePanels();
      },
      onNames: () => this.timeline.relabel(),
    });
    this.shell = new Shell({ tokenProblem: () => this.tokenProblem });
    this.composer = new Composer({ app: this, timeline: this.timeline, names: this.names });
  }

  /** My client id: from the server once connected, else the one this browser keeps. */
  me() {
    return (this.client && this.client.clientId) || (this.identity && this.identity.clientId) || "";
  }

  /** My display name. */
  myName() {
    return (this.identity && this.identity.name) || (this.config && cleanDisplayName(this.config.name || "")) || this.me();
  }

  /** Whether a mentioned name means me: my client id, or my display name. */
  isMe(name) {
    const key = String(name).toLocaleLowerCase();
    return Boolean(key) && (key === this.me().toLocaleLowerCase() || key === this.myName().toLocaleLowerCase());
  }

  start() {
    this.bindUi();
    if (this.config || this.identity) this.boot();
    else this.askName(true);
  }

  async boot() {
    this.showMe();
    const fetchOne = this.config ? configFetcher(this.config) : () => devToken(this.identity);
    let token;
    try {
      token = await tokenFunction(async () => {
        try {
          const fresh = await fetchOne();
          this.tokenProblem = null;
          return fresh;
        } catch (err) {
          this.tokenProblem = err instanceof NoTokenSource ? "no token: not in dev mode" : `no token: ${err.message}`;
          throw err;
        }
      });
    } catch (err) {
      if (err instanceof NoTokenSource) $("no-token").hidden = false;
      this.shell.showState({ state: "closed", reason: this.tokenProblem });
      return;
    }
    const who = this.identity ? this.identity.clientId : "embedded";
    this.client = new AgentChat({ token, storage: sessionStorage, storageKey: `agentchat.session.${who}`, takeover: "fresh" });
    this.client.on("state", (s) => this.shell.showState(s));
    this.client.on("connected", (frame) => {
      this.names.learn(frame.client_id, this.myName());
      this.showMe();
    });
    this.client.on("error", (err) => console.warn("agentchat:", err.code, err.message));
    this.client.connect().catch((err) => this.shell.showState({ state: "closed", reason: err.message }));
    this.openRoom(this.roomFromHash() || this.rooms.list()[0].channel);
  }

  showMe() {
    $("me-name").textContent = this.myName();
    $("me-button").hidden = false;
    $("me-button").title = this.config ? this.names.full(this.me()) : `${this.names.full(this.me())}: change your name`;
    $("me-avatar").replaceWith(Object.assign(avatar(this.me(), "human", this.myName()), { id: "me-avatar" }));
  }

  // --- rooms --------------------------------------------------------------------------------------

  roomFromHash() {
    const raw = decodeURIComponent(location.hash.replace(/^#/, ""));
    if (!raw) return "";
    if (raw.includes(":") && isChannel(raw)) return raw;
    const room = roomFromTyped(raw);
    return room ? room.channel : "";
  }

  renderRooms() {
    const list = $("room-list");
    list.replaceChildren();
    for (const room of this.rooms.list()) {
      const item = el("li");
      const link = el("a", room.channel === this.room ? "current" : "", room.title || room.channel);
      link.href = `#${encodeURIComponent(room.channel)}`;
      link.title = room.channel;
      link.dataset.channel = room.channel;
      if (room.channel === this.room) link.setAttribute("aria-current", "page");
      item.append(link);
      list.append(item);
    }
  }

  /** The room's title as shown (the typed title, else the channel name). */
  roomTitle() {
    return this.rooms.titleOf(this.room);
  }

  updateTitle() {
    const count = this.unread.count;
    document.title = `${count ? `(${count}) ` : ""}${this.roomTitle()} · agentchat`;
  }

  async openRoom(room) {
    if (room === this.room) return;
    const seq = ++this.roomSeq;
    for (const off of this.offs) off();
    this.offs = [];
    if (this.channel) this.channel.detach().catch(() => {});
    this.room = room;
    this.rooms.remember(room);
    if (this.roomFromHash() !== room) history.replaceState(null, "", `#${encodeURIComponent(room)}`);
    $("room-title").textContent = this.roomTitle();
    $("room-title").title = room;
    this.renderRooms();
    this.shell.closePanels();
    this.timeline.clear();
    this.unread.reset();
    this.composer.reset();

    const channel = this.client.channel(room);
    this.channel = channel;
    this.people.show(channel);
    this.composer.updateHint();
    const on = (type, fn) => this.offs.push(channel.on(type, fn));
    on("message", (m) => this.onMessage(m));
    on("stream", ({ stream }) => {
      this.timeline.pinned(() => this.timeline.updateStream(stream));
      this.unread.render();
    });
    on("stream_gone", ({ stream }) => this.timeline.removeStream(stream.stream_id));
    on("presence", () => {
      this.people.render();
      this.composer.updateHint();
    });
    on("continuity_lost", ({ reason }) => this.onContinuityLost(reason));
    on("detached", (frame) => this.timeline.addNotice(`Detached from the room: ${frame.message || frame.code}`,
      channel.position ? channel.position.serial : 0));

    try {
      // History first, then attach from its newest serial: the replay brings exactly what came after.
      const page = await channel.history({ limit: PAGE_SIZE });
      if (seq !== this.roomSeq) return;
      this.showPage(page, true);
      const newest = page.messages.reduce((max, m) => Math.max(max, m.serial), 0);
      await channel.attach({ position: { serial: newest, epoch: null } });
      if (seq !== this.roomSeq) return;
      await channel.enter({ kind: "human", display_name: this.myName() });
    } catch (err) {
      if (seq !== this.roomSeq) return;
      this.timeline.setTop("error", `Cannot open ${room}: ${err.message}`);
    }
  }

  showPage(page, initial) {
    const add = () => {
      for (const m of page.messages) {
        this.names.learnFrom(m);
        this.timeline.addMessage(m);
      }
      this.timeline.hasMore = page.has_more;
      this.timeline.setTop(page.has_more ? "more" : "start");
    };
    if (initial) this.timeline.pinned(add, true);
    else this.timeline.keepingPlace(add);
    // A first page that does not fill the screen cannot be scrolled up: fetch the next one now.
    const s = this.timeline.scroller;
    if (page.has_more && s.scrollHeight <= s.clientHeight + 100) this.loadOlder();
  }

  async loadOlder() {
    const tl = this.timeline;
    if (this.loadingOlder || !tl.hasMore || tl.oldest === null || !this.channel) return;
    const seq = this.roomSeq;
    this.loadingOlder = true;
    tl.setTop("loading");
    try {
      const page = await this.channel.history({ before: tl.oldest, limit: PAGE_SIZE });
      if (seq !== this.roomSeq) return;
      this.showPage(page, false);
    } catch (err) {
      if (seq === this.roomSeq) tl.setTop("error", `Could not load older messages: ${err.message}`);
    } finally {
      if (seq === this.roomSeq) this.loadingOlder = false;
    }
  }

  /** The message with this serial from history (for a reply quote whose original is not loaded). */
  async fetchOriginal(serial) {
    const page = await this.channel.history({ after: serial - 1, limit: 1, direction: "forwards" });
    const found = page.messages.find((m) => m.serial === serial) || null;
    if (found && this.names.learnFrom(found)) this.timeline.relabel();
    return found;
  }

  async onContinuityLost(reason) {
    // Messages may be missing from the view: start it again from the newest history page.
    this.shell.markContinuityLost(this.client.state);
    const seq = this.roomSeq;
    this.timeline.clear();
    this.unread.reset();
    for (const stream of this.channel.streams.values()) this.timeline.updateStream(stream);
    try {
      const page = await this.channel.history({ limit: PAGE_SIZE });
      if (seq !== this.roomSeq) return;
      this.showPage(page, true);
      const newest = page.messages.reduce((max, m) => Math.max(max, m.serial), 0);
      this.timeline.addNotice(`Continuity lost (${reason.message || reason.code}); the room was reloaded.`, newest);
    } catch (err) {
      this.timeline.setTop("error", `Could not reload the room: ${err.message}`);
    }
  }

  // --- messages -----------------------------------------------------------------------------------

  onMessage(m) {
    if (m.ephemeral) {
      if (m.name === "typing") this.people.typing(m.client_id);
      return;
    }
    if (this.names.learnFrom(m)) this.timeline.relabel();
    this.people.spoke(m.client_id);
    const mine = m.client_id === this.me();
    if (!mine && this.unread.away() && !this.timeline.element(m.serial)) {
      this.unread.note(m, mentions(displayText(m.data)).some((name) => this.isMe(name)));
    }
    this.timeline.pinned(() => this.timeline.addMessage(m), mine);
    this.unread.render();
  }

  /** Publishes the pending message `id` from the composer's outbox; a refusal is shown under it. */
  async publish(id, { text, replyTo }) {
    const channel = this.channel;
    try {
      // The id makes the publish idempotent: the client resends it after a drop, the room keeps one.
      await channel.publish(text, { id, reply_to: replyTo ?? undefined });
      this.timeline.settlePending(id);
      return true;
    } catch (err) {
      if (channel !== this.channel) return false;
      const retry = retryable(err.code) ? () => this.publish(id, { text, replyTo }) : null;
      this.timeline.failPending(id, publishProblem(err, text, this.client.limits), retry);
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
      const node = this.timeline.streamElement(streamId);
      if (node) this.timeline.pinned(() => showProblem(node, stopProblem(err)));
    }
  }

  // --- ui wiring ----------------------------------------------------------------------------------

  askName(first) {
    if (this.config) return; // the embedding site names its people
    const dialog = $("name-dialog");
    const input = $("name-input");
    input.value = (this.identity && this.identity.name) || legacyName();
    $("name-cancel").hidden = first;
    $("name-hint").textContent = "Any name, in any script, up to 64 characters.";
    $("name-hint").classList.remove("error");
    dialog.dataset.first = first ? "1" : "";
    if (!dialog.open) dialog.showModal();
    input.focus();
    input.select();
  }

  submitName() {
    const name = cleanDisplayName($("name-input").value);
    if (!name) {
      $("name-hint").textContent = "Please type a name of 1 to 64 characters.";
      $("name-hint").classList.add("error");
      return;
    }
    $("name-dialog").close();
    const before = this.identity;
    this.identity = saveIdentity(name);
    if (!this.client) this.boot();
    else if (!before || before.name !== name) {
      // The name is in the token and in presence: start the page over with it (same client id).
      this.client.close();
      location.reload();
    }
  }

  bindUi() {
    $("name-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.submitName();
    });
    $("name-cancel").addEventListener("click", () => $("name-dialog").close());
    $("name-dialog").addEventListener("cancel", (event) => {
      if ($("name-dialog").dataset.first) event.preventDefault();
    });
    $("me-button").addEventListener("click", () => this.askName(false));
    this.composer.bind();

    $("room-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const room = roomFromTyped($("room-input").value);
      if (!room) return;
      $("room-input").value = "";
      this.rooms.remember(room.channel, room.title);
      if (room.channel === this.room) this.openRoomTitle();
      location.hash = encodeURIComponent(room.channel);
    });
    window.addEventListener("hashchange", () => {
      const room = this.roomFromHash();
      if (room && this.client) this.openRoom(room);
    });

    $("timeline").addEventListener("scroll", () => {
      if ($("timeline").scrollTop < 120) this.loadOlder();
      this.unread.update();
    });
    document.addEventListener("visibilitychange", () => this.unread.update());
    this.shell.bind();
  }

  openRoomTitle() {
    $("room-title").textContent = this.roomTitle();
    this.renderRooms();
    this.updateTitle();
  }
}

const app = new App();
window.agentchatApp = app; // for debugging in the console and for the browser tests
app.start();
