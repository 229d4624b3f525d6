// tokens.js: where the page gets its tokens: from the embedding site, or from a dev-mode server.
//
// Rules: an embedding site sets `window.agentchatConfig = { token, name? }` before app.js runs; `token`
// is a string or an (async) function returning one, called on every connect and renewal. Without it
// the page asks `POST /v1/dev/token` (servers started with --dev) for a token of its own client id,
// with its display name (servers that know `display_name` put it in the token; others ignore it). A
// server without --dev answers 404: the page then says how to get a token instead of retrying.

/** The dev endpoint is off (404): the page needs an embedding site's token (docs/web.md). */
export class NoTokenSource extends Error {
  constructor(message) {
    super(message);
    this.name = "NoTokenSource";
  }
}

/** The embedding site's configuration, if it gave a usable one: {token, name?} or null. */
export function embeddedConfig(win = window) {
  const config = win.agentchatConfig;
  if (!config || typeof config !== "object") return null;
  if (typeof config.token !== "function" && typeof config.token !== "string") return null;
  return config;
}

/** Fetches a dev-mode token for {clientId, name}; throws NoTokenSource when the server is not in dev mode. */
export async function devToken(identity) {
  const response = await fetch("/v1/dev/token", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ client_id: identity.clientId, kind: "human", display_name: identity.name }),
  });
  if (response.status === 404) throw new NoTokenSource("this server is not in development mode");
  if (!response.ok) throw new Error(`no token: HTTP ${response.status}`);
  return (await response.json()).token;
}

/**
 * A token function for AgentChat whose first token is fetched now (so a missing source is known before
 * connecting). `fetchOne()` gets a token; resolves with the function, rejects as fetchOne does.
 */
export async function tokenFunction(fetchOne) {
  let first = await fetchOne();
  return async () => {
    if (first) {
      const token = first;
      first = null;
      return token;
    }
    return await fetchOne();
  };
}

/** A token function over the embedding site's config.token (a string or a function). */
export function configFetcher(config) {
  return async () => {
    const token = typeof config.token === "function" ? await config.token() : config.token;
    if (typeof token !== "string" || !token) throw new Error("agentchatConfig.token gave no token");
    return token;
  };
}
