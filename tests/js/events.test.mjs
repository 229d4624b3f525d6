// Group-chat events applied to held messages (web/agentchat-events.js): by rev, replacing state,
// tombstones, my own reactions, and replies counted onto their root once.
import assert from "node:assert/strict";
import { test } from "node:test";

import { applyEvent, countReply } from "../../web/agentchat.js";

const held = { serial: 5, client_id: "ana", data: "helo", ts: 1, reply_to: 2, replies: { count: 1, last: { serial: 6 } } };
const event = (serial, action, extra = {}) => ({ serial, action, target: 5, client_id: "bob", ts: 100 + serial, ...extra });

test("an edit replaces the data and marks who edited; rev is the event's serial", () => {
  const edited = applyEvent(held, event(7, "edit", { client_id: "ana", data: "hello" }));
  assert.deepEqual([edited.data, edited.edited, edited.rev], ["hello", { by: "ana", ts: 107 }, 7]);
  assert.equal(held.data, "helo", "the held message is not changed in place");
});

test("an event at or below the message's rev (or serial) is already included", () => {
  assert.equal(applyEvent({ ...held, rev: 9 }, event(9, "edit", { data: "x" })), null);
  assert.equal(applyEvent(held, event(4, "edit", { data: "x" })), null);
  assert.notEqual(applyEvent({ ...held, rev: 9 }, event(10, "edit", { data: "x" })), null);
});

test("an event on another message, or of an unknown action, changes nothing", () => {
  assert.equal(applyEvent(held, { ...event(8, "edit"), target: 6 }), null);
  assert.equal(applyEvent(held, event(8, "pin")), null);
  assert.equal(applyEvent(null, event(8, "edit")), null);
});

test("a delete leaves a tombstone that keeps author, time, reply_to and replies", () => {
  const rich = { ...held, meta: { a: 1 }, reactions: { "👍": { count: 1, clients: ["bob"] } }, edited: { by: "ana", ts: 3 }, my_reactions: ["👍"] };
  const gone = applyEvent(rich, event(8, "delete"));
  assert.deepEqual(gone, { serial: 5, client_id: "ana", data: null, ts: 1, reply_to: 2, replies: held.replies, rev: 8, deleted: { by: "bob", ts: 108 } });
});

test("reactions are replaced by the event's aggregate; mine follow my own events only", () => {
  const aggregate = { "👍": { count: 2, clients: ["bob", "ana"] } };
  const theirs = applyEvent(held, event(8, "react", { data: "👍", reactions: aggregate }), "ana");
  assert.deepEqual([theirs.reactions, theirs.my_reactions], [aggregate, undefined]);
  const mine = applyEvent(theirs, event(9, "react", { client_id: "ana", data: "🎉", reactions: aggregate }), "ana");
  assert.deepEqual(mine.my_reactions, ["🎉"]);
  const back = applyEvent(mine, event(10, "unreact", { client_id: "ana", data: "🎉", reactions: {} }), "ana");
  assert.equal("reactions" in back, false);
  assert.equal("my_reactions" in back, false);
});

test("a reply is counted onto its root once, above the last counted reply", () => {
  const root = { serial: 5, replies: { count: 1, last: { serial: 6, client_id: "bob", ts: 1 } } };
  const counted = countReply(root, { serial: 9, thread: 5, client_id: "cy", ts: 50 });
  assert.deepEqual(counted.replies, { count: 2, last: { serial: 9, client_id: "cy", ts: 50 } });
  assert.equal(countReply(counted, { serial: 9, thread: 5 }), null);
  assert.equal(countReply(root, { serial: 6, thread: 5 }), null);
  assert.equal(countReply(root, { serial: 10, thread: 4 }), null);
  assert.deepEqual(countReply({ serial: 5 }, { serial: 7, thread: 5, client_id: "a", ts: 2 }).replies.count, 1);
});
