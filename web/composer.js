// composer.js: what you write: the text box, the reply you are writing, sends in flight and their retries.
//
// Rules: Enter sends, Shift+Enter starts a new line. A send shows at once (faded) and carries an id, so
// the client's resend after a drop cannot post it twice. A message over the server's size limit (from
// the `connected` frame's limits) is refused here, with the limit, before it leaves the page. The
// placeholder names an agent only when one is present.

import { displayText } from "./bubble.js";
import { publishProblem, precheck } from "./errors.js";
import { excerpt } from "./markdown.js";

const TYPING_EVERY_MS = 3000;
const $ = (id) => document.getElementById(id);

export class Composer {
  /** app: the App (channel, client, me(), people, publish(id, entry)); timeline; names: the page's Names. */
  constructor({ app, timeline, names }) {
    this.app = app;
    this.timeline = timeline;
    this.names = names;
    this.input = $("composer-input");
    this.replying = null; // serial of the message being replied to
    this.lastTypingSent = 0;
  }

  bind() {
    $("composer").addEventListener("submit", (event) => {
      event.preventDefault();
      const text = this.input.value.trim();
      if (!text || !this.app.channel) return;
      this.input.value = "";
      this.autosize();
      this.send(text);
    });
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        $("composer").requestSubmit();
      } else if (event.key === "Escape" && this.replying !== null) {
        this.replyTo(null);
      }
    });
    this.input.addEventListener("input", () => {
      this.autosize();
      if (this.input.value.trim()) this.typing();
    });
    $("replying-cancel").addEventListener("click", () => this.replyTo(null));
  }

  /** Forgets the reply being written (another room). */
  reset() {
    this.replyTo(null);
  }

  /** Starts (serial) or cancels (null) a reply to a message of the timeline. */
  replyTo(serial) {
    const original = serial === null ? null : this.timeline.message(serial);
    this.replying = original ? serial : null;
    $("replying").hidden = !original;
    if (!original) return;
    $("replying-author").textContent = this.names.label(original.client_id);
    $("replying-text").textContent = excerpt(displayText(original.data), 120);
    this.input.focus();
  }

  send(text) {
    const app = this.app;
    const me = app.me();
    const id = `${me}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    const entry = { text, replyTo: this.replying };
    this.replyTo(null);
    this.timeline.pinned(() => this.timeline.addPending(id, text, me, entry.replyTo), true);
    const refused = precheck(text, app.client.limits);
    if (refused) {
      this.timeline.pinned(() => this.timeline.failPending(id, publishProblem(refused, text, app.client.limits)));
      return;
    }
    app.publish(id, entry);
  }

  typing() {
    const now = Date.now();
    const app = this.app;
    if (now - this.lastTypingSent < TYPING_EVERY_MS || !app.channel || app.client.state !== "connected") return;
    this.lastTypingSent = now;
    app.channel.publish(null, { name: "typing", ephemeral: true }).catch(() => {});
  }

  /** Appends "@handle " to the text box. */
  mention(handle) {
    const prefix = this.input.value && !/\s$/.test(this.input.value) ? " " : "";
    this.input.value += `${prefix}@${handle} `;
    this.input.focus();
    this.autosize();
  }

  /** The placeholder: "Message Design Review", plus how to ask an agent when one is present. */
  updateHint() {
    const agents = this.app.people.agents();
    const title = this.app.roomTitle();
    this.input.placeholder = agents.length
      ? `Message ${title} (mention @${this.app.people.handle(agents[0])} to ask the agent)`
      : `Message ${title}`;
  }

  autosize() {
    this.input.style.height = "auto";
    this.input.style.height = `${Math.min(this.input.scrollHeight, 180)}px`;
  }
}
