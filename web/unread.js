// unread.js: what arrived while you were not looking: a divider, a "3 new messages" button, the tab title.
//
// Rules: a message from someone else that arrives while the room is scrolled up or the tab is hidden is
// unread; the view never moves for it. The first unread of a spell gets the "New messages" divider;
// mentions of you are counted apart. Reaching the bottom of a visible room reads everything. Counts
// are local to this page (server-side read state comes later).

import { el } from "./markdown.js";

export class Unread {
  /**
   * timeline: the Timeline; jump: the "N new messages" button; bottom: the scroll-to-bottom button;
   * onChange(count): called whenever the unread count changes (the app puts it in the tab title).
   */
  constructor({ timeline, jump, bottom, onChange }) {
    this.timeline = timeline;
    this.jump = jump;
    this.bottom = bottom;
    this.onChange = onChange;
    this.count = 0;
    this.mentions = 0;
    this.firstSerial = null;
    jump.addEventListener("click", () => this.jumpToFirst());
    bottom.addEventListener("click", () => {
      this.timeline.scrollToBottom();
      this.update();
    });
    this.render();
  }

  /** Whether new messages should be counted rather than shown as read (scrolled up or tab hidden). */
  away() {
    return document.hidden || !this.timeline.nearBottom();
  }

  /** Counts a newly arrived message from someone else; call it before adding the message. */
  note(msg, mentionsMe) {
    if (this.count === 0) {
      this.firstSerial = msg.serial;
      this.timeline.placeDivider(msg.serial);
    }
    this.count += 1;
    if (mentionsMe) this.mentions += 1;
    this.render();
    this.onChange(this.count);
  }

  /** Re-checks after a scroll, a resize or the tab becoming visible: at the bottom, all is read. */
  update() {
    if (this.count && !this.away()) {
      this.count = 0;
      this.mentions = 0;
      this.onChange(0);
    }
    this.render();
  }

  /** Forgets everything (another room, a reloaded view). */
  reset() {
    this.count = 0;
    this.mentions = 0;
    this.firstSerial = null;
    this.timeline.removeDivider();
    this.render();
    this.onChange(0);
  }

  /** Scrolls to the first unread message (the divider). */
  jumpToFirst() {
    const divider = this.timeline.divider;
    if (divider) divider.scrollIntoView({ block: "start" });
    else this.timeline.scrollToBottom();
    this.update();
  }

  render() {
    const scrolledUp = !this.timeline.nearBottom();
    this.bottom.hidden = !scrolledUp;
    this.jump.hidden = !(scrolledUp && this.count > 0);
    const label = `${this.count} new message${this.count === 1 ? "" : "s"}`;
    const parts = [el("span", "jump-count", label)];
    if (this.mentions) {
      parts.push(el("span", "jump-mentions", `${this.mentions} mention${this.mentions === 1 ? "" : "s"}`));
    }
    this.jump.replaceChildren(...parts);
  }
}
