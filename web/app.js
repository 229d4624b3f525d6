// app.js: the agentchat browser app: who you are, the rooms, and the parts of the page wired together.
//
// Rules: the app talks to the server only through agentchat.js (plus tokens.js's token fetch). The open
// room is roomview.js's; the room list directory.js's; a thread threads.js's. The session id and key
// live in sessionStorage, so a page reload resumes the same session (and its presence) where it was.
// The address names the room (#room:design-review) and an open thread (#room:lobby/thread/12).

import { AgentChat } from "./agentchat.js";
import { avatar } from "./bubble.js";
import { Composer } from "./composer.js";
import { RoomDialog, RoomList } from "./directory.js";
import { Names, cleanDisplayName, legacyName, loadIdentity, saveIdentity } from "./identity.js";
import { People } from "./people.js";
import { Picker } from "./reactions.js";
import { RoomView } from "./roomview.js";
import { RunCards } from "./runcards.js";
import { LocalRooms, isChannel, roomFromTyped } from "./rooms.js";
import { Shell } from "./shell.js";
import { ThreadPanel } from "./threads.js";
import { Timeline } from "./timeline.js";
import { NoTokenSource, configFetcher, devToken, embeddedConfig, tokenFunction } from "./tokens.js";
import { Unread } from "./unread.js";

const MENTION_ID = /(?<![\w@])@([A-Za-z0-9][A-Za-z0-9_\-.@]{0,63})/g; // the server's mention pattern
const ROOM_HINT = 'Type any name: "Design Review" opens room:design-review.';
const $ = (id) => document.getElementById(id);

class App {
  constructor() {
    this.config = embeddedConfig();
    this.identity = this.config ? null : loadIdentity();
    this.names = new Names();
    this.rooms = new RoomList({ list: $("room-list"), local: new LocalRooms(), onChange: () => this.roomChanged() });
    this.client = null;
    this.tokenProblem = null;
    this.view = new RoomView({ app: this });
    const ctx = {
      names: this.names,
      me: () => this.me(),
      isMine: (clientId) => Boolean(clientId) && clientId === this.me(),
      isMe: (name) => this.isMe(name),
      threads: true,
      onReply: (serial) => this.composer.replyTo(serial),
      onThread: (serial) => this.threads.open(serial),
      onStop: (streamId, button) => this.view.stop(streamId, button),
      quote: (serial) => this.view.fetchOriginal(serial),
      onPickReaction: (serial, anchor) => this.picker.open(serial, anchor),
      onToggleReaction: (serial, reaction, mine) => this.view.react(serial, reaction, !mine),
      onEdit: (serial, text) => this.view.edit(serial, text),
      onDelete: (serial) => this.view.remove(serial),
    };
    this.timeline = new Timeline({
      scroller: $("timeline"),
      list: $("messages"),
      live: $("live"),
      top: $("timeline-top"),
      ctx,
      observe: (node) => this.unread.watch(node),
    });
    this.cards = new RunCards({
      timeline: this.timeline,
      ctx,
      onAnswer: (request, outcome, data) => this.view.answer(request, outcome, data),
      onCancel: (run) => this.view.cancelRun(run),
      requestOf: (requestId) => this.channel?.agents.requests.get(requestId),
    });
    this.unread = new Unread({
      timeline: this.timeline,
      jump: $("jump-unread"),
      bottom: $("jump-bottom"),
      onChange: (entry) => {
        if (entry) this.rooms.setCount(entry);
        this.updateTitle();
      },
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
      onNames: () => this.relabel(),
    });
    this.shell = new Shell({ tokenProblem: () => this.tokenProblem });
    this.composer = new Composer({
      app: this,
      timeline: this.timeline,
      names: this.names,
      form: $("composer"),
      input: $("composer-input"),
      replying: { box: $("replying"), author: $("replying-author"), text: $("replying-text"), cancel: $("replying-cancel") },
    });
    this.threads = new ThreadPanel({ app: this, names: this.names, ctx });
    this.picker = new Picker({ onPick: (serial, reaction) => this.view.react(serial, reaction, true) });
    this.roomDialog = new RoomDialog({ app: this });
  }

  /** The open room's channel name, and its Channel. */
  get room() {
    return this.view.room;
  }

  get channel() {
    return this.view.channel;
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
    this.rooms.use(this.client);
    this.client.connect().catch((err) => this.shell.showState({ state: "closed", reason: err.message }));
    const target = this.hashTarget();
    this.openRoom(target.room || this.rooms.rooms()[0].channel, target.thread);
  }

  showMe() {
    $("me-name").textContent = this.myName();
    $("me-button").hidden = false;
    $("me-button").title = this.config ? this.names.full(this.me()) : `${this.names.full(this.me())}: change your name`;
    $("me-avatar").replaceWith(Object.assign(avatar(this.me(), "human", this.myName()), { id: "me-avatar" }));
  }

  // --- rooms and threads ----------------------------------------------------------------------------

  /** The room (and thread) the address names: #room:lobby, #Design Review, #room:lobby/thread/12. */
  hashTarget() {
    const raw = decodeURIComponent(location.hash.replace(/^#/, ""));
    const match = /^(.*)\/thread\/([1-9][0-9]{0,15})$/.exec(raw);
    const name = match ? match[1] : raw;
    const thread = match ? Number(match[2]) : null;
    if (!name) return { room: "", thread };
    if (name.includes(":") && isChannel(name)) return { room: name, thread };
    const room = roomFromTyped(name);
    return { room: room ? room.channel : "", thread };
  }

  /** Opens `room` (and the thread on root `thread`, when given). */
  openRoom(room, thread = null) {
    this.rooms.remember(room);
    this.view.open(room);
    if (thread !== null) this.threads.open(thread);
  }

  /** The open room or its title changed: header, list, placeholder and tab title follow. */
  roomChanged() {
    const room = this.room;
    if (!room) return;
    $("room-title").textContent = this.rooms.titleOf(room);
    $("room-title").title = room;
    const topic = this.rooms.topicOf(room);
    $("room-topic").textContent = topic;
    $("room-topic").title = topic;
    $("room-topic").hidden = !topic;
    this.rooms.render(room);
    this.updateHint();
    this.updateTitle();
  }

  /** The thread on `root` opened (null: closed): the layout and the address follow. */
  showThread(root) {
    document.body.classList.toggle("show-thread", root !== null);
    const hash = `#${encodeURIComponent(this.room)}${root !== null ? `/thread/${root}` : ""}`;
    if (this.room && location.hash !== hash) history.replaceState(null, "", hash);
  }

  updateTitle() {
    const count = this.unread.count;
    const capped = count && this.unread.counts.capped ? "+" : "";
    document.title = `${count ? `(${count}${capped}) ` : ""}${this.rooms.titleOf(this.room)} · agentchat`;
  }

  /** The composer's placeholder: "Message Design Review", plus how to ask an agent when one is present. */
  updateHint() {
    const agents = this.people.agents();
    const title = this.rooms.titleOf(this.room);
    this.composer.setHint(
      agents.length ? `Message ${title} (mention @${this.people.handle(agents[0])} to ask the agent)` : `Message ${title}`,
    );
  }

  /** The client ids a text @mentions by the server's mention rule (core/mentions.py), for a message's
   * `to`, so the server counts the same mentions; undefined when none, or more than `to` may hold (32). */
  addressees(text) {
    const ids = [...String(text).matchAll(MENTION_ID)].map((match) => match[1].replace(/\.+$/, ""));
    const to = [...new Set(ids)].filter((id) => id && id !== this.me());
    return to.length && to.length <= 32 ? to : undefined;
  }

  /** Refreshes author labels everywhere (a name was learnt). */
  relabel() {
    this.cards.relabel();
    this.timeline.relabel();
    this.threads.timeline.relabel();
  }

  /** Publishes a composer's send (see RoomView.publish). */
  publish(id, entry, timeline) {
    return this.view.publish(id, entry, timeline);
  }

  async newRoom(typed) {
    const room = roomFromTyped(typed);
    if (!room || !this.client) return;
    const hint = $("room-hint");
    hint.textContent = ROOM_HINT;
    hint.classList.remove("error");
    if (room.channel === this.room) this.rooms.remember(room.channel, room.title);
    else location.hash = encodeURIComponent(room.channel);
    const problem = await this.rooms.create(room);
    if (problem) {
      hint.textContent = problem;
      hint.classList.add("error");
    }
    this.roomChanged();
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
    this.threads.bind();
    this.roomDialog.bind();

    $("room-input").addEventListener("focus", () => this.rooms.refresh()); // looking for a room: list them anew
    $("room-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const typed = $("room-input").value;
      $("room-input").value = "";
      this.newRoom(typed);
    });
    window.addEventListener("hashchange", () => {
      const target = this.hashTarget();
      if (!target.room || !this.client) return;
      if (target.room !== this.room) this.openRoom(target.room, target.thread);
      else if (target.thread !== null) this.threads.open(target.thread);
    });

    $("timeline").addEventListener("scroll", () => {
      if ($("timeline").scrollTop < 120) this.view.loadOlder();
      this.unread.update();
    });
    document.addEventListener("visibilitychange", () => this.unread.update());
    this.shell.bind();
  }
}

const app = new App();
window.agentchatApp = app; // for debugging in the console and for the browser tests
app.start();
