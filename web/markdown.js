// markdown.js: turns what people and agents write into page content: markdown, links, code and @mentions.
//
// Rules: markdown goes through the vendored markdown-it with raw HTML off (`<b>` stays the text "<b>"),
// so the only markup in a message is what markdown-it builds from markdown. Only http(s) and mailto
// links become links (others stay text), they open in a new tab without the opener, and images are
// not loaded (markdown image syntax stays a link). A message without any markdown is shown as its exact
// text, whitespace included. @mentions are highlighted in text, never inside code or links.

import markdownit from "./vendor/markdown-it.js";

const SAFE_LINK = /^(https?:|mailto:)/i;
const MENTION = /@([\p{L}\p{N}_][\p{L}\p{N}\p{M}_\-.@]*)/gu;
const NO_MENTIONS = new Set(["CODE", "PRE", "A"]);
const CARET_HOSTS = new Set(["P", "LI", "UL", "OL", "BLOCKQUOTE", "TD", "TH", "TABLE", "TBODY", "TR", "H1", "H2", "H3", "H4", "H5", "H6"]);

const md = markdownit({ html: false, linkify: true, breaks: true, typographer: false });
// Loading a sender's image URL would tell a third party who reads the room: images stay links.
md.disable("image");
md.validateLink = (url) => SAFE_LINK.test(String(url).trim());
md.renderer.rules.link_open = (tokens, idx, options, env, self) => {
  tokens[idx].attrSet("target", "_blank");
  tokens[idx].attrSet("rel", "noopener noreferrer");
  return self.renderToken(tokens, idx, options);
};

/** Creates an element with an optional class and text (set with textContent). */
export function el(tag, className = "", text = undefined) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The mentions in a text, without the @ (trailing dots and dashes belong to the sentence). */
export function mentions(text) {
  const names = [];
  for (const match of String(text).matchAll(MENTION)) names.push(match[1].replace(/[.-]+$/, ""));
  return names;
}

/** Appends `text` to `parent` with @mentions wrapped in spans; `isMe(name)` marks mentions of you. */
export function renderText(parent, text, isMe) {
  let last = 0;
  for (const match of text.matchAll(MENTION)) {
    const name = match[1].replace(/[.-]+$/, "");
    const start = match.index;
    if (start > last) parent.append(text.slice(last, start));
    parent.append(el("span", isMe(name) ? "mention me" : "mention", `@${name}`));
    last = start + 1 + name.length;
  }
  if (last < text.length) parent.append(text.slice(last));
}

function isPlain(tokens) {
  if (tokens.length === 0) return true;
  if (tokens.length !== 3 || tokens[0].type !== "paragraph_open") return false;
  return tokens[1].children.every((t) => t.type === "text" || t.type === "softbreak");
}

function highlightMentions(root, isMe) {
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const found = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (!node.data.includes("@")) continue;
    let inside = false;
    for (let up = node.parentElement; up && up !== root; up = up.parentElement) {
      if (NO_MENTIONS.has(up.tagName)) inside = true;
    }
    if (!inside) found.push(node);
  }
  for (const node of found) {
    const fragment = document.createDocumentFragment();
    renderText(fragment, node.data, isMe);
    node.replaceWith(fragment);
  }
}

function addCopyButtons(root) {
  for (const pre of root.querySelectorAll("pre")) {
    const block = el("div", "code-block");
    const copy = el("button", "copy btn small", "Copy");
    copy.type = "button";
    copy.title = "Copy this code";
    copy.addEventListener("click", () => copyCode(pre, copy));
    pre.replaceWith(block);
    block.append(copy, pre);
  }
}

async function copyCode(pre, button) {
  const text = pre.textContent;
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch (_) {
    // No clipboard permission (an embedding frame, an old browser): select it for Ctrl+C instead.
    getSelection().selectAllChildren(pre);
    button.textContent = "Press Ctrl+C";
  }
  setTimeout(() => {
    button.textContent = "Copy";
  }, 1500);
}

/**
 * Fills `parent` with `text`: its exact text when it has no markdown, else the rendered markdown.
 * Returns "plain" or "markdown" (the caller styles the two differently).
 */
export function renderRich(parent, text, isMe) {
  const tokens = md.parse(text, {});
  if (isPlain(tokens)) {
    parent.replaceChildren();
    renderText(parent, text, isMe);
    return "plain";
  }
  // A <template> parses without running anything or loading anything; markdown-it escaped all text.
  const template = document.createElement("template");
  template.innerHTML = md.renderer.render(tokens, md.options, {});
  const content = template.content;
  highlightMentions(content, isMe);
  addCopyButtons(content);
  parent.replaceChildren(content);
  return "markdown";
}

/** The element a live preview's caret goes into: the innermost last block of the rendered text. */
export function caretHost(body) {
  let host = body;
  while (host.lastElementChild && CARET_HOSTS.has(host.lastElementChild.tagName)) host = host.lastElementChild;
  return host;
}

/** A one-line excerpt of a message's text for reply quotes: markdown marks dropped, at most `max` chars. */
export function excerpt(text, max = 90) {
  const plain = String(text)
    .replace(/```[^\n]*\n?/g, " ")
    .replace(/[*_~`>#|]+/g, "")
    .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1")
    .replace(/\s+/g, " ")
    .trim();
  return plain.length > max ? `${plain.slice(0, max)}…` : plain;
}
