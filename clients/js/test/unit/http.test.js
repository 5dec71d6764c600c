import assert from "node:assert/strict";
import { test } from "node:test";
import {
  ConnectionError,
  ImageGateClient,
  NotFoundError,
  RateLimitError,
  ServiceUnavailableError,
} from "../../dist/index.js";
import { fakeServer, job, json, problem } from "./fake-server.js";

const fast = { retryBaseMs: 5, retryMaxMs: 20 };

test("a 503 and a 429 are retried, and a POST keeps its Idempotency-Key", async (t) => {
  const server = await fakeServer(
    problem(503, "queue_full", { "retry-after": "0" }),
    problem(429, "rate_limited"),
    json(202, job()),
  );
  t.after(server.close);
  const client = new ImageGateClient(server.url, fast);
  const created = await client.jobs.create({ prompt: "a kite" });
  assert.equal(created.id, "job_1");
  assert.equal(server.requests.length, 3);
  const keys = server.requests.map((r) => r.headers["idempotency-key"]);
  assert.match(keys[0], /^[0-9a-f]{32}$/);
  assert.deepEqual(new Set(keys).size, 1);
  assert.deepEqual(JSON.parse(server.requests[0].body), { prompt: "a kite" });
  assert.equal(server.requests[0].headers["content-type"], "application/json");
});

test("each POST gets a key of its own, and a given key is sent as it is", async (t) => {
  const server = await fakeServer(json(202, job()));
  t.after(server.close);
  const client = new ImageGateClient(server.url);
  await client.jobs.create({ prompt: "a" });
  await client.jobs.create({ prompt: "b" });
  await client.jobs.create({ prompt: "c" }, { idempotencyKey: "mine-1" });
  const keys = server.requests.map((r) => r.headers["idempotency-key"]);
  assert.notEqual(keys[0], keys[1]);
  assert.equal(keys[2], "mine-1");
});

test("Retry-After is waited for", async (t) => {
  const server = await fakeServer(problem(503, "queue_full", { "retry-after": "1" }), json(200, job()));
  t.after(server.close);
  const started = performance.now();
  await new ImageGateClient(server.url, fast).jobs.get("job_1");
  const waited = performance.now() - started;
  assert.ok(waited >= 950, `waited ${waited} ms`);
});

test("a Retry-After longer than the client waits is thrown at once, typed", async (t) => {
  const server = await fakeServer(
    problem(429, "quota_exceeded", { "retry-after": "3600" }, { policy: "tenant.images_per_day" }),
  );
  t.after(server.close);
  const error = await new ImageGateClient(server.url, fast).jobs.get("job_1").catch((e) => e);
  assert.ok(error instanceof RateLimitError);
  assert.equal(error.code, "quota_exceeded");
  assert.equal(error.retryAfterS, 3600);
  assert.equal(error.policy, "tenant.images_per_day");
  assert.equal(server.requests.length, 1);
});

test("retries stop after maxRetries with the last refusal", async (t) => {
  const server = await fakeServer(problem(503, "service_unavailable"));
  t.after(server.close);
  const client = new ImageGateClient(server.url, { ...fast, maxRetries: 3 });
  await assert.rejects(client.jobs.get("job_1"), ServiceUnavailableError);
  assert.equal(server.requests.length, 4);
});

test("other refusals are not retried", async (t) => {
  const server = await fakeServer(problem(404, "job_not_found"));
  t.after(server.close);
  await assert.rejects(new ImageGateClient(server.url, fast).jobs.get("nope"), NotFoundError);
  assert.equal(server.requests.length, 1);
});

test("a dropped connection is retried, then reported as a ConnectionError", async (t) => {
  const drop = (req, res) => res.socket.destroy();
  const server = await fakeServer(drop, json(200, job()));
  t.after(server.close);
  const client = new ImageGateClient(server.url, fast);
  assert.equal((await client.jobs.get("job_1")).id, "job_1");
  const dead = new ImageGateClient("http://127.0.0.1:9", { ...fast, maxRetries: 1 });
  await assert.rejects(dead.jobs.get("job_1"), ConnectionError);
});

test("an aborted signal rejects with AbortError and stops retrying", async (t) => {
  const server = await fakeServer(problem(503, "queue_full", { "retry-after": "5" }));
  t.after(server.close);
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 100);
  const call = new ImageGateClient(server.url).jobs.get("job_1", { signal: controller.signal });
  const error = await call.catch((e) => e);
  assert.equal(error.name, "AbortError");
  assert.equal(server.requests.length, 1);
});

test("the credential goes in the Authorization header", async (t) => {
  const server = await fakeServer(json(200, job()));
  t.after(server.close);
  await new ImageGateClient(server.url, { apiKey: "ig_sk_secret" }).jobs.get("job_1");
  await new ImageGateClient(server.url, { token: "tok_1" }).jobs.get("job_1");
  await new ImageGateClient(server.url).jobs.get("job_1");
  const sent = server.requests.map((r) => r.headers.authorization);
  assert.deepEqual(sent, ["Bearer ig_sk_secret", "Bearer tok_1", undefined]);
});

test("a 401 asks getToken() for a fresh token once", async (t) => {
  const server = await fakeServer(problem(401, "unauthorized"), json(200, job()));
  t.after(server.close);
  let calls = 0;
  const client = new ImageGateClient(server.url, { getToken: async () => `tok_${++calls}` });
  await client.jobs.get("job_1");
  assert.deepEqual(
    server.requests.map((r) => r.headers.authorization),
    ["Bearer tok_1", "Bearer tok_2"],
  );
});

test("list() walks every page with the cursor", async (t) => {
  const pages = [
    json(200, { data: [job({ id: "a" }), job({ id: "b" })], next_cursor: "c1" }),
    json(200, { data: [job({ id: "c" })], next_cursor: null }),
  ];
  const server = await fakeServer(...pages);
  t.after(server.close);
  const ids = [];
  for await (const found of new ImageGateClient(server.url).jobs.list({ status: "completed", limit: 2 })) {
    ids.push(found.id);
  }
  assert.deepEqual(ids, ["a", "b", "c"]);
  assert.equal(server.requests[0].url, "/v1/jobs?status=completed&limit=2");
  assert.equal(server.requests[1].url, "/v1/jobs?status=completed&limit=2&cursor=c1");
});
