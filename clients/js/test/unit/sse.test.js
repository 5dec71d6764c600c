import assert from "node:assert/strict";
import { test } from "node:test";
import { parseEventStream } from "../../dist/index.js";

function streamOf(...chunks) {
  const encoder = new TextEncoder();
  return new ReadableStream({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(encoder.encode(chunk));
      controller.close();
    },
  });
}

async function collect(stream) {
  const messages = [];
  for await (const message of parseEventStream(stream)) messages.push(message);
  return messages;
}

test("events, ids, multi-line data and comments", async () => {
  const messages = await collect(
    streamOf(": keep-alive\n\n", "event: queued\nid: 1\ndata: {\"queue_position\": 2}\n\n", "data: a\ndata:b\n\n"),
  );
  assert.deepEqual(messages, [
    { event: "queued", data: '{"queue_position": 2}', id: "1" },
    { event: "message", data: "a\nb", id: null },
  ]);
});

test("CRLF and CR line ends, split anywhere across chunks", async () => {
  const text = "event: progress\r\nid: 7\r\ndata: {\"step\": 1}\r\n\r\nevent: completed\rdata: {}\r\r";
  for (let cut = 1; cut < text.length; cut++) {
    const messages = await collect(streamOf(text.slice(0, cut), text.slice(cut)));
    assert.deepEqual(
      messages.map((m) => [m.event, m.id, m.data]),
      [
        ["progress", "7", '{"step": 1}'],
        ["completed", null, "{}"],
      ],
      `cut at ${cut}`,
    );
  }
});

test("a multi-byte character split across chunks survives", async () => {
  const bytes = new TextEncoder().encode("data: é\n\n");
  const stream = new ReadableStream({
    start(controller) {
      controller.enqueue(bytes.slice(0, 7));
      controller.enqueue(bytes.slice(7));
      controller.close();
    },
  });
  assert.equal((await collect(stream))[0].data, "é");
});
