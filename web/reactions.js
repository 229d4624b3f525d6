// reactions.js: reactions on a message: the bar of counts with who reacted, and the picker.
//
// Rules: a reaction is one emoji or a short name (`[a-z0-9_+-]{1,32}`, e.g. "+1", "lgtm"), as the
// server checks them. The bar shows the server's aggregate in its order: each reaction with its exact
// count, its listed reactors by name on hover (the server lists the first few; the rest are counted),
// and yours highlighted (from `my_reactions` and your own events). Clicking a reaction toggles yours.
// The picker offers common emoji with their names, a few short names, and any short name you type.

import { el } from "./markdown.js";

/** Common reactions: [emoji, words it is found by]. */
export const EMOJI = [
  ["👍", "thumbs up yes +1 like"], ["👎", "thumbs down no -1"], ["❤️", "heart love"], ["😂", "joy laugh"],
  ["😄", "smile happy"], ["🎉", "tada party celebrate"], ["🙏", "pray thanks please"], ["👀", "eyes looking"],
  ["🚀", "rocket ship launch"], ["✅", "check done yes"], ["❌", "x no cross"], ["🔥", "fire hot"],
  ["💯", "hundred perfect"], ["🤔", "thinking hmm"], ["😮", "wow surprised"], ["😢", "sad cry"],
  ["👏", "clap applause"], ["🙌", "raised hands hooray"], ["💡", "idea bulb"], ["⚠️", "warning careful"],
  ["🐛", "bug"], ["⏳", "hourglass wait later"], ["👋", "wave hello bye"], ["✨", "sparkles nice"],
  ["🤖", "robot agent bot"], ["🧠", "brain smart"], ["📌", "pin pushpin"], ["🛑", "stop"],
  ["➕", "plus add"], ["🆗", "ok"], ["😅", "sweat smile"], ["🤝", "handshake deal"],
];
/** Short-name reactions offered as they are. */
export const SHORT_NAMES = ["+1", "ack", "done", "lgtm", "wip", "ship-it"];
const SHORT_NAME = /^[a-z0-9_+-]{1,32}$/;
const NAMES_SHOWN = 10;

/** Whether `text` is a valid short-name reaction. */
export function isShortName(text) {
  return SHORT_NAME.test(text);
}

/** "You, Ana and 3 others": who reacted, by name (you first, as "You"), the unlisted rest counted. */
export function reactorsText(entry, names, isMine) {
  const clients = (entry.clients || []).slice(0, NAMES_SHOWN);
  const listed = clients.some(isMine) ? ["You"] : [];
  for (const id of clients) if (!isMine(id)) listed.push(names.label(id));
  const rest = Math.max(0, (entry.count || 0) - listed.length);
  if (rest) listed.push(`${rest} other${rest === 1 ? "" : "s"}`);
  if (listed.length <= 1) return listed.join("");
  return `${listed.slice(0, -1).join(", ")} and ${listed.at(-1)}`;
}

/**
 * Fills the reaction bar of a durable message's element from `msg.reactions` and `msg.my_reactions`.
 * ctx: {names, isMine(clientId), onToggleReaction(serial, reaction, mine), onPickReaction(serial, anchor)}.
 */
export function fillReactions(node, msg, ctx) {
  let bar = node.querySelector(":scope > .body > .reactions");
  const kinds = msg.deleted ? {} : msg.reactions || {};
  if (!Object.keys(kinds).length) {
    bar?.remove();
    return;
  }
  if (!bar) {
    bar = el("div", "reactions");
    const anchor = node.querySelector(":scope > .body > .replies, :scope > .body > .problem");
    node.querySelector(".body").insertBefore(bar, anchor);
  }
  const mine = new Set(msg.my_reactions || []);
  const chips = [];
  for (const [reaction, entry] of Object.entries(kinds)) {
    const chip = el("button", `reaction${mine.has(reaction) ? " mine" : ""}${isShortName(reaction) ? " named" : ""}`);
    chip.type = "button";
    chip.dataset.reaction = reaction;
    chip.setAttribute("aria-pressed", mine.has(reaction) ? "true" : "false");
    chip.title = `${reactorsText(entry, ctx.names, ctx.isMine)} reacted with ${reaction}`;
    chip.append(el("span", "reaction-face", reaction), el("span", "reaction-count", String(entry.count)));
    chip.addEventListener("click", () => ctx.onToggleReaction(msg.serial, reaction, mine.has(reaction)));
    chips.push(chip);
  }
  const add = el("button", "reaction add-reaction", "+");
  add.type = "button";
  add.title = "Add a reaction";
  add.setAttribute("aria-label", "Add a reaction");
  add.addEventListener("click", () => ctx.onPickReaction(msg.serial, add));
  bar.replaceChildren(...chips, add);
}

/** The reaction picker: one popover for the page, opened next to a button. */
export class Picker {
  /** onPick(serial, reaction): a reaction was chosen for message `serial`. */
  constructor({ onPick }) {
    this.onPick = onPick;
    this.serial = null;
    this.element = el("div", "picker");
    this.element.hidden = true;
    this.element.setAttribute("role", "dialog");
    this.element.setAttribute("aria-label", "Pick a reaction");
    this.search = el("input", "picker-search");
    this.search.placeholder = "Find an emoji or type a name";
    this.search.setAttribute("aria-label", "Find an emoji or type a short name");
    this.search.maxLength = 32;
    this.grid = el("div", "picker-grid");
    this.names = el("div", "picker-names");
    this.element.append(this.search, this.grid, this.names);
    this.search.addEventListener("input", () => this.render());
    this.search.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        this.element.querySelector(".picker-option")?.click();
      }
    });
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !this.element.hidden) this.close();
    });
    document.addEventListener("pointerdown", (event) => {
      if (!this.element.hidden && !this.element.contains(event.target) && event.target !== this.anchor) this.close();
    });
    document.body.append(this.element);
  }

  /** Opens the picker for message `serial` next to `anchor`. */
  open(serial, anchor) {
    this.serial = serial;
    this.anchor = anchor;
    this.search.value = "";
    this.render();
    this.element.hidden = false;
    const box = anchor.getBoundingClientRect();
    const width = this.element.offsetWidth;
    const height = this.element.offsetHeight;
    const left = Math.min(Math.max(8, box.right - width), window.innerWidth - width - 8);
    const below = box.bottom + 6 + height < window.innerHeight;
    this.element.style.left = `${left}px`;
    this.element.style.top = `${below ? box.bottom + 6 : Math.max(8, box.top - height - 6)}px`;
    this.search.focus();
  }

  close() {
    this.element.hidden = true;
    this.serial = null;
    this.anchor = null;
  }

  render() {
    const query = this.search.value.trim().toLowerCase();
    const emoji = EMOJI.filter(([face, words]) => !query || words.includes(query) || face === query);
    const named = SHORT_NAMES.filter((name) => !query || name.includes(query));
    if (query && isShortName(query) && !named.includes(query)) named.unshift(query);
    this.grid.replaceChildren(...emoji.map(([face, words]) => this._option(face, words.split(" ")[0], "emoji")));
    this.names.replaceChildren(...named.map((name) => this._option(name, name, "named")));
    if (!emoji.length && !named.length) this.names.append(el("span", "picker-empty", "Not a reaction: use an emoji or a-z, 0-9, _ + -"));
  }

  _option(reaction, label, kind) {
    const button = el("button", `picker-option ${kind}`, reaction);
    button.type = "button";
    button.title = label;
    button.setAttribute("aria-label", label === reaction ? reaction : `${reaction} ${label}`);
    button.dataset.reaction = reaction;
    button.addEventListener("click", () => {
      const serial = this.serial;
      this.close();
      if (serial !== null) this.onPick(serial, reaction);
    });
    return button;
  }
}
