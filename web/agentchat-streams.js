// agentchat-streams.js: token streams in the browser client: the live state of a stream being read
// (snapshot content plus chunks in index order; chunks below what we have are ignored, chunks ahead of a
// gap wait for it) and the writer of a stream this client opened.

const MAX_EARLY_CHUNKS = 1000; // chunks held ahead of a gap; beyond that they are dropped (the next snapshot repairs)

/**
 * The live state of a stream being read: stream_id, channel, client_id, kind, display_name, name,
 * reply_to, thread, meta, run_id, lane, tool_call (for a run's lane), format, ts, content (text so far, or the list of JSON chunks), next (index of
 * the next chunk), status ("open", then "complete" | "cancelled" | "aborted"), message (the final durable
 * message). `stale` is the Channel's mark for a stream not yet confirmed by the latest attach.
 */
export class LiveStream {
  constructor(frame) {
    this.stream_id = frame.stream_id;
    this.channel = frame.channel;
    this.client_id = frame.client_id;
    this.kind = frame.kind;
    this.display_name = frame.display_name ?? null;
    this.name = frame.name;
    this.reply_to = frame.reply_to ?? null;
    this.thread = frame.thread ?? null;
    this.meta = frame.meta ?? null;
    this.run_id = frame.run_id ?? null; // a lane of this run (agentchat-runs.js keeps it)
    this.lane = frame.lane ?? null;
    this.tool_call = frame.tool_call ?? null;
    this.format = frame.format || "text";
    this.ts = frame.ts;
    this.content = this.format === "json" ? [] : "";
    this.next = 0;
    this.status = "open";
    this.message = null;
    this.stale = false;
    this._early = new Map();
  }

  /** Text of the stream so far (JSON chunks are shown as JSON). */
  text() {
    return typeof this.content === "string" ? this.content : JSON.stringify(this.content);
  }

  /** Takes a snapshot's content when it is ahead of what we have; true when it was taken. */
  adopt(content, next) {
    if (next <= this.next) return false;
    this.content = this.format === "json" ? [...(content || [])] : content || "";
    this.next = next;
    this._drain();
    return true;
  }

  /** Adds chunk `i`; true when the content grew (a chunk ahead of a gap waits, one below is ignored). */
  add(i, d) {
    if (i < this.next) return false;
    if (i > this.next) {
      if (this._early.size < MAX_EARLY_CHUNKS) this._early.set(i, d);
      return false;
    }
    this._append(d);
    this._drain();
    return true;
  }

  /** The stream's durable message arrived: it is the final content. */
  finish(message) {
    this.status = message.status || "complete";
    this.content = message.data;
    this.message = message;
  }

  _append(d) {
    if (this.format === "json") this.content.push(d);
    else this.content += typeof d === "string" ? d : JSON.stringify(d);
    this.next += 1;
  }

  _drain() {
    for (const i of [...this._early.keys()]) if (i < this.next) this._early.delete(i);
    while (this._early.has(this.next)) {
      const d = this._early.get(this.next);
      this._early.delete(this.next);
      this._append(d);
    }
  }
}

/**
 * Writes a stream opened with `channel.openStream()`: append(d) sends the next chunk, end() finishes it
 * as one durable message, cancel() cancels it. `cancelled` turns true when someone cancels it
 * (the channel's "stream_cancelled" event fires too).
 */
export class StreamWriter {
  constructor(channel, streamId, format) {
    this.channel = channel;
    this.stream_id = streamId;
    this.format = format;
    this.cancelled = false;
    this._chunks = [];
    this._off = channel.on("stream_cancelled", (frame) => {
      if (frame.stream_id === streamId) this.cancelled = true;
    });
  }

  /** Sends the next chunk (a string for text streams). Resolves when the server accepted it. */
  append(d) {
    const i = this._chunks.length;
    this._chunks.push(d);
    return this.channel.client.request({ type: "stream_append", stream_id: this.stream_id, i, d });
  }

  /** Ends the stream (status "complete" or "cancelled"); resolves with {serial} of the final message. */
  async end({ status = "complete", data = undefined } = {}) {
    this._off();
    const frame = { type: "stream_end", stream_id: this.stream_id, status, chunks: this._chunks.length };
    if (data !== undefined) frame.data = data;
    const ack = await this.channel.client.request(frame);
    return { serial: ack.serial ?? null };
  }

  /** Cancels the stream (the writer may cancel its own). */
  cancel() {
    this._off();
    return this.channel.cancelStream(this.stream_id);
  }
}
