// agentchat-events.js: group-chat events applied to the messages a reader holds (docs/protocol.md,
// "Group chat").
//
// Rules: an event (`action` edit, delete, react or unreact; `target` the serial it changes) carries the
// complete new state of what it changes, so applying is replacing. A held message includes every event
// up to its `rev` (or its serial, without `rev`): an event is applied only when its serial is above
// that, so history, a resume's replay and live frames can arrive in any overlap. A delete leaves a
// tombstone (no data, meta, reactions or edit mark; author, time, reply_to, thread and replies stay).
// Thread replies are counted onto their root when their serial is above the root's last counted reply.

/**
 * The message `held` after `event`, or null when the event does not change it (another target, already
 * included, or an action this client does not know). `me`: your client id, so your own reactions
 * (from any of your devices) update `my_reactions`.
 */
export function applyEvent(held, event, me = null) {
  if (!held || !event || event.target !== held.serial) return null;
  if (!(event.serial > (held.rev ?? held.serial))) return null;
  const next = { ...held, rev: event.serial };
  switch (event.action) {
    case "edit":
      next.data = event.data;
      next.edited = { by: event.client_id, ts: event.ts };
      return next;
    case "delete":
      next.data = null;
      for (const key of ["meta", "reactions", "edited", "my_reactions"]) delete next[key];
      next.deleted = { by: event.client_id, ts: event.ts };
      return next;
    case "react":
    case "unreact": {
      const reactions = event.reactions && typeof event.reactions === "object" ? event.reactions : {};
      if (Object.keys(reactions).length) next.reactions = reactions;
      else delete next.reactions;
      if (me && event.client_id === me) {
        const mine = new Set(held.my_reactions || []);
        if (event.action === "react") mine.add(event.data);
        else mine.delete(event.data);
        if (mine.size) next.my_reactions = [...mine];
        else delete next.my_reactions;
      }
      return next;
    }
    default:
      return null;
  }
}

/** The root `root` with `reply` counted in its `replies` summary, or null when it is not its reply or
 * is counted already. */
export function countReply(root, reply) {
  if (!root || !reply || reply.thread !== root.serial || typeof reply.serial !== "number") return null;
  const replies = root.replies || { count: 0, last: null };
  if (!(reply.serial > (replies.last ? replies.last.serial : 0))) return null;
  const last = { serial: reply.serial, client_id: reply.client_id, ts: reply.ts };
  return { ...root, replies: { count: (replies.count || 0) + 1, last } };
}
