// A Channel of web/agentchat.js: events are delivered apart from messages, in serial order, and presence
// entered after a lost session names that session (`replaces`), so it is never listed twice.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Channel } from "../../web/agentchat.js";

function fakeClient(extra = {}) {
  return { state: "connected", sent: [], request(frame) { this.sent.push(frame); return new Promise(() => {}); }, ...extra };
}

test("durable events go to 'event', never to 'message', in serial order with the messages", () => {
  const channel = new Channel(fakeClient(), "room:x");
  channel.position = { serial: 0, epoch: "e" };
  const seen = [];
  channel.on("message", (m) => seen.push(["message", m.serial]));
  channel.on("event", (m) => seen.push(["event", m.serial]));
  channel.receive({ type: "message", channel: "room:x", serial: 1, data: "hi" });
  channel.receive({ type: "message", channel: "room:x", serial: 2, action: "react", target: 1, data: "👍" });
  channel.receive({ type: "message", channel: "room:x", serial: 2, action: "react", target: 1, data: "👍" });
  channel.receive({ type: "message", channel: "room:x", serial: 3, data: "again", thread: 1 });
  assert.deepEqual(seen, [["message", 1], ["event", 2], ["message", 3]]);
});

test("presence entered after a lost session replaces that session's entry", () => {
  const client = fakeClient({ lostSession: "old-session" });
  const channel = new Channel(client, "room:x");
  channel.enter({ kind: "human" });
  assert.deepEqual(client.sent.at(-1), { type: "presence", channel: "room:x", action: "enter", data: { kind: "human" }, replaces: "old-session" });
  client.lostSession = null;
  channel.enter({ kind: "human" });
  assert.equal("replaces" in client.sent.at(-1), false);
});

test("a live room frame is the channel's 'room' event", () => {
  const channel = new Channel(fakeClient(), "room:x");
  const got = [];
  channel.on("room", (frame) => got.push(frame.title));
  channel.receive({ type: "room", channel: "room:x", title: "X", updated_by: "ana", updated_ts: 1 });
  assert.deepEqual(got, ["X"]);
});
