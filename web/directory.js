// directory.js: the room list: the server's room directory (titles and topics, live `room` updates),
// the rooms this browser opened (rooms.js's LocalRooms, with titles typed where the server has none), and
// unread and mention badges from the server's `unread` counts.
//
// Rules: the list is the rooms you opened, most recent first, then the directory's other `room:` rooms
// by name. A room's title is the server's when it has one, else the one typed here, else its channel.
// "New room" asks the server to create the typed title's channel (`room_set` with `create`): a room that
// exists already is simply opened (40902), and without the `manage` right (40300) the channel is opened
// anyway with the typed title kept in this browser. Badges count what the server counts: top-level
// messages by others after your read mark, and mentions of you; rooms you never read have none. Rooms
// you have read are watched (attached live, without presence) so a message there asks the server for
// that room's counts at once; the others' badges are refreshed on connect and every half minute.

import { el } from "./markdown.js";

const PREFIX = "room:";
const MAX_PAGES = 5; // directory and read-mark pages fetched per refresh (100 rooms each)
const REFRESH_MS = 30_000; // badges of rooms you are not in are refreshed this often while visible
const MAX_WATCHED = 20; // rooms with a read mark attached in the background for live badges
const COUNT_DELAY_MS = 200; // messages in a burst share one `unread` request

export class RoomList {
  /** list: the <ul>; local: a LocalRooms; onChange(): titles or topics changed (header, tab title). */
  constructor({ list, local, onChange }) {
    this.listEl = list;
    this.local = local;
    this.onChange = onChange;
    this.client = null;
    this.current = null;
    this.server = new Map(); // channel -> directory entry
    this.counts = new Map(); // channel -> unread entry
    this.watched = new Set(); // channels attached in the background
    this.stale = new Set(); // watched channels whose counts are to be asked for
    this.timer = null;
  }

  /** Starts using `client`: refreshes on every connect, and every REFRESH_MS while the tab is visible. */
  use(client) {
    this.client = client;
    client.on("connected", () => this.refresh());
    this.timer = setInterval(() => {
      if (!document.hidden && client.state === "connected") this.refresh();
    }, REFRESH_MS);
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && client.state === "connected") this.refresh();
    });
  }

  /** Fetches the directory and your unread counts again (once at a time). */
  async refresh() {
    const client = this.client;
    if (!client || this.refreshing) return;
    this.refreshing = true;
    try {
      const rooms = new Map();
      let after = null;
      for (let page = 0; page < MAX_PAGES; page++) {
        const reply = await client.rooms({ prefix: PREFIX, after, limit: 100 });
        for (const room of reply.rooms) rooms.set(room.channel, room);
        if (!reply.has_more || !reply.next) break;
        after = reply.next;
      }
      const counts = new Map();
      after = null;
      for (let page = 0; page < MAX_PAGES; page++) {
        const reply = await client.unread({ after });
        for (const entry of reply.channels) counts.set(entry.channel, entry);
        if (!reply.has_more || !reply.next) break;
        after = reply.next;
      }
      this.server = rooms;
      this.counts = counts;
      this._watch();
      this.render();
      this.onChange();
    } catch (err) {
      console.warn("agentchat: room list:", err.code, err.message);
    } finally {
      this.refreshing = false;
    }
  }

  /** Takes a directory entry or a live `room` frame (both carry the whole title and topic: a field
   * left out is none) as the room's current state. */
  apply(room) {
    const next = { ...this.server.get(room.channel), ...room };
    for (const key of ["title", "topic"]) if (!room[key]) delete next[key];
    delete next.type;
    this.server.set(room.channel, next);
    this.render();
    this.onChange();
  }

  /** The server's unread entry of one channel replaced (the open room's counts). */
  setCount(entry) {
    this.counts.set(entry.channel, entry);
    this._watch();
    this.render();
  }

  /**
   * The open room's view is done with `channel`; `read`: you read something there. A room you read
   * stays attached for its badge (its presence entry leaves); any other is detached.
   */
  release(channel, read) {
    if (read) this._watchOne(channel.name, false);
    if (!this.watched.has(channel.name)) {
      channel.detach().catch(() => {});
      return;
    }
    channel.leave().catch(() => {});
    channel.attach({ presence: false }).catch(() => {});
  }

  /** What the room is called here: the server's title, the typed one, or the channel. */
  titleOf(channel) {
    return this.server.get(channel)?.title || this.local.titleOf(channel);
  }

  /** The room's topic, or "". */
  topicOf(channel) {
    return this.server.get(channel)?.topic || "";
  }

  /** Opens `channel` in the list (most recent first); `title` is the typed one, kept in this browser. */
  remember(channel, title = "") {
    this.local.remember(channel, title);
    this.render();
  }

  /** The rooms in list order: {channel, title, topic}. */
  rooms() {
    const seen = new Set();
    const out = [];
    for (const room of this.local.list()) {
      seen.add(room.channel);
      out.push(room.channel);
    }
    for (const channel of [...this.server.keys()].sort()) if (!seen.has(channel)) out.push(channel);
    return out.map((channel) => ({ channel, title: this.titleOf(channel), topic: this.topicOf(channel) }));
  }

  /**
   * Creates the room a person typed ({channel, title} from rooms.js) or finds it: resolves with null, or
   * with a sentence saying why the title could not be set (the room opens anyway).
   */
  async create(room) {
    this.remember(room.channel, room.title);
    if (!room.channel.startsWith(PREFIX) || room.title === room.channel) return null; // a channel name as typed
    try {
      this.apply(await this.client.setRoom(room.channel, { title: room.title, create: true }));
      return null;
    } catch (err) {
      if (err.code === 40902) {
        this.client.room(room.channel).then((found) => this.apply(found), () => {});
        return null;
      }
      if (err.code === 40300) return null; // no `manage` right: the typed title stays in this browser
      return `The room opens without a shared title: ${err.message || err.code}`;
    }
  }

  _watch() {
    for (const [name, entry] of this.counts) if (entry.last_read) this._watchOne(name, name !== this.current);
  }

  _watchOne(name, attach) {
    const client = this.client;
    if (this.watched.has(name) || this.watched.size >= MAX_WATCHED) return;
    this.watched.add(name);
    const channel = client.channel(name);
    channel.on("message", (m) => {
      if (name !== this.current && !m.ephemeral && m.client_id !== client.clientId) this._countSoon(name);
    });
    channel.on("room", (frame) => this.apply(frame));
    if (attach) channel.attach({ presence: false }).catch(() => {}); // live only, no backlog
  }

  _countSoon(name) {
    this.stale.add(name);
    clearTimeout(this.countTimer);
    this.countTimer = setTimeout(async () => {
      const channels = [...this.stale].slice(0, 100);
      this.stale.clear();
      try {
        const reply = await this.client.unread({ channels });
        for (const entry of reply.channels) this.counts.set(entry.channel, entry);
        this.render();
      } catch (err) {
        console.warn("agentchat: unread counts:", err.code, err.message);
      }
    }, COUNT_DELAY_MS);
  }

  /** Renders the list; `current` is the open room's channel (kept for later renders). */
  render(current = this.current) {
    this.current = current;
    const items = [];
    for (const room of this.rooms()) {
      const item = el("li", "room-item");
      const link = el("a", room.channel === current ? "current" : "", room.title);
      link.href = `#${encodeURIComponent(room.channel)}`;
      link.title = room.topic ? `${room.channel}: ${room.topic}` : room.channel;
      link.dataset.channel = room.channel;
      if (room.channel === current) link.setAttribute("aria-current", "page");
      item.append(link);
      const count = this.counts.get(room.channel);
      if (count && room.channel !== current && count.last_read) {
        if (count.mentions) {
          const badge = el("span", "badge mention", `@${count.mentions}`);
          badge.title = `${count.mentions} mention${count.mentions === 1 ? "" : "s"} of you`;
          item.append(badge);
        }
        if (count.unread) {
          const badge = el("span", "badge unread", `${count.unread}${count.capped ? "+" : ""}`);
          badge.title = `${count.unread} unread message${count.unread === 1 ? "" : "s"}`;
          item.append(badge);
        }
        item.classList.toggle("has-unread", count.unread > 0);
        item.dataset.badges = String(item.querySelectorAll(".badge").length);
      }
      items.push(item);
    }
    this.listEl.replaceChildren(...items);
  }
}

/** The dialog that sets the open room's title and topic (`room_set`; needs the `manage` right). */
export class RoomDialog {
  /** app: the App (room, client, rooms: RoomList). */
  constructor({ app }) {
    this.app = app;
    this.dialog = document.getElementById("room-dialog");
    this.title = document.getElementById("room-dialog-title");
    this.topic = document.getElementById("room-dialog-topic");
    this.hint = document.getElementById("room-dialog-hint");
  }

  bind() {
    document.getElementById("room-edit").addEventListener("click", () => this.open());
    document.getElementById("room-dialog-cancel").addEventListener("click", () => this.dialog.close());
    document.getElementById("room-dialog-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.save();
    });
  }

  open() {
    const { app } = this;
    this.title.value = app.rooms.titleOf(app.room);
    this.topic.value = app.rooms.topicOf(app.room);
    this.hint.textContent = `Everyone in ${app.room} sees these.`;
    this.hint.classList.remove("error");
    this.dialog.showModal();
    this.title.focus();
  }

  async save() {
    const { app } = this;
    const title = this.title.value.replace(/\s+/g, " ").trim();
    const topic = this.topic.value.replace(/\s+/g, " ").trim();
    try {
      app.rooms.apply(await app.client.setRoom(app.room, { title: title || undefined, topic }));
      this.dialog.close();
    } catch (err) {
      this.hint.classList.add("error");
      this.hint.textContent =
        err.code === 40300
          ? "You may not change this room's title or topic: it needs the manage right."
          : `Not saved: ${err.message || err.code}`;
    }
  }
}
