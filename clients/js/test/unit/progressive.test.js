import assert from "node:assert/strict";
import { test } from "node:test";
import { progressiveImage } from "../../dist/index.js";
import { completedJob, job } from "./fake-server.js";

// Just enough of an <img> for progressiveImage: attributes, style, dataset, src.
function fakeImg() {
  const attributes = {};
  return {
    style: {},
    dataset: {},
    src: "",
    getAttribute: (name) => attributes[name] ?? null,
    setAttribute: (name, value) => (attributes[name] = value),
    attributes,
  };
}

function recorder(img) {
  const seen = [];
  return {
    seen,
    onStage: (stage, src) => seen.push([stage, src, img.style.filter]),
    load: async () => new Promise((resolve) => setTimeout(resolve, 5)),
  };
}

test("a finished job: its box is reserved, then the placeholder blurred, then the final image sharp", async () => {
  const img = fakeImg();
  const done = completedJob();
  const { seen, onStage, load } = recorder(img);
  const source = { getJob: async () => done, follow: async () => assert.fail("a finished job is not followed") };
  await progressiveImage(img, "job_1", source, { onStage, load, blurPx: 10 });
  assert.deepEqual(img.attributes, { width: "512", height: "384" });
  assert.equal(img.style.aspectRatio, "512 / 384");
  assert.equal(img.style.objectFit, "cover");
  assert.match(img.style.transition, /^filter 300ms/);
  assert.deepEqual(seen, [
    ["placeholder", "data:image/png;base64,AAAA", "blur(10px)"],
    ["final", done.images[0].url, "none"],
  ]);
  assert.equal(img.src, done.images[0].url);
  assert.equal(img.dataset.igStage, "final");
});

test("a running job: each preview, then the final image; the placeholder is not needed", async () => {
  const img = fakeImg();
  img.setAttribute("width", "256"); // the page's own size is kept
  const done = completedJob();
  const { seen, onStage, load } = recorder(img);
  const source = {
    getJob: async () => assert.fail("given a job, it does not fetch it"),
    follow: async (id, { onPreview }) => {
      onPreview("http://x/p/1", { step: 1, total: 2 });
      onPreview("http://x/p/2", { step: 2, total: 2 });
      return done;
    },
  };
  await progressiveImage(img, job(), source, { onStage, load });
  assert.equal(img.attributes.width, "256");
  assert.deepEqual(seen.map(([stage, src]) => `${stage} ${src}`), [
    "preview http://x/p/1",
    "preview http://x/p/2",
    `final ${done.images[0].url}`,
  ]);
});

test("a stale preview that loads late is not shown over a newer one", async () => {
  const img = fakeImg();
  const seen = [];
  const load = (url) => new Promise((resolve) => setTimeout(resolve, url.endsWith("/1") ? 60 : 5));
  const source = {
    follow: async (id, { onPreview }) => {
      onPreview("http://x/p/1", {});
      onPreview("http://x/p/2", {});
      return completedJob();
    },
  };
  await progressiveImage(img, job(), source, { load, onStage: (stage, src) => seen.push(src) });
  assert.ok(!seen.includes("http://x/p/1"), seen.join(" "));
});

test("an image stored before placeholders existed goes straight to the final image", async () => {
  const img = fakeImg();
  const done = completedJob();
  done.images[0].placeholder = null;
  const { seen, onStage, load } = recorder(img);
  await progressiveImage(img, done, {}, { onStage, load });
  assert.deepEqual(seen.map(([stage]) => stage), ["final"]);
});

test("a job that failed leaves the reserved box empty, and says so", async () => {
  const img = fakeImg();
  const source = { follow: async () => job({ status: "failed" }) };
  const ended = await progressiveImage(img, job(), source, recorder(img));
  assert.equal(ended.status, "failed");
  assert.equal(img.src, "");
  assert.equal(img.attributes.width, "512");
});
