// people.js: who is in the room: the presence list, agents' status, "is typing…", and the composer's hint.
//
// Rules: presence has one entry per connection; the list shows one row per client id, agents first.
// Names come from identity.js's Names (two people called Ana are told apart by their ids). Whether the
// room has agents is decided from presence (members of kind agent), never assumed: a room without
// agents gets no "@planner" hint.

import { avatar, el } from "./bubble.js";
import { carriedName } from "./identity.js";

const STATUS_RANK = { streaming: 3, thinking: 2, idle: 1 };
const TYPING_SHOWN_MS = 5000;

export class People {
  /**
   * list, count, activity: the elements it renders into; names: the page's Names;
   * me(): my client id; onMention(handle): a row was clicked; onNames(): names changed (relabel).
   */
  constructor({ list, count, activity, names, me, onMention, onNames }) {
    this.listEl = list;
    this.countEl = count;
    this.activityEl = activity;
    this.names = names;
    this.me = me;
    this.onMention = onMention;
    this.onNames = onNames;
    this.channel = null;
    this.typers = new Map(); // client_id -> until (ms)
  }

  /** Shows `channel`'s presence from now on (null: nobody). */
  show(channel) {
    this.channel = channel;
    this.typers.clear();
    this.render();
  }

  /** One row per client: {id, name, kind, status, connections}, agents first, then by name, then id. */
  rows() {
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
    const rows = [...byClient.values()];
    for (const row of rows) row.name = this.names.name(row.id);
    return rows.sort(
      (a, b) =>
        (a.kind === "agent" ? 0 : 1) - (b.kind === "agent" ? 0 : 1) ||
        a.name.localeCompare(b.name) ||
        (a.id < b.id ? -1 : a.id > b.id ? 1 : 0),
    );
  }

  /** The agents present now (client ids). */
  agents() {
    return this.rows().filter((row) => row.kind === "agent").map((row) => row.id);
  }

  /** How to mention a client: by client id, which is what the server counts as a mention (and
   * notifies), whatever the display name. */
  handle(clientId) {
    return clientId;
  }

  /** Learns names from the presence set; re-renders the list. */
  render() {
    let learnt = false;
    for (const member of this.channel ? this.channel.presence() : []) {
      if (carriedName(member)) learnt = this.names.learnFrom(member) || learnt;
    }
    if (learnt) this.onNames();
    const rows = this.rows();
    this.listEl.replaceChildren();
    for (const row of rows) this.listEl.append(this._row(row));
    this.countEl.textContent = String(rows.length);
    this.renderActivity();
  }

  _row(row) {
    const mine = row.id === this.me();
    const item = el("li", `person ${row.kind}`);
    item.dataset.client = row.id;
    item.dataset.name = row.name;
    item.dataset.kind = row.kind;
    if (row.status) item.dataset.status = row.status;
    const button = el("button", "person-button");
    button.type = "button";
    button.append(avatar(row.id, row.kind, row.name));
    const label = el("span", "person-name", this.names.label(row.id));
    label.title = this.names.full(row.id);
    button.append(label);
    if (mine) button.append(el("span", "you", "you"));
    if (row.kind === "agent") button.append(el("span", `agent-status ${row.status || "idle"}`, row.status || "idle"));
    button.disabled = mine && row.kind !== "agent";
    button.title = mine ? "You" : `Mention @${this.handle(row.id)}`;
    button.addEventListener("click", () => this.onMention(this.handle(row.id)));
    item.append(button);
    return item;
  }

  /** Someone is typing (an ephemeral "typing" message). */
  typing(clientId) {
    if (clientId === this.me()) return;
    this.typers.set(clientId, Date.now() + TYPING_SHOWN_MS);
    this.renderActivity();
    setTimeout(() => this.renderActivity(), TYPING_SHOWN_MS + 50);
  }

  /** Someone's message arrived: they stopped typing. */
  spoke(clientId) {
    if (this.typers.delete(clientId)) this.renderActivity();
  }

  renderActivity() {
    const now = Date.now();
    const parts = [];
    for (const [who, until] of this.typers) {
      if (until > now) parts.push(`${this.names.label(who)} is typing…`);
      else this.typers.delete(who);
    }
    for (const row of this.rows()) if (row.status === "thinking") parts.push(`${this.names.label(row.id)} is thinking…`);
    this.activityEl.textContent = parts.join("  ·  ");
  }
}
