import assert from "node:assert/strict";
import { test } from "node:test";
import {
  AbortError,
  ImageGateClient,
  JobCanceledError,
  JobFailedError,
  TimeoutError,
} from "../../dist/index.js";
import { completedJob, fakeServer, job, json } from "./fake-server.js";

// A fake ImageGate whose jobs never finish on their own: an event stream that stays open.
function slowServer() {
  return fakeServer((req, res, request) => {
    if (request.method === "POST" && request.url === "/v1/jobs") return json(202, job())(req, res);
    if (request.url.endsWith("/cancel")) return json(202, job({ status: "canceled" }))(req, res);
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.write('event: queued\nid: 1\ndata: {"queue_position": 0}\n\n');
  });
}

test("generate() resolves with the completed job", async (t) => {
  const server = await fakeServer(
    json(202, job()),
    (req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.end('event: progress\nid: 2\ndata: {"step": 1, "total": 1}\n\nevent: completed\nid: 3\ndata: {}\n\n');
    },
    json(200, completedJob()),
  );
  t.after(server.close);
  const steps = [];
  const done = await new ImageGateClient(server.url).generate({ prompt: "a kite" }, { onProgress: (p) => steps.push(p.step) });
  assert.equal(done.status, "completed");
  assert.deepEqual(steps, [1]);
});

test("aborting cancels the job on the server and rejects with AbortError", async (t) => {
  const server = await slowServer();
  t.after(server.close);
  const controller = new AbortController();
  const call = new ImageGateClient(server.url).generate({ prompt: "a kite" }, { signal: controller.signal });
  setTimeout(() => controller.abort(), 150);
  await assert.rejects(call, AbortError);
  const cancel = server.requests.find((r) => r.url === "/v1/jobs/job_1/cancel");
  assert.ok(cancel, server.requests.map((r) => r.url).join(" "));
  assert.equal(cancel.method, "POST");
});

test("passing timeoutMs cancels the job on the server and rejects with TimeoutError", async (t) => {
  const server = await slowServer();
  t.after(server.close);
  const started = performance.now();
  const error = await new ImageGateClient(server.url).generate({ prompt: "a kite" }, { timeoutMs: 200 }).catch((e) => e);
  assert.ok(error instanceof TimeoutError, String(error));
  assert.ok(performance.now() - started < 2000);
  assert.ok(server.requests.some((r) => r.url === "/v1/jobs/job_1/cancel"));
});

test("aborted while the job is created: the same key finds the job, which is canceled", async (t) => {
  const server = await fakeServer(
    (req, res) => setTimeout(() => json(202, job({ id: "job_late" }))(req, res), 300),
    json(202, job({ id: "job_late" }), { "idempotent-replayed": "true" }),
    json(202, job({ id: "job_late", status: "canceled" })),
  );
  t.after(server.close);
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 50);
  await assert.rejects(
    new ImageGateClient(server.url).generate({ prompt: "a kite" }, { signal: controller.signal }),
    AbortError,
  );
  await new Promise((resolve) => setTimeout(resolve, 400));
  const [first, replay, cancel] = server.requests;
  assert.equal(replay.url, "/v1/jobs");
  assert.equal(replay.headers["idempotency-key"], first.headers["idempotency-key"]);
  assert.equal(cancel.url, "/v1/jobs/job_late/cancel");
});

test("a failed job rejects with JobFailedError, a canceled one with JobCanceledError", async (t) => {
  const error = { code: "timeout", message: "too slow", retryable: true };
  const server = await fakeServer(
    json(202, job({ status: "failed", error })),
    json(202, job({ status: "canceled" })),
  );
  t.after(server.close);
  const client = new ImageGateClient(server.url);
  const failed = await client.generate({ prompt: "a" }).catch((e) => e);
  assert.ok(failed instanceof JobFailedError);
  assert.equal(failed.code, "timeout");
  assert.equal(failed.retryable, true);
  await assert.rejects(client.generate({ prompt: "b" }), JobCanceledError);
});

test("a seeded request is answered from the cache the second time; an unseeded one never", async (t) => {
  const server = await fakeServer(json(202, completedJob()));
  t.after(server.close);
  const client = new ImageGateClient(server.url);
  const first = await client.generate({ prompt: "a kite", seed: 7 });
  const again = await client.generate({ seed: 7, prompt: "a kite" });
  assert.equal(again, first);
  assert.equal(server.requests.length, 1);
  await client.generate({ prompt: "a kite" });
  await client.generate({ prompt: "a kite" });
  assert.equal(server.requests.length, 3);
  const uncached = new ImageGateClient(server.url, { cache: false });
  await uncached.generate({ prompt: "a kite", seed: 7 });
  await uncached.generate({ prompt: "a kite", seed: 7 });
  assert.equal(server.requests.length, 5);
});
