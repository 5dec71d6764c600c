// The client against a live `imagegate serve` on loopback, started by tests/test_js_client.py
// with auth required, previews every 2 steps and a slow sketch. It passes:
// IMAGEGATE_URL, IMAGEGATE_API_KEY (tenant js-main), IMAGEGATE_LIMITED_KEY (2 requests a
// minute) and IMAGEGATE_BUDGET_KEY (a tenant whose budget is below one image).
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  AuthenticationError,
  BudgetExceededError,
  ContentPolicyError,
  ImageGateClient,
  NotFoundError,
  RateLimitError,
  TimeoutError,
  ValidationError,
} from "../../dist/index.js";

const url = process.env.IMAGEGATE_URL;
const apiKey = process.env.IMAGEGATE_API_KEY;
if (!url || !apiKey) throw new Error("run me through tests/test_js_client.py (IMAGEGATE_URL, IMAGEGATE_API_KEY)");
const client = new ImageGateClient(url, { apiKey, cache: false });

async function mintToken(user, ttlS = 600) {
  const { data } = await client.http.json("/v1/client-tokens", { method: "POST", body: { user, ttl_s: ttlS } });
  return data;
}

async function eventually(probe, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error("not within the time");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

test("generate() follows a job over SSE with live previews to its images", async () => {
  const progress = [];
  const previews = [];
  const job = await client.generate(
    { prompt: "a lighthouse at dusk", width: 256, height: 192, steps: 8, user: "u1" },
    { onProgress: (p) => progress.push(p.step), onPreview: (previewUrl) => previews.push(previewUrl) },
  );
  assert.equal(job.status, "completed");
  // Steps may be coalesced by the server, never reordered; the last one is always told.
  assert.deepEqual(progress, [...progress].sort((a, b) => a - b));
  assert.equal(progress.at(-1), 8);
  assert.ok(previews.length >= 2, `${previews.length} previews`);
  assert.ok(previews.every((previewUrl) => previewUrl.includes("/previews/")));
  const preview = await fetch(previews[0]);
  assert.equal(preview.headers.get("content-type"), "image/png");
  const image = await fetch(job.images[0].url);
  assert.equal(image.status, 200);
  assert.deepEqual([job.images[0].width, job.images[0].height], [256, 192]);
});

test("a retried POST with the same Idempotency-Key makes no second job", async () => {
  const params = { prompt: "a kite over the sea", steps: 2, user: "u1" };
  const first = await client.jobs.createWithDetails(params, { idempotencyKey: "js-live-1" });
  const again = await client.jobs.createWithDetails(params, { idempotencyKey: "js-live-1" });
  assert.equal(again.job.id, first.job.id);
  assert.equal(first.replayed, false);
  assert.equal(again.replayed, true);
});

test("a seeded request is a server cache hit the second time, and a client cache hit after", async () => {
  const params = { prompt: "a red bicycle", seed: 1234, steps: 2, width: 128, height: 128 };
  await client.generate(params);
  const second = await client.jobs.createWithDetails(params);
  assert.equal(second.cacheStatus, "ImageGate; hit");
  assert.equal(second.job.metadata.cache, "hit");
  const caching = new ImageGateClient(url, { apiKey });
  const one = await caching.generate(params);
  const two = await caching.generate(params);
  assert.equal(two, one, "the second came from the client's cache");
});

test("timeoutMs cancels the job on the server and rejects with TimeoutError", async () => {
  let jobId = null;
  const call = client.generate(
    { prompt: "a slow sunrise", steps: 30, user: "u1" },
    { timeoutMs: 400, onEvent: (event) => (jobId ??= event.data.job_id) },
  );
  await assert.rejects(call, TimeoutError);
  assert.ok(jobId);
  const ended = await eventually(async () => {
    const job = await client.jobs.get(jobId);
    return job.status === "canceled" ? job : null;
  });
  assert.equal(ended.cancel_requested || ended.status === "canceled", true);
});

test("refusals are typed from the problem code", async () => {
  const refused = await client.jobs.create({ prompt: "a man holding a handgun" }).catch((e) => e);
  assert.ok(refused instanceof ContentPolicyError, String(refused));
  assert.equal(refused.status, 400);
  assert.equal(refused.code, "content_policy_violation");
  const invalid = await client.jobs.create({ prompt: "a kite", width: 100 }).catch((e) => e);
  assert.ok(invalid instanceof ValidationError);
  assert.equal(invalid.code, "invalid_dimensions");
  assert.equal(invalid.field, "width");
  await assert.rejects(client.jobs.get("no-such-job"), (e) => e instanceof NotFoundError && e.code === "job_not_found");
  const anonymous = new ImageGateClient(url);
  await assert.rejects(anonymous.jobs.get("x"), (e) => e instanceof AuthenticationError && e.status === 401);
});

test("a budget below one image is a BudgetExceededError", async () => {
  const poor = new ImageGateClient(url, { apiKey: process.env.IMAGEGATE_BUDGET_KEY });
  const error = await poor.jobs.create({ prompt: "a kite" }).catch((e) => e);
  assert.ok(error instanceof BudgetExceededError, String(error));
  assert.equal(error.status, 402);
});

test("a rate limit is a RateLimitError with Retry-After, after the client's retries", async () => {
  const limited = new ImageGateClient(url, { apiKey: process.env.IMAGEGATE_LIMITED_KEY, maxRetryAfterS: 0 });
  const errors = [];
  for (let i = 0; i < 4; i++) errors.push(await limited.styles().catch((e) => e));
  const refusal = errors.find((e) => e instanceof RateLimitError);
  assert.ok(refusal, errors.map(String).join(", "));
  assert.equal(refusal.code, "rate_limited");
  assert.ok(refusal.retryAfterS > 0);
});

test("a browser token sees its own user's jobs, and another user's job is a 404", async () => {
  const theirs = await client.jobs.create({ prompt: "a private sketch", steps: 2, user: "someone-else" });
  const { token } = await mintToken("user-a");
  const asUser = new ImageGateClient(url, { token, cache: false });
  const mine = await asUser.generate({ prompt: "my own kite", steps: 2 });
  assert.equal(mine.user, "user-a");
  await assert.rejects(asUser.jobs.get(theirs.id), (e) => e instanceof NotFoundError && e.status === 404);
  await assert.rejects(asUser.subscribe(theirs.id), NotFoundError);
  const listed = [];
  for await (const job of asUser.jobs.list({ limit: 1 })) listed.push(job.user);
  assert.ok(listed.length >= 1);
  assert.deepEqual(new Set(listed), new Set(["user-a"]));
});

test("getToken() is asked again when the server refuses its token", async () => {
  const tokens = ["not-a-token", (await mintToken("user-b")).token];
  let calls = 0;
  const refreshing = new ImageGateClient(url, { getToken: () => tokens[calls++], cache: false });
  const job = await refreshing.jobs.create({ prompt: "a paper boat", steps: 2 });
  assert.equal(job.user, "user-b");
  assert.equal(calls, 2);
});

test("a subscription resumes after a given event id, and polling reaches the same end", async () => {
  const job = await client.generate({ prompt: "a green field", steps: 4, user: "u1" });
  const all = [];
  await client.subscribe(job.id, { onEvent: (e) => all.push(e.id) });
  const resumed = [];
  await client.subscribe(job.id, { lastEventId: all[1], onEvent: (e) => resumed.push(e.id) });
  assert.deepEqual(resumed, all.slice(2));
  const polled = await client.subscribe(job.id, { transport: "poll" });
  assert.equal(polled.status, "completed");
});

test("list() pages through the history with the cursor", async () => {
  const ids = [];
  for await (const job of client.jobs.list({ limit: 2, user: "u1" })) ids.push(job.id);
  assert.ok(ids.length >= 3, `${ids.length} jobs`);
  assert.equal(new Set(ids).size, ids.length);
});

test("the original surface works against the live server", async () => {
  const { ImageGenerationClient } = await import("../../dist/index.js");
  const legacy = new ImageGenerationClient(url, { apiKey });
  const jobId = await legacy.generate("a lighthouse at dusk", "watercolor");
  const imageUrl = await legacy.waitForCompletion(jobId, 100, 100);
  assert.equal((await fetch(imageUrl)).status, 200);
});
