// actions.js: what you can do to a message: react, reply, open its thread, edit it, delete it.
//
// Rules: actions show on hover (always on touch screens) on durable messages. Edit is offered on your
// own messages with text; Delete on every message: the page cannot see the token's rights, and a member
// with `moderate` may delete anyone's; a refusal is shown under the message. A deleted message takes no
// reactions, replies or edits. Editing happens in place (Enter saves, Shift+Enter a new line, Esc
// cancels); deleting asks once, in place. The calls themselves are the page's (ctx callbacks).

import { el } from "./markdown.js";

const ICONS = {
  react: '<svg viewBox="0 0 24 24" aria-hidden="true"><circle cx="11" cy="12" r="8"/><path d="M8 14.5c.8 1 1.8 1.5 3 1.5s2.2-.5 3-1.5M8.5 9.5h.01M13.5 9.5h.01M19 3v4M17 5h4"/></svg>',
  thread: '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 5h12v8H9l-4 3v-3H4zM16 9h4v8h-1v3l-4-3h-4v-2"/></svg>',
};

function button(className, label, title, onClick, icon = null) {
  const node = el("button", `${className} btn small action`);
  node.type = "button";
  node.title = title;
  node.setAttribute("aria-label", title);
  if (icon) node.innerHTML = ICONS[icon]; // static markup of this module, never message content
  else node.textContent = label;
  node.addEventListener("click", (event) => {
    event.stopPropagation();
    onClick(node);
  });
  return node;
}

/**
 * Adds the action buttons to a durable message's header (once). ctx: {isMine(clientId), threads
 * (whether threads open from here), onReply(serial), onThread(serial), onPickReaction(serial, anchor),
 * onEdit(serial, text) -> Promise<bool>, onDelete(serial) -> Promise<bool>}.
 */
export function addActions(node, msg, ctx) {
  if (node.querySelector(".actions")) return;
  const serial = msg.serial;
  const bar = el("span", "actions");
  bar.append(button("react-button", "", "Add a reaction", (b) => ctx.onPickReaction(serial, b), "react"));
  bar.append(button("reply-button", "Reply", "Reply to this message", () => ctx.onReply(serial)));
  if (ctx.threads) bar.append(button("thread-button", "", "Reply in a thread", () => ctx.onThread(serial), "thread"));
  bar.append(button("edit-button", "Edit", "Edit your message", () => startEdit(node, ctx)));
  bar.append(button("delete-button", "Delete", "Delete this message", () => confirmDelete(node, ctx)));
  const meta = node.querySelector(".meta");
  meta.insertBefore(bar, meta.querySelector(".stop, .retry"));
  updateActions(node, msg, ctx);
}

/** Shows the actions that fit the message now (yours or not, deleted or not, text or data). */
export function updateActions(node, msg, ctx) {
  const bar = node.querySelector(".actions");
  if (!bar) return;
  const gone = Boolean(msg.deleted);
  const mine = ctx.isMine(msg.client_id);
  node.dataset.editable = mine && !gone && typeof msg.data === "string" ? "1" : "";
  bar.querySelector(".react-button").hidden = gone;
  bar.querySelector(".reply-button").hidden = gone;
  bar.querySelector(".edit-button").hidden = !node.dataset.editable;
  bar.querySelector(".delete-button").hidden = gone;
  bar.querySelector(".delete-button").title = mine ? "Delete your message" : "Delete this message (needs the moderate right)";
  const thread = bar.querySelector(".thread-button");
  if (thread) thread.hidden = gone;
  if (gone) {
    closeInline(node);
    node.querySelector(":scope > .body > .problem")?.remove(); // whatever was refused is moot now
  }
}

function closeInline(node) {
  node.querySelector(".editor")?.remove();
  node.querySelector(".confirm")?.remove();
  node.classList.remove("editing");
}

/** Opens the in-place editor on one of your messages (its current text). */
export function startEdit(node, ctx) {
  if (!node.dataset.editable || node.querySelector(".editor")) return;
  closeInline(node);
  const serial = Number(node.dataset.serial);
  const original = ctx.messageText(serial);
  const form = el("form", "editor");
  const input = el("textarea", "editor-input");
  input.value = original;
  input.rows = Math.min(8, original.split("\n").length + 1);
  input.setAttribute("aria-label", "Edit your message");
  const save = el("button", "btn small primary", "Save");
  save.type = "submit";
  const cancel = el("button", "btn small", "Cancel");
  cancel.type = "button";
  const hint = el("span", "editor-hint", "Enter saves · Esc cancels");
  form.append(input, el("div", "editor-actions"));
  form.lastChild.append(hint, cancel, save);
  const close = () => {
    form.remove();
    node.classList.remove("editing");
  };
  cancel.addEventListener("click", close);
  input.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      close();
    } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text || text === original.trim()) {
      close();
      return;
    }
    save.disabled = true;
    const done = await ctx.onEdit(serial, text);
    save.disabled = false;
    if (done) close();
  });
  node.classList.add("editing");
  node.querySelector(".text").after(form);
  input.focus();
  input.setSelectionRange(input.value.length, input.value.length);
}

/** Asks in place whether to delete the message; Delete then calls ctx.onDelete. */
export function confirmDelete(node, ctx) {
  if (node.querySelector(".confirm")) return;
  closeInline(node);
  const serial = Number(node.dataset.serial);
  const row = el("div", "confirm");
  row.setAttribute("role", "alertdialog");
  row.append(el("span", "confirm-text", "Delete this message for everyone?"));
  const yes = el("button", "btn small danger confirm-delete", "Delete");
  yes.type = "button";
  const no = el("button", "btn small", "Cancel");
  no.type = "button";
  no.addEventListener("click", () => row.remove());
  yes.addEventListener("click", async () => {
    yes.disabled = true;
    await ctx.onDelete(serial);
    row.remove();
  });
  row.append(no, yes);
  node.querySelector(".body").append(row);
  yes.focus();
}
