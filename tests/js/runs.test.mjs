// Agent rooms as a reader keeps them (web/agentchat-runs.js): JSON Patch, run versions, lanes from live
// streams and records in any order, claims by token, input requests and their answers.
import assert from "node:assert/strict";
import { test } from "node:test";

import { AgentRoom, Channel, applyPatch } from "../../web/agentchat.js";

test("applyPatch does add, remove, replace, move, copy and test without changing its input", () => {
  const doc = { plan: ["a"], n: 1, nested: { x: 1 } };
  const out = applyPatch(doc, [
    { op: "add", path: "/plan/-", value: "b" },
    { op: "add", path: "/plan/0", value: "z" },
    { op: "replace", path: "/n", value: 2 },
    { op: "copy", from: "/nested", path: "/copy" },
    { op: "move", from: "/nested/x", path: "/moved" },
    { op: "remove", path: "/plan/0" },
    { op: "test", path: "/moved", value: 1 },
    { op: "add", path: "/a~1b", value: true },
  ]);
  assert.deepEqual(out, { plan: ["a", "b"], n: 2, nested: {}, copy: { x: 1 }, moved: 1, "a/b": true });
  assert.deepEqual(doc, { plan: ["a"], n: 1, nested: { x: 1 } });
});

test("applyPatch refuses an operation that does not apply", () => {
  assert.throws(() => applyPatch({ a: 1 }, [{ op: "test", path: "/a", value: 2 }]));
  assert.throws(() => applyPatch({ a: 1 }, [{ op: "remove", path: "/b" }]));
  assert.throws(() => applyPatch({ a: [] }, [{ op: "replace", path: "/a/3", value: 1 }]));
  assert.throws(() => applyPatch({}, [{ op: "jump", path: "/a" }]));
});

const status = (version, status, extra = {}) => ({ type: "run_status", run_id: "r1", version, status, client_id: "planner", kind: "agent", serial: 2, ts: 5, ...extra });

test("a run keeps the highest version and never takes back its end record", () => {
  const room = new AgentRoom("room:x");
  room.frame(status(2, "input_required", { pending: 1 }));
  assert.equal(room.frame(status(1, "running")).length, 0);
  assert.equal(room.run("r1").status, "input_required");
  room.learn({ name: "agentchat.run", run_id: "r1", serial: 9, client_id: "planner", data: { status: "failed", error: { message: "boom" } } });
  assert.equal(room.frame(status(3, "running")).length, 0);
  assert.deepEqual([room.run("r1").status, room.run("r1").error], ["failed", { message: "boom" }]);
});

test("state is the snapshot with its deltas; a delta that fails marks it stale until a snapshot", () => {
  const room = new AgentRoom("room:x");
  room.frame({ ...status(1, "running"), type: "run_snapshot", state: { plan: [] }, deltas: [{ op: "add", path: "/plan/-", value: "a" }] });
  room.frame({ type: "run_state", run_id: "r1", delta: [{ op: "add", path: "/plan/-", value: "b" }] });
  assert.deepEqual(room.run("r1").state, { plan: ["a", "b"] });
  room.frame({ type: "run_state", run_id: "r1", delta: [{ op: "remove", path: "/missing" }] });
  room.frame({ type: "run_state", run_id: "r1", delta: [{ op: "add", path: "/plan/-", value: "c" }] });
  assert.equal(room.run("r1").stale, true);
  room.frame({ type: "run_state", run_id: "r1", snapshot: { plan: ["x"] } });
  assert.deepEqual([room.run("r1").state, room.run("r1").stale], [{ plan: ["x"] }, false]);
});

test("history newest first rebuilds the run: lanes in serial order, the tool result on its call", () => {
  const room = new AgentRoom("room:x");
  const base = { run_id: "r1", client_id: "planner", kind: "agent", name: "message" };
  const records = [
    { ...base, serial: 2, name: "agentchat.run", data: { status: "running" }, reply_to: 1 },
    { ...base, serial: 3, lane: "reasoning", stream_id: "s1", data: "thinking", status: "complete" },
    { ...base, serial: 4, lane: "tool_call", stream_id: "s2", tool_call: { id: "c1", name: "search" }, data: '{"q":1}', status: "complete" },
    { ...base, serial: 5, lane: "tool_result", tool_call: { id: "c1" }, data: { hits: 3 } },
    { ...base, serial: 6, lane: "text", stream_id: "s3", data: "answer", status: "complete" },
    { ...base, serial: 7, name: "agentchat.run", data: { status: "completed" } },
  ];
  for (const m of [...records].reverse()) room.learn(m);
  const run = room.run("r1");
  assert.deepEqual([run.status, run.serial, run.reply_to], ["completed", 2, 1]);
  assert.deepEqual(run.lanes().map((l) => [l.lane, l.text]), [["reasoning", "thinking"], ["tool_call", '{"q":1}'], ["text", "answer"]]);
  assert.deepEqual([run.lanes()[1].tool_call.name, run.lanes()[1].result], ["search", { hits: 3 }]);
  for (const m of records) room.learn(m); // a replay over it changes nothing
  assert.equal(run.lanes().length, 3);
});

test("a live lane follows its stream, then its record makes it final", () => {
  const room = new AgentRoom("room:x");
  const stream = { run_id: "r1", stream_id: "s1", lane: "text", client_id: "planner", ts: 1, text: () => "Hel" };
  room.stream(stream);
  assert.deepEqual(room.run("r1").lanes().map((l) => [l.text, l.status]), [["Hel", "open"]]);
  room.learn({ run_id: "r1", stream_id: "s1", lane: "text", serial: 4, data: "Hello", status: "complete", client_id: "planner" });
  room.stream({ ...stream, text: () => "late chunk" });
  assert.deepEqual(room.run("r1").lanes().map((l) => [l.text, l.status]), [["Hello", "complete"]]);
});

test("a claim keeps the highest token; a held claim may end, an ended one never comes back", () => {
  const room = new AgentRoom("room:x");
  room.claim({ serial: 1, token: 2, state: "held", client_id: "b" });
  assert.equal(room.claim({ serial: 1, token: 1, state: "held", client_id: "a" }).length, 0);
  room.claim({ serial: 1, token: 2, state: "done", client_id: "b" });
  assert.equal(room.claim({ serial: 1, token: 2, state: "held", client_id: "b" }).length, 0);
  assert.equal(room.claims.get(1).state, "done");
});

test("a request closes with its answer, or with what a 40907 says, and its run hears of it", () => {
  const room = new AgentRoom("room:x");
  const asked = { name: "agentchat.input_request", request_id: "q1", run_id: "r1", serial: 3, client_id: "planner", data: { prompt: "Deploy?", shape: { kind: "approval" }, deadline: 9 } };
  const changes = room.learn(asked);
  assert.deepEqual(changes.map((c) => c.type), ["request", "run"]);
  assert.deepEqual(room.run("r1").requests, ["q1"]);
  assert.equal(room.requests.get("q1").status, "pending");
  room.closed("q1", { status: "answered", answer: { outcome: "deny", client_id: "bob" } });
  assert.deepEqual([room.requests.get("q1").status, room.requests.get("q1").answer.client_id], ["answered", "bob"]);
  room.learn({ name: "agentchat.input_answer", request_id: "q2", client_id: "agentchat", data: { outcome: "expired" } });
  assert.equal(room.requests.get("q2").status, "expired");
});

test("a snapshot at a re-attach brings the current state even at the version already held", () => {
  const room = new AgentRoom("room:x");
  room.frame({ ...status(3, "running"), type: "run_snapshot", state: { n: 1 } });
  const changes = room.frame({ ...status(3, "running"), type: "run_snapshot", state: { n: 5 }, deltas: [{ op: "replace", path: "/n", value: 6 }] });
  assert.equal(changes.length, 1);
  assert.deepEqual([room.run("r1").state, room.run("r1").version], [{ n: 6 }, 3]);
});

test("a channel feeds its AgentRoom: run frames, lanes and records become run, claim and request events", () => {
  const client = { state: "connected", sent: [], request(frame) { this.sent.push(frame); return new Promise(() => {}); } };
  const channel = new Channel(client, "room:x");
  channel.position = { serial: 0, epoch: "e" };
  const seen = [];
  for (const type of ["message", "run", "claim", "request"]) channel.on(type, (d) => seen.push(type));
  const base = { channel: "room:x", client_id: "planner", kind: "agent" };
  channel.receive({ ...base, type: "message", serial: 1, name: "agentchat.run", run_id: "r1", data: { status: "running" } });
  channel.receive({ ...base, type: "run_status", run_id: "r1", version: 1, status: "running", serial: 1 });
  channel.receive({ ...base, type: "stream_open", stream_id: "s1", run_id: "r1", lane: "text", ts: 2 });
  channel.receive({ type: "stream_chunk", channel: "room:x", stream_id: "s1", i: 0, d: "Hi" });
  channel.receive({ ...base, type: "claim", serial: 1, token: 1, state: "held" });
  channel.receive({ ...base, type: "message", serial: 2, name: "agentchat.input_request", request_id: "q1", data: { prompt: "ok?" } });
  assert.deepEqual(seen, ["run", "message", "run", "run", "run", "claim", "request", "message"]);
  assert.deepEqual(channel.agents.run("r1").lanes().map((l) => l.text), ["Hi"]);
  channel.cancelRun("r1");
  channel.publish("hi @planner", { to: ["planner"] });
  assert.deepEqual(client.sent.map((f) => [f.type, f.run_id ?? f.to]), [["run_cancel", "r1"], ["publish", ["planner"]]]);
});
