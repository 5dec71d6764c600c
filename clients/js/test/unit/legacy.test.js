import assert from "node:assert/strict";
import { test } from "node:test";
import { ImageGenerationClient, JobCanceledError, JobFailedError, TimeoutError } from "../../dist/index.js";
import { fakeServer, json } from "./fake-server.js";

const status = (state, extra = {}) => json(200, { id: "job_1", status: state, result_url: null, error: null, ...extra });

test("generate(prompt, style) posts to /generate with a key and gives the job id", async (t) => {
  const server = await fakeServer(json(200, { job_id: "job_1", status: "queued", check_url: "x" }));
  t.after(server.close);
  const client = new ImageGenerationClient(server.url);
  assert.equal(await client.generate("a kite", "watercolor"), "job_1");
  const [sent] = server.requests;
  assert.equal(sent.url, "/generate");
  assert.deepEqual(JSON.parse(sent.body), { prompt: "a kite", style: "watercolor" });
  assert.ok(sent.headers["idempotency-key"]);
});

test("waitForCompletion() polls, gives the URL, and then answers from its cache", async (t) => {
  const server = await fakeServer(status("queued"), status("generating"), status("completed", { result_url: "http://x/i" }));
  t.after(server.close);
  const client = new ImageGenerationClient(server.url);
  assert.equal(await client.waitForCompletion("job_1", 10, 10), "http://x/i");
  assert.equal(server.requests.length, 3);
  assert.equal(await client.waitForCompletion("job_1", 10, 10), "http://x/i");
  assert.equal(server.requests.length, 3, "the finished result came from the cache");
});

test("a failed or canceled job ends the wait with a typed error; so does running out of checks", async (t) => {
  const server = await fakeServer(status("failed", { error: "the model broke" }), status("canceled"), status("queued"));
  t.after(server.close);
  const client = new ImageGenerationClient(server.url);
  await assert.rejects(client.waitForCompletion("job_1", 5, 1), (e) => e instanceof JobFailedError && e.message === "the model broke");
  await assert.rejects(client.waitForCompletion("job_1", 5, 1), JobCanceledError);
  await assert.rejects(client.waitForCompletion("job_1", 3, 1), TimeoutError);
  assert.equal(server.requests.length, 5);
});

test("given a request object, generate() is the full client's", async (t) => {
  const server = await fakeServer(json(202, { id: "job_1", status: "completed", images: [] }));
  t.after(server.close);
  const job = await new ImageGenerationClient(server.url).generate({ prompt: "a kite" });
  assert.equal(job.id, "job_1");
  assert.equal(server.requests[0].url, "/v1/jobs");
});
