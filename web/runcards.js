// runcards.js: agents' work in the room's timeline: a card per run (its agent and status, reasoning and
// tool calls collapsed, the answer as markdown, sub-runs inside their parent), input requests with
// their buttons, "planner is on it" under a claimed message, and the loop brake's notice.
//
// Rules: a card is rebuilt from the run as agentchat-runs.js keeps it, so a live run, a replay and a
// reload show the same card. A top-level run stands at its start record's serial; a sub-run sits inside
// its parent's card (at the top level until the parent is known). A rebuild keeps what the reader
// opened (<details>) and typed (an answer being written), and happens at most once per RENDER_MS while
// lanes stream. Text reaches the page as text, or through markdown.js for answers.

import { avatar, el, timeElement } from "./bubble.js";
import { renderRich } from "./markdown.js";

const RENDER_MS = 80;
const ACTIVE = new Set(["running", "input_required"]);

/** What a run's status badge says: running, needs input, completed, failed: why, cancelled by X, interrupted. */
export function runBadge(run, who) {
  switch (run.status) {
    case "input_required":
      return "needs input";
    case "failed":
      return `failed: ${(run.error && run.error.message) || "error"}`;
    case "cancelled":
      return run.cancelled_by ? `cancelled by ${who(run.cancelled_by)}` : "cancelled";
    case "aborted":
      return run.error && run.error.message ? `interrupted: ${run.error.message}` : "interrupted";
    default:
      return run.status;
  }
}

/** How a closed request reads: "ana approved", "bob chose blue", "expired". */
export function answerText(request, who) {
  const answer = request.answer;
  if (request.status === "expired" || !answer) return "expired";
  const by = who(answer.client_id);
  const note = answer.data === undefined || answer.data === null ? "" : displayData(answer.data);
  if (answer.outcome === "approve") return note ? `${by} approved: ${note}` : `${by} approved`;
  if (answer.outcome === "deny") return note ? `${by} denied: ${note}` : `${by} denied`;
  if (request.shape && request.shape.kind === "choice") return `${by} chose ${note}`;
  return `${by} answered: ${note}`;
}

function displayData(data) {
  return typeof data === "string" ? data : JSON.stringify(data);
}

/** Where a tool call stands: its arguments streaming, waiting for its result, done (or how it ended). */
function toolState(lane) {
  if (lane.result !== undefined) return "done";
  if (lane.status === "open") return "calling…";
  return lane.status === "complete" ? "waiting for the result" : lane.status;
}

/** A tool call's arguments: pretty JSON once they parse, else the text so far. */
function prettyArgs(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch (_) {
    return text;
  }
}

export class RunCards {
  /**
   * timeline: the room's Timeline; ctx: the bubble context (names, isMine, isMe); onAnswer(request,
   * outcome, data): sends an answer; onCancel(run): stops a run, resolving with what went wrong (or
   * null); requestOf(id): a request of
   * the open room's AgentRoom, or undefined.
   */
  constructor({ timeline, ctx, onAnswer, onCancel, requestOf }) {
    this.timeline = timeline;
    this.requestOf = requestOf;
    this.ctx = ctx;
    this.onAnswer = onAnswer;
    this.onCancel = onCancel;
    this.clear();
  }

  /** Forgets every card (the timeline was emptied). */
  clear() {
    for (const card of this.cards?.values() || []) clearTimeout(card.timer);
    this.cards = new Map(); // run_id -> {node, body, subruns, run, timer, last}
    this.asks = new Map(); // request_id -> card of a request made outside a run
    this.problems = new Map(); // request_id -> what went wrong answering it
    this.brakes = new Set(); // serials of loop brake notices shown
  }

  /** Shows the changes agentchat-runs.js reported ([{type, value}]). */
  apply(changes) {
    for (const { type, value } of changes) {
      if (type === "run") this.showRun(value);
      else if (type === "request") this.showRequest(value);
      else if (type === "claim") this.showClaim(value);
    }
  }

  /** Creates or refreshes a run's card. */
  showRun(run) {
    let card = this.cards.get(run.run_id);
    if (!card) {
      card = this._build(run);
      this.cards.set(run.run_id, card);
      this._render(card);
      return;
    }
    card.run = run;
    if (card.timer !== null) return;
    const wait = card.last + RENDER_MS - performance.now();
    if (wait <= 0) this._render(card);
    else card.timer = setTimeout(() => this.timeline.pinned(() => this._render(card)), wait);
  }

  /** A request outside a run gets its own card; one in a run shows in the run's card. */
  showRequest(request) {
    if (request.run_id || request.serial === null) return;
    let card = this.asks.get(request.request_id);
    if (!card) {
      const node = el("li", "ask-card");
      node.dataset.requestId = request.request_id;
      node.append(this._head(request.client_id, request.kind || "agent", request.ts), el("div", "run-body"));
      card = { node, request };
      this.asks.set(request.request_id, card);
      this.timeline.place(node, request.serial);
    }
    card.request = request;
    const typed = card.node.querySelector(".answer-input")?.value;
    card.node.querySelector(".run-body").replaceChildren(this._request(request, typed));
  }

  /** "planner is on it" under the claimed message while the claim is held; nothing otherwise. */
  showClaim(claim) {
    const node = this.timeline.element(claim.serial);
    if (!node) return;
    node.querySelector(".claim-note")?.remove();
    if (claim.state !== "held") return;
    const who = this.ctx.isMine(claim.client_id) ? "You are" : `${this.ctx.names.label(claim.client_id)} is`;
    const note = el("div", "claim-note", `${who} on it`);
    note.dataset.client = claim.client_id;
    node.querySelector(".body").append(note);
  }

  /** The loop brake's system message, as a notice at its place. */
  showLoopBrake(m) {
    if (this.brakes.has(m.serial)) return;
    this.brakes.add(m.serial);
    const budget = m.data && typeof m.data === "object" && m.data.budget;
    const turns = typeof budget === "number" ? `${budget} turns` : "too many turns";
    const text = `Agents paused after ${turns} without a person; say something to let them continue.`;
    const node = el("li", "notice loop-brake", text);
    this.timeline.place(node, m.serial);
  }

  /** Refreshes every card (a name was learnt). */
  relabel() {
    for (const card of this.cards.values()) this._render(card);
    for (const ask of this.asks.values()) this.showRequest(ask.request);
  }

  /** Records what went wrong answering a request, and shows it. */
  problem(request, text) {
    this.problems.set(request.request_id, text);
    this._refreshRequest(request);
  }

  // --- internals ----------------------------------------------------------------------------------

  _who(clientId) {
    return this.ctx.isMine(clientId) ? "you" : this.ctx.names.label(clientId);
  }

  _head(clientId, kind, ts) {
    const head = el("div", "meta run-head");
    const author = el("span", "author", this.ctx.names.label(clientId));
    author.title = this.ctx.names.full(clientId);
    head.append(avatar(clientId, kind, this.ctx.names.name(clientId)), author);
    if (kind === "agent") head.append(el("span", "tag", "agent"));
    if (ts) head.append(timeElement(ts));
    return head;
  }

  _build(run) {
    const node = el("li", "run-card");
    node.dataset.runId = run.run_id;
    const body = el("div", "run-body");
    const subruns = el("ol", "subruns");
    node.append(el("div", "meta run-head"), body, subruns);
    return { node, body, subruns, run, timer: null, last: -Infinity, stopping: false, problem: null };
  }

  async _stop(card) {
    card.stopping = true;
    card.problem = null;
    this._render(card);
    const problem = await this.onCancel(card.run);
    card.stopping = false;
    card.problem = problem;
    if (this.cards.get(card.run.run_id) === card) this.timeline.pinned(() => this._render(card));
  }

  _render(card) {
    card.timer = null;
    card.last = performance.now();
    const run = card.run;
    const { node } = card;
    node.dataset.status = run.status;
    node.dataset.client = run.client_id || "";
    const head = this._head(run.client_id, run.kind, run.ts);
    const badge = el("span", `status run-status ${run.status}`, runBadge(run, (id) => this._who(id)));
    head.append(badge);
    if (ACTIVE.has(run.status)) {
      const stop = el("button", "stop btn small", card.stopping ? "Stopping…" : "Stop");
      stop.type = "button";
      stop.title = "Cancel this run";
      stop.disabled = card.stopping;
      stop.addEventListener("click", () => this._stop(card));
      head.append(stop);
    }
    node.querySelector(":scope > .run-head").replaceWith(head);
    const open = new Set([...card.body.querySelectorAll("details[open]")].map((d) => d.dataset.key));
    const typed = new Map([...card.body.querySelectorAll(".answer-input")].map((i) => [i.dataset.requestId, i.value]));
    const parts = run.lanes().map((lane) => this._lane(lane, open));
    if (run.state !== undefined && run.state !== null) parts.unshift(this._state(run, open));
    for (const requestId of run.requests) {
      const request = this.requestOf(requestId);
      if (request) parts.push(this._request(request, typed.get(requestId)));
    }
    if (card.problem) parts.push(Object.assign(el("div", "problem", card.problem), { role: "alert" }));
    const focused = card.body.contains(document.activeElement) && document.activeElement.dataset.requestId;
    card.body.replaceChildren(...parts);
    // A reader typing an answer while the run streams keeps the box, its text and the caret.
    const box = focused && card.body.querySelector(`.answer-input[data-request-id="${CSS.escape(focused)}"]`);
    if (box) {
      box.focus();
      box.setSelectionRange(box.value.length, box.value.length);
    }
    this._position(card);
  }

  _lane(lane, open) {
    if (lane.lane === "text") {
      const box = el("div", `lane lane-text ${lane.status}`);
      const text = el("div", "text");
      if (lane.text) text.classList.add(renderRich(text, lane.text, this.ctx.isMe));
      box.append(text);
      if (lane.status === "failed" && lane.error) box.append(el("div", "lane-error", `failed: ${lane.error.message}`));
      return box;
    }
    const details = el("details", `lane lane-${lane.lane.replace("_", "-")} ${lane.status}`);
    details.dataset.key = lane.key;
    details.open = open.has(lane.key);
    const summary = el("summary");
    if (lane.lane === "reasoning") {
      summary.append(el("span", "lane-title", lane.status === "open" ? "Thinking…" : "Reasoning"));
      details.append(summary, el("div", "lane-body reasoning-text", lane.text));
      return details;
    }
    const name = (lane.tool_call && lane.tool_call.name) || "tool";
    details.dataset.tool = name;
    summary.append(el("span", "lane-title", `Tool call: ${name}`), el("span", "tool-state", toolState(lane)));
    details.append(summary, el("div", "lane-label", "Arguments"));
    details.append(el("pre", "tool-args", lane.status === "open" ? lane.text : prettyArgs(lane.text)));
    if (lane.result !== undefined) {
      details.append(el("div", "lane-label", "Result"));
      const result = typeof lane.result === "string" ? lane.result : JSON.stringify(lane.result, null, 2);
      details.append(el("pre", "tool-result", result));
    }
    return details;
  }

  _state(run, open) {
    // Shared state (run_state) is live only: a snapshot plus deltas, never in history.
    const details = el("details", "lane lane-state");
    details.dataset.key = "state";
    details.open = open.has("state");
    details.append(el("summary", "", run.stale ? "State (waiting for a fresh snapshot)" : "State"));
    details.append(el("pre", "run-state", JSON.stringify(run.state, null, 2)));
    return details;
  }

  _request(request, typed = undefined) {
    const box = el("div", `input-request ${request.status}`);
    box.dataset.requestId = request.request_id;
    box.dataset.status = request.status;
    box.append(el("div", "prompt", request.prompt));
    if (request.status !== "pending") {
      box.append(el("div", `answer-line ${request.status}`, answerText(request, (id) => this._who(id))));
    } else {
      box.append(this._controls(request, typed));
    }
    const problem = this.problems.get(request.request_id);
    if (problem) {
      const line = el("div", "problem", problem);
      line.setAttribute("role", "alert");
      box.append(line);
    }
    return box;
  }

  _controls(request, typed) {
    const row = el("div", "answer-controls");
    const send = (outcome, data) => {
      for (const control of row.querySelectorAll("button, input, textarea")) control.disabled = true;
      this.problems.delete(request.request_id);
      this.onAnswer(request, outcome, data);
    };
    const button = (label, outcome, data, className = "") => {
      const b = el("button", `btn small answer-button ${className}`, label);
      b.type = "button";
      b.addEventListener("click", () => send(outcome, data));
      return b;
    };
    const kind = (request.shape && request.shape.kind) || "approval";
    if (kind === "approval") {
      row.append(button("Approve", "approve", undefined, "approve primary"), button("Deny", "deny", undefined, "deny"));
    } else if (kind === "choice") {
      for (const option of request.shape.options || []) row.append(button(option, "data", option, "option"));
      row.append(button("Deny", "deny", undefined, "deny"));
    } else {
      const input = el(kind === "json" ? "textarea" : "input", "answer-input");
      input.dataset.requestId = request.request_id;
      input.placeholder = kind === "json" ? "JSON answer" : "Your answer";
      if (typed !== undefined) input.value = typed;
      const submit = el("button", "btn small answer-button primary", "Send");
      submit.type = "button";
      submit.addEventListener("click", () => {
        if (kind !== "json") return send("data", input.value);
        try {
          send("data", JSON.parse(input.value));
        } catch (_) {
          this.problem(request, "That is not valid JSON.");
        }
      });
      input.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && !event.shiftKey && kind !== "json") submit.click();
      });
      row.append(input, submit, button("Deny", "deny", undefined, "deny"));
    }
    return row;
  }

  _refreshRequest(request) {
    const ask = this.asks.get(request.request_id);
    if (ask) this.showRequest(request);
    const card = request.run_id && this.cards.get(request.run_id);
    if (card) this._render(card);
  }

  _position(card) {
    const run = card.run;
    const parent = run.parent_run_id ? this.cards.get(run.parent_run_id) : null;
    const serial = run.serial ?? Math.min(...run.lanes().map((l) => l.serial ?? Infinity));
    if (parent) {
      if (card.node.parentElement !== parent.subruns) parent.subruns.append(card.node);
    } else if (Number.isFinite(serial) && Number(card.node.dataset.serial) !== serial) {
      this.timeline.place(card.node, serial);
      this.timeline.observe?.(card.node); // read marks move as the card scrolls into view
    } else if (!card.node.isConnected) {
      this.timeline.live.append(card.node); // a run seen live before any of its records: below the list
    }
    // Sub-runs shown before their parent move into it now.
    for (const other of this.cards.values()) {
      const child = other.run.parent_run_id === run.run_id;
      if (child && other.node.parentElement !== card.subruns) card.subruns.append(other.node);
    }
  }
}
