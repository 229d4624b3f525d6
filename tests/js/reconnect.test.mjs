// The close-code table of web/agentchat.js against tests/vectors/reconnect.json, and what an
// AgentChat client does after each close: stop (state "closed") or reconnect ("reconnecting").
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { AgentChat, RECONNECT_POLICY, reconnectPolicy } from "../../web/agentchat.js";

const vectors = JSON.parse(readFileSync(new URL("../vectors/reconnect.json", import.meta.url), "utf8"));

test("every code of the table has a vector", () => {
  const covered = new Set(vectors.cases.map((c) => c.code));
  for (const code of Object.keys(RECONNECT_POLICY)) assert.ok(covered.has(Number(code)), code);
});

for (const { code, action } of vectors.cases) {
  test(`reconnectPolicy(${code}) is ${action}`, () => {
    assert.equal(reconnectPolicy(code), action);
  });
}

/** A WebSocket stand-in the test drives by hand: it records frames and lets the test close it. */
class FakeSocket {
  static last = null;
  constructor(url) {
    this.url = url;
    this.sent = [];
    FakeSocket.last = this;
  }
  send(data) {
    this.sent.push(JSON.parse(data));
  }
  close() {}
}

async function connectedClient(token) {
  const client = new AgentChat({ url: "ws://127.0.0.1:1/v1/ws", token, WebSocket: FakeSocket, minDelay: 60_000 });
  const connected = client.connect();
  while (!FakeSocket.last || FakeSocket.last.sent.length === 0) {
    if (FakeSocket.last && FakeSocket.last.onopen) FakeSocket.last.onopen();
    await new Promise((resolve) => setImmediate(resolve));
  }
  const ws = FakeSocket.last;
  ws.onmessage({ data: JSON.stringify({ type: "connected", session_id: "s", key: "k", client_id: "ana",
                                        kind: "human", resumed: false, heartbeat_interval: 15 }) });
  await connected;
  return { client, ws };
}

for (const { code, action } of vectors.cases) {
  for (const token of ["fixed-token", async () => "fresh-token"]) {
    const kind = typeof token === "function" ? "a token function" : "a fixed token";
    const stops = action === "stop" || (action === "renew" && typeof token !== "function");
    test(`close ${code} with ${kind}: ${stops ? "stops" : "reconnects"}`, async () => {
      FakeSocket.last = null;
      const { client, ws } = await connectedClient(token);
      ws.onclose({ code: code ?? 1006, reason: "test" });
      assert.equal(client.state, stops ? "closed" : "reconnecting");
      client.close();
    });
  }
}
