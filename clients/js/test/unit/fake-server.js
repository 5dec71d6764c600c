// A real HTTP server on a loopback port whose answers a test scripts, one handler per
// request in turn (the last one repeats), recording every request it got.
import { createServer } from "node:http";

export async function fakeServer(...handlers) {
  const requests = [];
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      const request = { method: req.method, url: req.url, headers: req.headers, body };
      requests.push(request);
      const handler = handlers[Math.min(requests.length, handlers.length) - 1];
      handler(req, res, request);
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(resolve);
      }),
  };
}

export function json(status, body, headers = {}) {
  return (req, res) => {
    const type = status >= 400 ? "application/problem+json" : "application/json";
    res.writeHead(status, { "content-type": type, ...headers });
    res.end(JSON.stringify(body));
  };
}

export function problem(status, code, headers = {}, extra = {}) {
  return json(status, { status, code, detail: `refused: ${code}`, title: "x", type: "x", instance: "/", ...extra }, headers);
}

export function job(overrides = {}) {
  return {
    id: "job_1",
    status: "queued",
    prompt: "a kite",
    full_prompt: "a kite",
    style: null,
    negative_prompt: null,
    width: 512,
    height: 384,
    steps: 4,
    guidance: 7.5,
    seed: 1,
    n: 1,
    priority: 0,
    attempts: 0,
    error: null,
    images: [],
    metadata: null,
    progress: null,
    cancel_requested: false,
    queue_position: 0,
    eta_s: null,
    webhook_url: null,
    moderation: null,
    warnings: [],
    user: null,
    cost: null,
    created_at: "2026-01-01T00:00:00Z",
    started_at: null,
    finished_at: null,
    ...overrides,
  };
}

export function completedJob(overrides = {}) {
  const expires = Math.floor(Date.now() / 1000) + 3600;
  return job({
    status: "completed",
    queue_position: null,
    images: [
      {
        id: "img_1",
        url: `http://127.0.0.1:1/v1/images/img_1?expires=${expires}&sig=x`,
        width: 512,
        height: 384,
        placeholder: { thumbhash: "AAAA", data_url: "data:image/png;base64,AAAA" },
      },
    ],
    ...overrides,
  });
}
