// The ordering/gap rule of web/agentchat.js against tests/vectors/ordering.json (cases for "web"):
// once through the exported Sequencer, once through a Channel, which must re-attach from its
// position on a gap and hold newer serials until the attach is answered.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { Channel, Sequencer } from "../../web/agentchat.js";

const vectors = JSON.parse(readFileSync(new URL("../vectors/ordering.json", import.meta.url), "utf8"));
const cases = vectors.cases.filter((c) => c.applies.includes("web"));

test("the vectors have cases for the web client", () => {
  assert.ok(cases.length >= 5);
});

for (const c of cases) {
  test(`Sequencer: ${c.name}`, () => {
    const seq = new Sequencer(c.position);
    for (const step of c.steps) {
      if (step.op === "message") assert.equal(seq.offer(step.serial), step.expect, JSON.stringify(step));
      else seq.attached(step.serial, step.resumed);
      assert.equal(seq.position, step.position, JSON.stringify(step));
    }
  });

  test(`Channel: ${c.name}`, () => {
    // A connected client that records what the channel asks it to send (replies never come).
    const client = { state: "connected", sent: [], request(frame) { this.sent.push(frame); return new Promise(() => {}); } };
    const channel = new Channel(client, "room:x");
    if (c.position !== null) channel.position = { serial: c.position, epoch: "e1" };
    const delivered = [];
    channel.on("message", (m) => delivered.push(m.serial));
    for (const step of c.steps) {
      const before = { delivered: delivered.length, sent: client.sent.length, position: channel.position };
      if (step.op === "message") {
        channel.receive({ type: "message", channel: "room:x", serial: step.serial, data: "x" });
      } else {
        channel.receive({ type: "attached", channel: "room:x", resumed: step.resumed,
                           position: { serial: step.serial, epoch: "e1" } });
      }
      const what = JSON.stringify(step);
      const attaches = client.sent.slice(before.sent).filter((f) => f.type === "attach");
      if (step.expect === "deliver") assert.deepEqual(delivered.slice(before.delivered), [step.serial], what);
      else assert.equal(delivered.length, before.delivered, what);
      if (step.expect === "gap") {
        assert.equal(attaches.length, 1, what);
        assert.equal(attaches[0].position.serial, before.position.serial, what);
      } else {
        assert.equal(attaches.length, 0, what);
      }
      assert.equal(channel.position.serial, step.position, what);
    }
  });
}

test("Channel: a continuity loss is announced once, with the new position", () => {
  const client = { state: "connected", request() { return new Promise(() => {}); } };
  const channel = new Channel(client, "room:x");
  channel.position = { serial: 5, epoch: "e1" };
  const lost = [];
  channel.on("continuity_lost", (detail) => lost.push(detail));
  channel.receive({ type: "attached", channel: "room:x", resumed: false, position: { serial: 9, epoch: "e1" },
                     reason: { code: 80002, message: "history after the position is gone" } });
  assert.deepEqual(lost, [{ reason: { code: 80002, message: "history after the position is gone" },
                            position: { serial: 9, epoch: "e1" } }]);
});
