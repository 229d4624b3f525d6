// composer.js: what you write: the text box, the reply you are writing, sends in flight and their retries.
//
// Rules: Enter sends, Shift+Enter starts a new line, ArrowUp in an empty box edits your last message. A
// send shows at once (faded) and carries an id, so the client's resend after a drop cannot post it
// twice. A message over the server's size limit (from the `connected` frame's limits) is refused here,
// with the limit, before it leaves the page. The room's composer and a thread's are two of these: a
// thread's sends carry its root (`thread`).

import { displayText } from "./bubble.js";
import { publishProblem, precheck } from "./errors.js";
import { excerpt } from "./markdown.js";

const TYPING_EVERY_MS = 3000;

export class Composer {
  /**
   * app: the App (channel(), client, me(), publish(id, entry, timeline)); timeline: where sends show;
   * names: the page's Names; form, input: the form and its text box; replying: {box, author, text,
   * cancel} elements of the reply being written; thread(): the root serial sends go to, or null.
   */
  constructor({ app, timeline, names, form, input, replying, thread = () => null }) {
    this.app = app;
    this.timeline = timeline;
    this.names = names;
    this.form = form;
    this.input = input;
    this.replyingEls = replying;
    this.thread = thread;
    this.replying = null; // serial of the message being replied to
    this.lastTypingSent = 0;
  }

  bind() {
    this.form.addEventListener("submit", (event) => {
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
        this.form.requestSubmit();
      } else if (event.key === "Escape" && this.replying !== null) {
        this.replyTo(null);
      } else if (event.key === "ArrowUp" && !this.input.value && this.timeline.editLast(this.app.me())) {
        event.preventDefault();
      }
    });
    this.input.addEventListener("input", () => {
      this.autosize();
      if (this.input.value.trim()) this.typing();
    });
    this.replyingEls.cancel.addEventListener("click", () => this.replyTo(null));
  }

  /** Forgets the reply being written (another room or thread). */
  reset() {
    this.replyTo(null);
  }

  /** Starts (serial) or cancels (null) a reply to a message of the timeline. */
  replyTo(serial) {
    const original = serial === null ? null : this.timeline.message(serial);
    this.replying = original ? serial : null;
    const els = this.replyingEls;
    els.box.hidden = !original;
    if (!original) return;
    els.author.textContent = this.names.label(original.client_id);
    els.text.textContent = excerpt(displayText(original.data), 120);
    this.input.focus();
  }

  send(text) {
    const id = `${this.app.me()}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
    // The @client ids in it become its addressees (`to`), which agents and the server act on.
    this.sendAs(id, { text, replyTo: this.replying, thread: this.thread(), to: this.app.addressees(text) });
    this.replyTo(null);
  }

  /** Shows and publishes a send with a given id (a new one, or one moved to another thread). */
  sendAs(id, entry) {
    const app = this.app;
    this.timeline.pinned(() => this.timeline.addPending(id, entry.text, app.me(), entry.replyTo), true);
    const refused = precheck(entry.text, app.client.limits);
    if (refused) {
      this.timeline.pinned(() => this.timeline.failPending(id, publishProblem(refused, entry.text, app.client.limits)));
      return;
    }
    app.publish(id, entry, this.timeline);
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

  /** The placeholder: `text` ("Message Design Review", "Reply in the thread"). */
  setHint(text) {
    this.input.placeholder = text;
  }

  autosize() {
    this.input.style.height = "auto";
    this.input.style.height = `${Math.min(this.input.scrollHeight, 180)}px`;
  }
}
