// rooms.js: what a typed room name becomes, and the rooms this browser opened with the titles typed.
//
// The rule (docs/web.md, "Rooms"): what a person types is the room's title ("Design Review"); its
// channel is `room:` + a slug: accents dropped, lowercase, spaces become "-", characters outside the
// channel pattern (and ":") removed, repeated "-" merged ("Zoë's Café!" -> "room:zoes-cafe"). A title
// with nothing left (李雷的房间) gets a slug from a hash of the
// title ("room:r-12r3ecp"), so everyone typing it meets in the same room. Text that already is a
// channel name with a namespace ("support:Queue-1") is used as it is. LocalRooms keeps the rooms opened
// here, most recent first, in localStorage; directory.js merges them with the server's directory,
// whose titles win.

const ROOMS_KEY = "agentchat.rooms";
const CHANNEL = /^[A-Za-z0-9][A-Za-z0-9_\-.:@]{0,199}$/;
const MAX_TITLE = 100;
const MAX_ROOMS = 12;
export const DEFAULT_ROOM = "room:lobby";

function hashSlug(text) {
  // FNV-1a: small, stable across browsers, and only needs to tell titles apart, not hide them.
  let h = 0x811c9dc5;
  for (const ch of text) {
    h ^= ch.codePointAt(0);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return `r-${h.toString(36)}`;
}

/** Whether `name` is a valid channel name. */
export function isChannel(name) {
  return CHANNEL.test(String(name));
}

/** What a typed room name opens: {channel, title}; null for blank input. */
export function roomFromTyped(raw) {
  const title = String(raw).normalize("NFC").replace(/\s+/g, " ").trim().slice(0, MAX_TITLE);
  if (!title) return null;
  if (title.includes(":") && !title.includes(" ") && isChannel(title)) return { channel: title, title };
  const slug = title
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .toLowerCase()
    .replace(/\s+/g, "-")
    .replace(/[^a-z0-9_.@-]/g, "")
    .replace(/-{2,}/g, "-")
    .replace(/^[-_.@]+/, "")
    .slice(0, 80)
    .replace(/[-_.@]+$/, "");
  return { channel: `room:${slug || hashSlug(title.toLocaleLowerCase())}`, title };
}

/** The rooms this browser opened, newest first, each {channel, title typed here}, kept in localStorage. */
export class LocalRooms {
  constructor(storage = localStorage) {
    this.storage = storage;
  }

  /** Known rooms, most recently opened first; room:lobby is always there. */
  list() {
    let stored = [];
    try {
      stored = JSON.parse(this.storage.getItem(ROOMS_KEY) || "[]");
    } catch (_) {
      stored = [];
    }
    const rooms = [];
    for (const item of Array.isArray(stored) ? stored : []) {
      // Before titles, the list held channel names only.
      const room = typeof item === "string" ? { channel: item, title: "" } : item;
      if (room && isChannel(room.channel) && !rooms.some((r) => r.channel === room.channel)) {
        rooms.push({ channel: room.channel, title: typeof room.title === "string" ? room.title.slice(0, MAX_TITLE) : "" });
      }
    }
    if (!rooms.some((r) => r.channel === DEFAULT_ROOM)) rooms.push({ channel: DEFAULT_ROOM, title: "" });
    return rooms;
  }

  /** The title to show for `channel`: the typed title kept for it, else the channel name. */
  titleOf(channel) {
    const room = this.list().find((r) => r.channel === channel);
    return (room && room.title) || channel;
  }

  /** Moves `channel` to the top; keeps its title, or sets it when one is given. */
  remember(channel, title = "") {
    const rooms = this.list();
    const known = rooms.find((r) => r.channel === channel);
    const entry = { channel, title: title || (known ? known.title : "") };
    const next = [entry, ...rooms.filter((r) => r.channel !== channel)].slice(0, MAX_ROOMS);
    if (!next.some((r) => r.channel === DEFAULT_ROOM)) next.push({ channel: DEFAULT_ROOM, title: "" });
    this.storage.setItem(ROOMS_KEY, JSON.stringify(next));
  }
}
