import assert from "node:assert/strict";
import { test } from "node:test";
import { Auth, JobCache, jwtExpiry, requestKey } from "../../dist/index.js";
import { completedJob } from "./fake-server.js";

function jwt(claims) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${part({ alg: "HS256" })}.${part(claims)}.signature`;
}

test("a JWT's exp claim is read; anything else has no expiry", () => {
  assert.equal(jwtExpiry(jwt({ exp: 1700000000 })), 1700000000 * 1000);
  assert.equal(jwtExpiry("ig_sk_plain"), null);
  assert.equal(jwtExpiry("a.!!!.c"), null);
});

test("getToken() is called again shortly before the token expires, once for many callers", async () => {
  let now = 1_000_000;
  let calls = 0;
  const getToken = async () => {
    calls += 1;
    return { token: `tok_${calls}`, expires_at: new Date(now + 120_000).toISOString() };
  };
  const auth = new Auth({ getToken, refreshMarginS: 30 }, () => now);
  assert.deepEqual(await Promise.all([auth.credential(), auth.credential()]), ["tok_1", "tok_1"]);
  now += 80_000; // 40 s left: not yet within the margin
  assert.equal(await auth.credential(), "tok_1");
  now += 15_000; // 25 s left
  assert.equal(await auth.credential(), "tok_2");
  assert.equal(calls, 2);
});

test("a bare JWT from getToken() is refreshed by its own exp", async () => {
  let now = 0;
  let calls = 0;
  const auth = new Auth({ getToken: () => jwt({ exp: 100 + 100 * calls++ }) }, () => now);
  const first = await auth.credential();
  now = 80_000; // exp 100 s, margin 30 s
  assert.notEqual(await auth.credential(), first);
});

test("the cache keeps finished seeded jobs by the whole request, least recently used out first", () => {
  const cache = new JobCache({ maxEntries: 2 });
  const done = completedJob();
  cache.set({ prompt: "a", seed: 1 }, done);
  cache.set({ prompt: "b", seed: 1 }, done);
  assert.equal(cache.get({ seed: 1, prompt: "a" }), done); // key order does not matter
  cache.set({ prompt: "c", seed: 1 }, done); // evicts b, the least recently used
  assert.equal(cache.get({ prompt: "b", seed: 1 }), undefined);
  assert.equal(cache.get({ prompt: "a", seed: 1 }), done);
  assert.equal(cache.get({ prompt: "a", seed: 2 }), undefined);
  assert.equal(cache.get({ prompt: "a", seed: 1, width: 256 }), undefined);
});

test("unseeded, no-cache and unfinished requests are never cached", () => {
  const cache = new JobCache();
  cache.set({ prompt: "a" }, completedJob());
  cache.set({ prompt: "a", seed: 1, cache: "no-store" }, completedJob());
  cache.set({ prompt: "b", seed: 1 }, completedJob({ status: "failed" }));
  assert.equal(cache.size, 0);
  assert.equal(requestKey({ prompt: "a" }), null);
  assert.equal(requestKey({ prompt: "a", seed: 0 }), '{"prompt":"a","seed":0}');
});

test("an entry lives its TTL, and never past its signed URLs' expiry", () => {
  let now = Date.now();
  const cache = new JobCache({ ttlMs: 10_000 }, () => now);
  cache.set({ prompt: "a", seed: 1 }, completedJob());
  now += 9_000;
  assert.ok(cache.get({ prompt: "a", seed: 1 }));
  now += 2_000;
  assert.equal(cache.get({ prompt: "a", seed: 1 }), undefined);
  const soon = completedJob();
  soon.images[0].url = `http://x/v1/images/i?expires=${Math.floor(now / 1000) + 30}&sig=s`;
  const long = new JobCache({ ttlMs: 3_600_000 }, () => now);
  long.set({ prompt: "a", seed: 1 }, soon); // its link expires within the minute's margin
  assert.equal(long.get({ prompt: "a", seed: 1 }), undefined);
});
