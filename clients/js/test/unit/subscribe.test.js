import assert from "node:assert/strict";
import { test } from "node:test";
import { ImageGateClient, NotFoundError } from "../../dist/index.js";
import { completedJob, fakeServer, job, json, problem } from "./fake-server.js";

function sse(events, { end = true } = {}) {
  return (req, res) => {
    res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8" });
    for (const [type, id, data] of events) {
      res.write(`event: ${type}\n${id ? `id: ${id}\n` : ""}data: ${JSON.stringify(data)}\n\n`);
    }
    if (end) res.end();
    else setTimeout(() => res.socket.destroy(), 20); // the connection drops
  };
}

test("events reach their callbacks, and the finished job comes back", async (t) => {
  const server = await fakeServer(
    sse([
      ["queued", 1, { queue_position: 2 }],
      ["queued", null, { queue_position: 1, eta_s: 3.5 }],
      ["started", 2, { attempt: 1 }],
      ["progress", 3, { step: 1, total: 2, preview_url: null }],
      ["progress", 4, { step: 2, total: 2, preview_url: "http://x/p/2" }],
      ["completed", 5, { images: [] }],
    ]),
    json(200, completedJob()),
  );
  t.after(server.close);
  const heard = { queue: [], progress: [], previews: [], events: [] };
  const final = await new ImageGateClient(server.url).subscribe("job_1", {
    onQueue: (u) => heard.queue.push(u),
    onProgress: (p) => heard.progress.push(p.step),
    onPreview: (url) => heard.previews.push(url),
    onEvent: (e) => heard.events.push(`${e.type}:${e.id}`),
  });
  assert.equal(final.status, "completed");
  assert.deepEqual(heard.queue, [
    { position: 2, etaS: null },
    { position: 1, etaS: 3.5 },
  ]);
  assert.deepEqual(heard.progress, [1, 2]);
  assert.deepEqual(heard.previews, ["http://x/p/2"]);
  assert.deepEqual(heard.events, ["queued:1", "queued:0", "started:2", "progress:3", "progress:4", "completed:5"]);
  assert.equal(server.requests[0].url, "/v1/jobs/job_1/events");
  assert.equal(server.requests[1].url, "/v1/jobs/job_1");
});

test("a dropped stream resumes with Last-Event-ID after the last event heard", async (t) => {
  const server = await fakeServer(
    sse([["queued", 1, {}], ["started", 2, {}]], { end: false }),
    sse([["progress", 3, { step: 1, total: 1 }], ["completed", 4, {}]]),
    json(200, completedJob()),
  );
  t.after(server.close);
  const types = [];
  await new ImageGateClient(server.url).subscribe("job_1", { onEvent: (e) => types.push(e.type) });
  assert.deepEqual(types, ["queued", "started", "progress", "completed"]);
  assert.equal(server.requests[0].headers["last-event-id"], undefined);
  assert.equal(server.requests[1].headers["last-event-id"], "2");
});

test("a stream that ends early is reopened from where it stopped", async (t) => {
  const server = await fakeServer(
    sse([["queued", 1, {}]]),
    sse([["completed", 2, {}]]),
    json(200, completedJob()),
  );
  t.after(server.close);
  await new ImageGateClient(server.url).subscribe("job_1");
  assert.equal(server.requests[1].headers["last-event-id"], "1");
});

test("when the stream is not an event stream, it polls at the server's Retry-After", async (t) => {
  const server = await fakeServer(
    json(200, { not: "a stream" }), // a proxy that does not pass SSE through
    json(200, job({ status: "queued", queue_position: 1 }), { "retry-after": "1" }),
    json(200, job({ status: "generating", progress: { step: 1, total: 2 } }), { "retry-after": "1" }),
    json(200, completedJob()),
  );
  t.after(server.close);
  const heard = [];
  const started = performance.now();
  const final = await new ImageGateClient(server.url).subscribe("job_1", {
    onQueue: (u) => heard.push(`queue ${u.position}`),
    onProgress: (p) => heard.push(`step ${p.step}`),
    onEvent: (e) => heard.push(e.type),
  });
  const elapsed = performance.now() - started;
  assert.equal(final.status, "completed");
  assert.deepEqual(heard, ["queued", "queue 1", "started", "progress", "step 1", "completed"]);
  assert.ok(elapsed >= 1900, `polled every second: ${elapsed} ms`);
});

test("when streaming keeps failing, it falls back to polling", async (t) => {
  const server = await fakeServer(
    problem(503, "service_unavailable", { "retry-after": "0" }),
    problem(503, "service_unavailable", { "retry-after": "0" }),
    problem(503, "service_unavailable", { "retry-after": "0" }),
    problem(503, "service_unavailable", { "retry-after": "0" }),
    problem(503, "service_unavailable", { "retry-after": "0" }),
    problem(503, "service_unavailable", { "retry-after": "0" }),
    problem(503, "service_unavailable", { "retry-after": "0" }),
    problem(503, "service_unavailable", { "retry-after": "0" }),
    problem(503, "service_unavailable", { "retry-after": "0" }),
    json(200, completedJob()),
  );
  t.after(server.close);
  const client = new ImageGateClient(server.url, { retryBaseMs: 1, maxRetries: 2 });
  const final = await client.subscribe("job_1");
  assert.equal(final.status, "completed");
  assert.equal(server.requests.at(-1).url, "/v1/jobs/job_1");
});

test("a job that is not there is a NotFoundError, not a fallback", async (t) => {
  const server = await fakeServer(problem(404, "job_not_found"));
  t.after(server.close);
  await assert.rejects(new ImageGateClient(server.url).subscribe("nope"), NotFoundError);
  assert.equal(server.requests.length, 1);
});

test("transport: poll never opens a stream", async (t) => {
  const server = await fakeServer(json(200, completedJob()));
  t.after(server.close);
  await new ImageGateClient(server.url).subscribe("job_1", { transport: "poll" });
  assert.deepEqual(server.requests.map((r) => r.url), ["/v1/jobs/job_1"]);
});
