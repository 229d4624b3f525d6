// shell.js: the page around the conversation: the connection pill and the side panels on small screens.
//
// The pill says connecting…, connected, reconnecting… (or why no token came), disconnected: <reason>,
// or "continuity lost" from a continuity loss until the next fresh (re)connect.

const $ = (id) => document.getElementById(id);

export class Shell {
  /** tokenProblem(): why the last token fetch failed, or null. */
  constructor({ tokenProblem }) {
    this.tokenProblem = tokenProblem;
    this.continuityLost = false;
    this.lastState = null;
  }

  /** Shows a client `state` event ({state, reason?}) in the pill and on <body data-connection>. */
  showState({ state, reason }) {
    if (state === "connected" && this.continuityLost && this.lastState !== "connected") {
      this.continuityLost = false; // a fresh (re)connect after the loss clears the warning
    }
    this.lastState = state;
    let label = state;
    let shown = state;
    if (state === "reconnecting") label = this.tokenProblem() || "reconnecting…";
    if (state === "connecting") label = "connecting…";
    if (state === "closed") label = reason ? `disconnected: ${reason}` : "disconnected";
    if (this.continuityLost && state === "connected") {
      shown = "lost";
      label = "continuity lost";
    }
    const conn = $("conn");
    conn.dataset.state = shown;
    conn.title = shown === "lost" ? "Messages may have been missed; the room was reloaded from history" : "";
    $("conn-text").textContent = label;
    document.body.dataset.connection = shown;
  }

  /** Says "continuity lost" until the next fresh (re)connect; `state` is the client's state now. */
  markContinuityLost(state) {
    this.continuityLost = true;
    this.showState({ state });
  }

  closePanels() {
    document.body.classList.remove("show-rooms", "show-people");
    $("scrim").hidden = true;
  }

  togglePanel(which) {
    const cls = `show-${which}`;
    const open = !document.body.classList.contains(cls);
    this.closePanels();
    if (open) {
      document.body.classList.add(cls);
      $("scrim").hidden = false;
    }
  }

  bind() {
    $("rooms-toggle").addEventListener("click", () => this.togglePanel("rooms"));
    $("people-toggle").addEventListener("click", () => this.togglePanel("people"));
    $("scrim").addEventListener("click", () => this.closePanels());
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape") this.closePanels();
    });
  }
}
