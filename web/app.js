// app.js: the agentchat browser app: rooms, your name, the timeline, presence and live agent answers.
//
// Rules: the app talks to the server only through agentchat.js (plus one fetch for a dev token). On
// opening a room it loads the newest history page first and then attaches from that page's last
// serial, so nothing is missed or shown twice; after that the client module keeps the room continuous
// across reconnects, and a continuity loss reloads the view. The session id and key live in
// sessionStorage, so a page reload resumes the same session (and its presence) where it was.

import { AgentChat } from "./agentchat.js";
import { Timeline, avatar, el } from "./timeline.js";

const NAME_KEY = "agentchat.name";
const ROOMS_KEY = "agentchat.rooms";
const DEFAULT_ROOM = "room:lobby";
const PAGE_SIZE = 50;
const TYPING_EVERY_MS = 3000;
const TYPING_SHOWN_MS = 5000;
const CLIENT_ID = /^[A-Za-z0-9][A-Za-z0-9_\-.@]{0,63}$/;
const CHANNEL = /^[A-Za-z0-9][A-Za-z0-9_\-.:@]{0,199}$/;
const STATUS_RANK = { streaming: 3, thinking: 2, idle: 1 };

const $ = (id) => document.getElementById(id);

/** Turns what a person typed into a valid client id ("Zoë Li" -> "Zoe-Li"), or "" if nothing is left. */
export function sanitizeName(raw) {
  const plain = String(raw).normalize("NFKD").replace(/[\u0300-\u036f]/g, "");
  const cleaned = plain
    .trim()
    .replace(/\s+/g, "-")
    .replace(/[^A-Za-z0-9_\-.@]/g, "")
    .replace(/^[^A-Za-z0-9]+/, "")
    .slice(0, 64);
  return CLIENT_ID.test(cleaned) ? cleaned : "";
}

/** Turns a typed room into a channel name; without a namespace it goes to "room:". */
export function sanitizeRoom(raw) {
  let name = String(raw)
    .trim()
    .replace(/\s+/g, "-")
    .replace(/[^A-Za-z0-9_\-.:@]/g, "")
    .replace(/^[^A-Za-z0-9]+/, "");
  if (!name) return "";
  if (!name.includes(":")) name = `room:${name}`;
  name = name.slice(0, 200);
  return CHANNEL.test(name) ? name : "";
}

class App {
  constructor() {
    this.name = sanitizeName(localStorage.getItem(NAME_KEY) || "");
    this.client = null;
    this.channel = null;
    this.room = null;
    this.roomSeq = 0; // bumps on every room switch, so late replies for the old room are dropped
    this.offs = [];
    this.loadingOlder = false;
    this.typers = new Map(); // client_id -> until (ms)
    this.lastTypingSent = 0;
    this.continuityLost = false;
    this.timeline = new Timeline({
      scroller: $("timeline"),
      list: $("messages"),
      live: $("live"),
      top: $("timeline-top"),
      hooks: {
        me: () => this.name,
        onStop: (streamId, button) => this.stop(streamId, button),
        onRetry: (id) => this.retry(id),
      },
    });
    this.outbox = new Map(); // pending message id -> text
  }

  start() {
    this.bindUi();
    if (this.name) this.boot();
    else this.askName(true);
  }

  boot() {
    $("me-name").textContent = this.name;
    $("me-button").hidden = false;
    $("me-avatar").replaceWith(Object.assign(avatar(this.name, "human"), { id: "me-avatar" }));
    this.client = new AgentChat({
      token: () => this.fetchToken(),
      storage: sessionStorage,
      storageKey: `agentchat.session.${this.name}`,
      takeover: "fresh",
    });
    this.client.on("state", (s) => this.showState(s));
    this.client.on("error", (err) => console.warn("agentchat:", err.code, err.message));
    this.client.connect().catch((err) => this.showState({ state: "closed", reason: err.message }));
    this.openRoom(this.roomFromHash() || this.rooms()[0] || DEFAULT_ROOM);
  }

  async fetchToken() {
    const response = await fetch("/v1/dev/token", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ client_id: this.name, kind: "human" }),
    });
    if (!response.ok) {
      const hint = response.status === 404 ? "the server is not in dev mode" : `HTTP ${response.status}`;
      this.tokenProblem = `no token: ${hint}`;
      throw new Error(this.tokenProblem);
    }
    this.tokenProblem = null;
    return (await response.json()).token;
  }

  // --- rooms --------------------------------------------------------------------------------------

  rooms() {
    try {
      const list = JSON.parse(localStorage.getItem(ROOMS_KEY) || "[]");
      return Array.isArray(list) ? list.filter((r) => typeof r === "string" && CHANNEL.test(r)) : [];
    } catch (_) {
      return [];
    }
  }

  rememberRoom(room) {
    const list = [room, ...this.rooms().filter((r) => r !== room)];
    if (!list.includes(DEFAULT_ROOM)) list.push(DEFAULT_ROOM);
    localStorage.setItem(ROOMS_KEY, JSON.stringify(list.slice(0, 12)));
  }

  roomFromHash() {
    const raw = decodeURIComponent(location.hash.replace(/^#/, ""));
    return raw ? sanitizeRoom(raw) : "";
  }

  renderRooms() {
    const list = $("room-list");
    list.replaceChildren();
    for (const room of this.rooms()) {
      const item = el("li");
      const link = el("a", room === this.room ? "current" : "", room);
      link.href = `#${encodeURIComponent(room)}`;
      if (room === this.room) link.setAttribute("aria-current", "page");
      item.append(link);
      list.append(item);
    }
  }

  async openRoom(room) {
    if (room === this.room) return;
    const seq = ++this.roomSeq;
    for (const off of this.offs) off();
    this.offs = [];
    if (this.channel) this.channel.detach().catch(() => {});
    this.room = room;
    this.rememberRoom(room);
    if (this.roomFromHash() !== room) history.replaceState(null, "", `#${encodeURIComponent(room)}`);
    document.title = `${room} · agentchat`;
    $("room-title").textContent = room;
    $("composer-input").placeholder = `Message ${room} (mention @planner to ask the agent)`;
    this.renderRooms();
    this.closePanels();
    this.timeline.clear();
    this.typers.clear();
    this.renderActivity();

    const channel = this.client.channel(room);
    this.channel = channel;
    this.renderPresence();
    const on = (type, fn) => this.offs.push(channel.on(type, fn));
    on("message", (m) => this.onMessage(m));
    on("stream", ({ stream }) => this.timeline.pinned(() => this.timeline.updateStream(stream)));
    on("stream_gone", ({ stream }) => this.timeline.removeStream(stream.stream_id));
    on("presence", () => this.renderPresence());
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
      await channel.enter({ kind: "human" });
    } catch (err) {
      if (seq !== this.roomSeq) return;
      this.timeline.setTop("error", `Cannot open ${room}: ${err.message}`);
    }
  }

  showPage(page, initial) {
    const add = () => {
      for (const m of page.messages) this.timeline.addMessage(m);
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

  async onContinuityLost(reason) {
    // Messages may be missing from the view: start it again from the newest history page.
    this.continuityLost = true;
    this.showState({ state: this.client.state });
    const seq = this.roomSeq;
    this.timeline.clear();
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
      if (m.name === "typing" && m.client_id !== this.name) {
        this.typers.set(m.client_id, Date.now() + TYPING_SHOWN_MS);
        this.renderActivity();
        setTimeout(() => this.renderActivity(), TYPING_SHOWN_MS + 50);
      }
      return;
    }
    if (this.typers.delete(m.client_id)) this.renderActivity();
    const mine = m.client_id === this.name;
    this.timeline.pinned(() => this.timeline.addMessage(m), mine);
  }

  send(text) {
    const id = `${this.name}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    this.outbox.set(id, text);
    this.timeline.pinned(() => this.timeline.addPending(id, text, this.name), true);
    this.publish(id);
  }

  retry(id) {
    this.publish(id);
  }

  async publish(id) {
    const text = this.outbox.get(id);
    const channel = this.channel;
    try {
      // The id makes the publish idempotent: the client resends it after a drop, the room keeps one.
      await channel.publish(text, { id });
      this.outbox.delete(id);
      this.timeline.settlePending(id);
    } catch (err) {
      if (channel === this.channel) this.timeline.failPending(id, err.message);
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
      button.title = `Could not stop: ${err.message}`;
    }
  }

  typing() {
    const now = Date.now();
    if (now - this.lastTypingSent < TYPING_EVERY_MS || !this.channel || this.client.state !== "connected") return;
    this.lastTypingSent = now;
    this.channel.publish(null, { name: "typing", ephemeral: true }).catch(() => {});
  }

  // --- presence and activity ----------------------------------------------------------------------

  members() {
    // One row per client: a person or agent may be connected several times.
    const byClient = new Map();
    for (const member of this.channel ? this.channel.presence() : []) {
      const data = member.data && typeof member.data === "object" ? member.data : {};
      const kind = member.kind === "agent" || data.kind === "agent" ? "agent" : member.kind || "human";
      const row = byClient.get(member.client_id) || { id: member.client_id, kind, status: null, connections: 0 };
      row.connections += 1;
      if (kind === "agent") row.kind = "agent";
      const status = typeof data.status === "string" ? data.status : null;
      if (status && (STATUS_RANK[status] || 0) >= (STATUS_RANK[row.status] || 0)) row.status = status;
      byClient.set(member.client_id, row);
    }
    return [...byClient.values()].sort(
      (a, b) => (a.kind === "agent" ? 0 : 1) - (b.kind === "agent" ? 0 : 1) || a.id.localeCompare(b.id),
    );
  }

  renderPresence() {
    const rows = this.members();
    const list = $("people-list");
    list.replaceChildren();
    for (const row of rows) {
      const item = el("li", `person ${row.kind}`);
      item.dataset.client = row.id;
      item.dataset.kind = row.kind;
      if (row.status) item.dataset.status = row.status;
      const button = el("button", "person-button");
      button.type = "button";
      button.append(avatar(row.id, row.kind));
      const label = el("span", "person-name", row.id);
      button.append(label);
      if (row.id === this.name) button.append(el("span", "you", "you"));
      if (row.kind === "agent") {
        button.append(el("span", `agent-status ${row.status || "idle"}`, row.status || "idle"));
        button.title = `Mention @${row.id}`;
        button.addEventListener("click", () => this.mention(row.id));
      } else {
        button.disabled = row.id === this.name;
        button.title = row.id === this.name ? "You" : `Mention @${row.id}`;
        button.addEventListener("click", () => this.mention(row.id));
      }
      item.append(button);
      list.append(item);
    }
    $("people-count").textContent = String(rows.length);
    this.renderActivity();
  }

  renderActivity() {
    const now = Date.now();
    const parts = [];
    for (const [who, until] of this.typers) {
      if (until > now) parts.push(`${who} is typing…`);
      else this.typers.delete(who);
    }
    for (const row of this.members()) if (row.status === "thinking") parts.push(`${row.id} is thinking…`);
    $("activity").textContent = parts.join("  ·  ");
  }

  mention(clientId) {
    const input = $("composer-input");
    const prefix = input.value && !/\s$/.test(input.value) ? " " : "";
    input.value += `${prefix}@${clientId} `;
    this.closePanels();
    input.focus();
    this.autosize();
  }

  // --- connection state ---------------------------------------------------------------------------

  showState({ state, reason }) {
    if (state === "connected" && this.client && this.continuityLost && this._lastState !== "connected") {
      this.continuityLost = false; // a fresh (re)connect after the loss clears the warning
    }
    this._lastState = state;
    const conn = $("conn");
    let label = state;
    let shown = state;
    if (state === "reconnecting") label = this.tokenProblem || "reconnecting…";
    if (state === "connecting") label = "connecting…";
    if (state === "closed") label = reason ? `disconnected: ${reason}` : "disconnected";
    if (this.continuityLost && state === "connected") {
      shown = "lost";
      label = "continuity lost";
    }
    conn.dataset.state = shown;
    conn.title = shown === "lost" ? "Messages may have been missed; the room was reloaded from history" : "";
    $("conn-text").textContent = label;
    document.body.dataset.connection = shown;
  }

  // --- ui wiring ----------------------------------------------------------------------------------

  askName(first) {
    const dialog = $("name-dialog");
    const input = $("name-input");
    input.value = this.name || "";
    $("name-cancel").hidden = first;
    $("name-hint").textContent = "Letters, digits and _ - . @ (spaces become dashes).";
    $("name-hint").classList.remove("error");
    dialog.dataset.first = first ? "1" : "";
    if (!dialog.open) dialog.showModal();
    input.focus();
    input.select();
  }

  submitName() {
    const name = sanitizeName($("name-input").value);
    if (!name) {
      $("name-hint").textContent = "Please use at least one letter or digit.";
      $("name-hint").classList.add("error");
      return;
    }
    const dialog = $("name-dialog");
    dialog.close();
    localStorage.setItem(NAME_KEY, name);
    if (!this.client) {
      this.name = name;
      this.boot();
    } else if (name !== this.name) {
      // A new name is a new identity: new token, new session. Start the page over with it.
      this.client.close();
      location.reload();
    }
  }

  autosize() {
    const input = $("composer-input");
    input.style.height = "auto";
    input.style.height = `${Math.min(input.scrollHeight, 180)}px`;
  }

  closePanels() {
    document.body.classList.remove("show-rooms", "show-people");
    $("scrim").hidden = true;
  }

  togglePanel(which) {
    const cls = `show-${which}`;
    const open = !document.body.classList.contains(cls);
    this.closePanels();
    if (open) {
      document.body.classList.add(cls);
      $("scrim").hidden = false;
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

    const input = $("composer-input");
    $("composer").addEventListener("submit", (event) => {
      event.preventDefault();
      const text = input.value.trim();
      if (!text || !this.channel) return;
      input.value = "";
      this.autosize();
      this.send(text);
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        $("composer").requestSubmit();
      }
    });
    input.addEventListener("input", () => {
      this.autosize();
      if (input.value.trim()) this.typing();
    });

    $("room-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const room = sanitizeRoom($("room-input").value);
      if (!room) return;
      $("room-input").value = "";
      location.hash = encodeURIComponent(room);
    });
    window.addEventListener("hashchange", () => {
      const room = this.roomFromHash();
      if (room && this.client) this.openRoom(room);
    });

    $("timeline").addEventListener("scroll", () => {
      if ($("timeline").scrollTop < 120) this.loadOlder();
    });
    $("rooms-toggle").addEventListener("click", () => this.togglePanel("rooms"));
    $("people-toggle").addEventListener("click", () => this.togglePanel("people"));
    $("scrim").addEventListener("click", () => this.closePanels());
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape") this.closePanels();
    });
  }
}

const app = new App();
window.agentchatApp = app; // for debugging in the console and for the browser tests
app.start();
