// A text/event-stream parser over a fetch body, per the HTML standard's rules: fields
// `event`, `data` (joined by newlines), `id` and comments; a blank line dispatches. CR, LF
// and CRLF all end lines, also when split across chunks.

export interface StreamMessage {
  event: string;
  data: string;
  /** The message's own id, or null when it named none (an unstored update). EventSource's
   * lastEventId would repeat the one before. */
  id: string | null;
}

export async function* parseEventStream(
  body: ReadableStream<Uint8Array>,
): AsyncGenerator<StreamMessage> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const message = new MessageBuilder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      let line: string | null;
      while ((line = takeLine(done)) !== null) {
        const dispatched = message.feed(line);
        if (dispatched !== null) yield dispatched;
      }
      if (done) return;
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }

  function takeLine(done: boolean): string | null {
    const end = buffer.search(/[\r\n]/);
    if (end < 0) return null;
    if (!done && buffer[end] === "\r" && end === buffer.length - 1) return null; // CRLF split?
    const width = buffer.startsWith("\r\n", end) ? 2 : 1;
    const line = buffer.slice(0, end);
    buffer = buffer.slice(end + width);
    return line;
  }
}

class MessageBuilder {
  #event = "";
  #data: string[] = [];
  #id: string | null = null;

  feed(line: string): StreamMessage | null {
    if (line === "") return this.#dispatch();
    if (line.startsWith(":")) return null; // a comment: keep-alive
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.#event = value;
    else if (field === "data") this.#data.push(value);
    else if (field === "id" && !value.includes("\0")) this.#id = value;
    return null;
  }

  #dispatch(): StreamMessage | null {
    const data = this.#data;
    const event = this.#event || "message";
    this.#data = [];
    this.#event = "";
    const id = this.#id;
    this.#id = null;
    return data.length === 0 ? null : { event, data: data.join("\n"), id };
  }
}
