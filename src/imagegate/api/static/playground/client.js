// @imagegate/client 0.1.0, bundled from clients/js by `npm run bundle`: do not edit.

// src/auth.ts
var Auth = class {
  #options;
  #now;
  #held = null;
  #pending = null;
  constructor(options = {}, now = Date.now) {
    this.#options = options;
    this.#now = now;
  }
  /** A key is never sent in a URL (the server refuses it there); tokens may be. */
  get isSecretKey() {
    return this.#options.apiKey !== void 0;
  }
  get canRefresh() {
    return this.#options.getToken !== void 0;
  }
  async credential() {
    const { apiKey, token, getToken } = this.#options;
    if (apiKey !== void 0) return apiKey;
    if (getToken === void 0) return token;
    if (this.#held === null || this.#expiring(this.#held)) this.#held = await this.#fetch(getToken);
    return this.#held.token;
  }
  /** Forget the held token: the next request asks getToken() for a new one. */
  invalidate() {
    this.#held = null;
  }
  #expiring(held2) {
    const marginMs = (this.#options.refreshMarginS ?? 30) * 1e3;
    return held2.expiresAtMs !== null && this.#now() >= held2.expiresAtMs - marginMs;
  }
  #fetch(getToken) {
    this.#pending ??= Promise.resolve().then(getToken).then(held).finally(() => {
      this.#pending = null;
    });
    return this.#pending;
  }
};
function held(result) {
  if (typeof result === "string") return { token: result, expiresAtMs: jwtExpiry(result) };
  const given = result.expiresAt ?? result.expires_at ?? null;
  const expiresAtMs = given === null ? jwtExpiry(result.token) : new Date(given).getTime();
  return { token: result.token, expiresAtMs: Number.isNaN(expiresAtMs) ? null : expiresAtMs };
}
function jwtExpiry(token) {
  const payload = token.split(".")[1];
  if (payload === void 0) return null;
  try {
    const base64 = payload.replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(base64.padEnd(Math.ceil(base64.length / 4) * 4, "=")));
    const exp = claims.exp;
    return typeof exp === "number" ? exp * 1e3 : null;
  } catch {
    return null;
  }
}

// src/cache.ts
var JobCache = class {
  #entries = /* @__PURE__ */ new Map();
  #maxEntries;
  #ttlMs;
  #now;
  constructor(options = {}, now = Date.now) {
    this.#maxEntries = options.maxEntries ?? 100;
    this.#ttlMs = options.ttlMs ?? 36e5;
    this.#now = now;
  }
  get size() {
    return this.#entries.size;
  }
  get(params) {
    const key = requestKey(params);
    const entry = key === null ? void 0 : this.#entries.get(key);
    if (entry === void 0 || key === null) return void 0;
    this.#entries.delete(key);
    if (entry.expiresAtMs <= this.#now()) return void 0;
    this.#entries.set(key, entry);
    return entry.job;
  }
  set(params, job) {
    const key = requestKey(params);
    if (key === null || job.status !== "completed") return;
    const expiresAtMs = Math.min(this.#now() + this.#ttlMs, linksExpireAtMs(job));
    this.#entries.delete(key);
    this.#entries.set(key, { job, expiresAtMs });
    while (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next().value;
      this.#entries.delete(oldest);
    }
  }
  clear() {
    this.#entries.clear();
  }
};
function requestKey(params) {
  if (params.seed === void 0 || params.seed === null) return null;
  if (params.cache === "no-cache" || params.cache === "no-store") return null;
  return canonicalJson(params);
}
function canonicalJson(value) {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const fields = Object.entries(value).filter(([, v]) => v !== void 0).sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0);
    return `{${fields.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}
function linksExpireAtMs(job) {
  let earliest = Number.POSITIVE_INFINITY;
  for (const image of job.images) {
    const expires = Number(new URL(image.url).searchParams.get("expires"));
    if (expires > 0) earliest = Math.min(earliest, expires * 1e3 - 6e4);
  }
  return earliest;
}

// src/errors.ts
var ImageGateError = class extends Error {
  name = "ImageGateError";
};
var APIError = class extends ImageGateError {
  name = "APIError";
  status;
  code;
  field;
  detail;
  problem;
  headers;
  /** The server's request id (X-Request-ID), when it sends one. */
  requestId;
  constructor(status, problem, headers) {
    const detail = problem.detail ?? `HTTP ${status}`;
    super(detail);
    this.status = status;
    this.code = problem.code ?? `http_${status}`;
    this.field = problem.field ?? null;
    this.detail = detail;
    this.problem = problem;
    this.headers = headers;
    this.requestId = headers.get("x-request-id");
  }
};
var ValidationError = class extends APIError {
  name = "ValidationError";
};
var ContentPolicyError = class extends APIError {
  name = "ContentPolicyError";
  get categories() {
    return asStrings(this.problem["categories"]);
  }
};
var AuthenticationError = class extends APIError {
  name = "AuthenticationError";
};
var BudgetExceededError = class extends APIError {
  name = "BudgetExceededError";
};
var PermissionDeniedError = class extends APIError {
  name = "PermissionDeniedError";
};
var NotFoundError = class extends APIError {
  name = "NotFoundError";
};
var ConflictError = class extends APIError {
  name = "ConflictError";
};
var RateLimitError = class extends APIError {
  name = "RateLimitError";
  /** Seconds the server asks to wait (Retry-After), when it says. */
  get retryAfterS() {
    return retryAfterSeconds(this.headers);
  }
  get policy() {
    const policy = this.problem["policy"];
    return typeof policy === "string" ? policy : null;
  }
};
var ServiceUnavailableError = class extends APIError {
  name = "ServiceUnavailableError";
  get retryAfterS() {
    return retryAfterSeconds(this.headers);
  }
};
var InternalServerError = class extends APIError {
  name = "InternalServerError";
};
var ConnectionError = class extends ImageGateError {
  name = "ConnectionError";
  constructor(cause) {
    super(`Could not reach ImageGate: ${cause instanceof Error ? cause.message : String(cause)}`, {
      cause
    });
  }
};
var AbortError = class extends ImageGateError {
  name = "AbortError";
  constructor(message = "The operation was aborted.", options) {
    super(message, options);
  }
};
var TimeoutError = class extends ImageGateError {
  name = "TimeoutError";
  constructor(message = "The operation timed out.") {
    super(message);
  }
};
var JobFailedError = class extends ImageGateError {
  name = "JobFailedError";
  job;
  code;
  retryable;
  constructor(job) {
    super(job.error?.message ?? "The job failed.");
    this.job = job;
    this.code = job.error?.code ?? "generation_failed";
    this.retryable = job.error?.retryable ?? false;
  }
};
var JobCanceledError = class extends ImageGateError {
  name = "JobCanceledError";
  job;
  constructor(job) {
    super("The job was canceled.");
    this.job = job;
  }
};
var WebhookVerificationError = class extends ImageGateError {
  name = "WebhookVerificationError";
};
var BY_CODE = {
  content_policy_violation: ContentPolicyError,
  budget_exceeded: BudgetExceededError,
  rate_limited: RateLimitError,
  quota_exceeded: RateLimitError
};
var BY_STATUS = {
  400: ValidationError,
  401: AuthenticationError,
  402: BudgetExceededError,
  403: PermissionDeniedError,
  404: NotFoundError,
  409: ConflictError,
  413: ValidationError,
  422: ValidationError,
  429: RateLimitError,
  503: ServiceUnavailableError
};
function errorFor(status, problem, headers) {
  const byCode = problem.code === void 0 ? void 0 : BY_CODE[problem.code];
  const kind = byCode ?? BY_STATUS[status] ?? (status >= 500 ? InternalServerError : APIError);
  return new kind(status, problem, headers);
}
function retryAfterSeconds(headers, now = Date.now()) {
  const value = headers.get("retry-after");
  if (value === null || value.trim() === "") return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, (date - now) / 1e3);
}
function asStrings(value) {
  return Array.isArray(value) ? value.filter((v) => typeof v === "string") : [];
}

// src/abort.ts
function abortError(signal) {
  const reason = signal.reason;
  if (reason instanceof AbortError || reason instanceof TimeoutError) return reason;
  return new AbortError(void 0, { cause: reason });
}
function throwIfAborted(signal) {
  if (signal?.aborted) throw abortError(signal);
}
function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const timer = setTimeout(done, ms);
    function done() {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }
    function onAbort() {
      clearTimeout(timer);
      reject(abortError(signal));
    }
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// src/sink.ts
var TERMINAL = /* @__PURE__ */ new Set(["completed", "failed", "canceled"]);
var EVENT_OF_STATUS = {
  pending_review: "pending_review",
  queued: "queued",
  generating: "started",
  completed: "completed",
  failed: "failed",
  canceled: "canceled"
};
var Sink = class {
  /** The last stored event's id: a reconnect resumes after it. */
  lastId;
  /** How many events it has taken off streams. */
  heard = 0;
  #handlers;
  #seen = null;
  constructor(handlers, lastId = 0) {
    this.#handlers = handlers;
    this.lastId = lastId;
  }
  /** Takes one event off a stream; true when it ends the job. */
  take(type, data, id) {
    const number = id === null || id === "" ? 0 : Number(id);
    this.lastId = Math.max(this.lastId, number);
    this.heard += 1;
    const payload = parse(data);
    this.#emit({ id: number, type, data: payload });
    return TERMINAL.has(type);
  }
  /** Takes a polled job: what changed since the last poll becomes events. */
  observe(job) {
    const before = this.#seen;
    this.#seen = job;
    const data = {};
    if (job.status === "queued") {
      if (before?.queue_position === job.queue_position && before.status === "queued") return;
      Object.assign(data, { queue_position: job.queue_position, eta_s: job.eta_s });
    } else if (job.status === "generating" && job.progress !== null) {
      if (before?.progress?.step === job.progress.step) return;
      Object.assign(data, { step: job.progress.step, total: job.progress.total, preview_url: null });
      if (before?.status !== "generating") this.#emit({ id: 0, type: "started", data: {} });
      this.#emit({ id: 0, type: "progress", data });
      return;
    } else if (before?.status === job.status) {
      return;
    }
    this.#emit({ id: 0, type: EVENT_OF_STATUS[job.status], data });
  }
  #emit(event) {
    const { onQueue, onProgress, onPreview, onEvent } = this.#handlers;
    onEvent?.(event);
    const data = event.data;
    if (event.type === "queued") {
      onQueue?.({ position: numberOrNull(data["queue_position"]), etaS: numberOrNull(data["eta_s"]) });
    } else if (event.type === "progress") {
      const previewUrl = typeof data["preview_url"] === "string" ? data["preview_url"] : null;
      const update = { step: Number(data["step"]), total: Number(data["total"]), previewUrl };
      onProgress?.(update);
      if (previewUrl !== null) onPreview?.(previewUrl, update);
    }
  }
};
function parse(data) {
  try {
    const value = JSON.parse(data);
    return value !== null && typeof value === "object" ? value : {};
  } catch {
    return {};
  }
}
function numberOrNull(value) {
  return typeof value === "number" ? value : null;
}

// src/sse.ts
async function* parseEventStream(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const message = new MessageBuilder();
  let buffer = "";
  try {
    for (; ; ) {
      const { value, done } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      let line;
      while ((line = takeLine(done)) !== null) {
        const dispatched = message.feed(line);
        if (dispatched !== null) yield dispatched;
      }
      if (done) return;
    }
  } finally {
    await reader.cancel().catch(() => void 0);
  }
  function takeLine(done) {
    const end = buffer.search(/[\r\n]/);
    if (end < 0) return null;
    if (!done && buffer[end] === "\r" && end === buffer.length - 1) return null;
    const width = buffer.startsWith("\r\n", end) ? 2 : 1;
    const line = buffer.slice(0, end);
    buffer = buffer.slice(end + width);
    return line;
  }
}
var MessageBuilder = class {
  #event = "";
  #data = [];
  #id = null;
  feed(line) {
    if (line === "") return this.#dispatch();
    if (line.startsWith(":")) return null;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.#event = value;
    else if (field === "data") this.#data.push(value);
    else if (field === "id" && !value.includes("\0")) this.#id = value;
    return null;
  }
  #dispatch() {
    const data = this.#data;
    const event = this.#event || "message";
    this.#data = [];
    this.#event = "";
    const id = this.#id;
    this.#id = null;
    return data.length === 0 ? null : { event, data: data.join("\n"), id };
  }
};

// src/types.ts
var FINAL_STATUSES = /* @__PURE__ */ new Set(["completed", "failed", "canceled"]);
function isFinal(job) {
  return FINAL_STATUSES.has(job.status);
}

// src/subscribe.ts
var EVENT_TYPES = ["pending_review", "queued", "started", "progress", "completed", "failed", "canceled"];
var MAX_FAILURES = 3;
async function subscribe(http, jobId, options = {}) {
  const sink = new Sink(options, options.lastEventId ?? 0);
  const path = `/v1/jobs/${encodeURIComponent(jobId)}`;
  if (options.transport !== "poll") {
    const stream = useEventSource(http) ? overEventSource : overFetch;
    if (await stream(http, path, sink, options.signal) === "ended") {
      return (await http.json(path, { signal: options.signal })).data;
    }
  }
  return poll(http, path, sink, options.signal);
}
function useEventSource(http) {
  return typeof globalThis.EventSource === "function" && !http.auth.isSecretKey;
}
async function overFetch(http, path, sink, signal) {
  for (let failures = 0; failures < MAX_FAILURES; ) {
    const resume = sink.lastId > 0 ? { "Last-Event-ID": String(sink.lastId) } : {};
    const headers = { Accept: "text/event-stream", ...resume };
    let response;
    try {
      response = await http.send(`${path}/events`, { headers, signal });
    } catch (error) {
      if (!isTransient(error)) throw error;
      await sleep(backoffMs(++failures), signal);
      continue;
    }
    if (!(response.headers.get("content-type") ?? "").startsWith("text/event-stream")) {
      await response.body?.cancel();
      return "unavailable";
    }
    const before = sink.heard;
    if (await readStream(response, sink, signal)) return "ended";
    failures = sink.heard > before ? 0 : failures + 1;
    if (failures > 0) await sleep(backoffMs(failures), signal);
  }
  return "unavailable";
}
async function readStream(response, sink, signal) {
  if (response.body === null) return false;
  try {
    for await (const message of parseEventStream(response.body)) {
      if (sink.take(message.event, message.data, message.id)) return true;
    }
  } catch (error) {
    throwIfAborted(signal);
    if (!(error instanceof TypeError || isDomException(error))) throw error;
  }
  return false;
}
async function overEventSource(http, path, sink, signal) {
  for (let failures = 0; failures < MAX_FAILURES; ) {
    const query = { access_token: await http.auth.credential(), after: sink.lastId || void 0 };
    const before = sink.heard;
    const outcome = await openEventSource(http.url(`${path}/events`, query), sink, signal);
    if (outcome === "ended") return "ended";
    if (outcome === "dropped" && sink.heard > before) {
      failures = 0;
      continue;
    }
    await http.send(path, { signal });
    await sleep(backoffMs(++failures), signal);
  }
  return "unavailable";
}
function openEventSource(url, sink, signal) {
  return new Promise((resolve, reject) => {
    throwIfAborted(signal);
    const source = new EventSource(url);
    let opened = false;
    const finish = (outcome) => {
      source.close();
      signal?.removeEventListener("abort", onAbort);
      resolve(outcome);
    };
    const onAbort = () => {
      source.close();
      reject(abortError(signal));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    source.onopen = () => {
      opened = true;
    };
    source.onerror = () => finish(opened ? "dropped" : "failed");
    for (const type of EVENT_TYPES) {
      source.addEventListener(type, (event) => {
        try {
          if (sink.take(type, event.data, event.lastEventId)) finish("ended");
        } catch (error) {
          source.close();
          reject(error instanceof Error ? error : new Error(String(error)));
        }
      });
    }
  });
}
async function poll(http, path, sink, signal) {
  for (; ; ) {
    const { data: job, response } = await http.json(path, { signal });
    sink.observe(job);
    if (isFinal(job)) return job;
    await sleep((retryAfterSeconds(response.headers) ?? 2) * 1e3, signal);
  }
}
function isTransient(error) {
  if (error instanceof ConnectionError) return true;
  return error instanceof APIError && (error.status === 429 || error.status >= 500);
}
function isDomException(error) {
  return typeof DOMException === "function" && error instanceof DOMException;
}
function backoffMs(failures) {
  return Math.random() * Math.min(5e3, 250 * 2 ** failures);
}

// src/generate.ts
var CANCEL_TIMEOUT_MS = 1e4;
async function generate(parts, params, options = {}) {
  const cached = parts.cache?.get(params);
  if (cached !== void 0) return cached;
  const control = deadline(options.signal, options.timeoutMs);
  const key = options.idempotencyKey ?? randomId();
  let job = null;
  try {
    job = await parts.jobs.create(params, { signal: control.signal, idempotencyKey: key });
    const signal = control.signal;
    const final = isFinal(job) ? job : await subscribe(parts.http, job.id, { ...options, signal });
    return settle(final, parts.cache, params);
  } catch (error) {
    if (!control.signal.aborted) throw error;
    await cancelOnServer(parts.jobs, job?.id ?? null, params, key);
    throw abortError(control.signal);
  } finally {
    control.dispose();
  }
}
function settle(job, cache, params) {
  if (job.status === "failed") throw new JobFailedError(job);
  if (job.status === "canceled") throw new JobCanceledError(job);
  cache?.set(params, job);
  return job;
}
async function cancelOnServer(jobs, id, params, key) {
  const signal = AbortSignal.timeout(CANCEL_TIMEOUT_MS);
  try {
    const target = id ?? (await jobs.create(params, { idempotencyKey: key, signal })).id;
    await jobs.cancel(target, { signal });
  } catch {
  }
}
function deadline(outer, timeoutMs) {
  const controller = new AbortController();
  const onAbort = () => controller.abort(new AbortError(void 0, { cause: outer?.reason }));
  if (outer?.aborted) onAbort();
  outer?.addEventListener("abort", onAbort, { once: true });
  const onTimeout = () => controller.abort(new TimeoutError(`No result within ${timeoutMs} ms.`));
  const timer = timeoutMs === void 0 ? void 0 : setTimeout(onTimeout, timeoutMs);
  return {
    signal: controller.signal,
    dispose: () => {
      clearTimeout(timer);
      outer?.removeEventListener("abort", onAbort);
    }
  };
}

// src/http.ts
var RETRIED_STATUSES = /* @__PURE__ */ new Set([429, 503]);
var Http = class {
  baseUrl;
  auth;
  #fetch;
  #options;
  constructor(baseUrl, auth, options = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.auth = auth;
    this.#fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.#options = options;
  }
  url(path, query = {}) {
    const url = new URL(this.baseUrl + path);
    for (const [name, value] of Object.entries(query)) {
      if (value !== void 0 && value !== null) url.searchParams.set(name, String(value));
    }
    return url.toString();
  }
  /** The parsed JSON body of a 2xx answer, with the response. */
  async json(path, options = {}) {
    const response = await this.send(path, options);
    return { data: await response.json(), response };
  }
  /** A 2xx response, after retries; anything else is thrown as a typed error. */
  async send(path, options = {}) {
    const method = options.method ?? "GET";
    const key = method === "POST" ? options.idempotencyKey ?? randomId() : void 0;
    const maxRetries = this.#options.maxRetries ?? 2;
    let refreshed = false;
    for (let attempt = 0; ; attempt++) {
      const response = await this.#attempt(path, options, key, attempt >= maxRetries);
      if (response === null) {
        await sleep(this.#backoffMs(attempt), options.signal);
        continue;
      }
      if (response.ok) return response;
      const error = await toError(response);
      if (response.status === 401 && this.auth.canRefresh && !refreshed) {
        this.auth.invalidate();
        refreshed = true;
        continue;
      }
      const waitMs = this.#retryWaitMs(response, attempt);
      if (attempt >= maxRetries || waitMs === null) throw error;
      await sleep(waitMs, options.signal);
    }
  }
  /** One try: the response, or null after a network error that may be retried. */
  async #attempt(path, options, key, last) {
    const init = await this.#init(options, key);
    try {
      return await this.#fetch(this.url(path, options.query), init);
    } catch (cause) {
      if (options.signal?.aborted) throw abortError(options.signal);
      if (last) throw new ConnectionError(cause);
      return null;
    }
  }
  async #init(options, key) {
    const headers = { ...this.#options.headers, ...options.headers };
    const credential = await this.auth.credential();
    if (credential !== void 0) headers["Authorization"] = `Bearer ${credential}`;
    if (key !== void 0) headers["Idempotency-Key"] = key;
    const init = { method: options.method ?? "GET", headers };
    if (options.body !== void 0) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    if (options.signal !== void 0) init.signal = options.signal;
    return init;
  }
  #retryWaitMs(response, attempt) {
    if (!RETRIED_STATUSES.has(response.status)) return null;
    const asked = retryAfterSeconds(response.headers);
    if (asked === null) return this.#backoffMs(attempt);
    return asked > (this.#options.maxRetryAfterS ?? 60) ? null : asked * 1e3;
  }
  /** Full jitter: anywhere from 0 to the doubled ceiling, so clients that failed together
   * do not all come back together. */
  #backoffMs(attempt) {
    const base = this.#options.retryBaseMs ?? 500;
    const ceiling = Math.min(this.#options.retryMaxMs ?? 8e3, base * 2 ** attempt);
    return Math.random() * ceiling;
  }
};
async function toError(response) {
  let problem = {};
  try {
    const body = await response.json();
    if (body !== null && typeof body === "object") problem = body;
  } catch {
    problem = { detail: `HTTP ${response.status} ${response.statusText}`.trim() };
  }
  return errorFor(response.status, problem, response.headers);
}

// src/jobs.ts
var Jobs = class {
  #http;
  constructor(http) {
    this.#http = http;
  }
  async create(params, options = {}) {
    return (await this.createWithDetails(params, options)).job;
  }
  async createWithDetails(params, options = {}) {
    const headers = {};
    if (options.cacheControl !== void 0) headers["Cache-Control"] = options.cacheControl;
    const { data, response } = await this.#http.json("/v1/jobs", {
      method: "POST",
      body: params,
      headers,
      signal: options.signal,
      idempotencyKey: options.idempotencyKey
    });
    const retryAfter = response.headers.get("retry-after");
    return {
      job: data,
      cacheStatus: response.headers.get("cache-status"),
      replayed: response.headers.get("idempotent-replayed") === "true",
      retryAfterS: retryAfter === null ? null : Number(retryAfter)
    };
  }
  async get(id, options = {}) {
    const path = `/v1/jobs/${encodeURIComponent(id)}`;
    return (await this.#http.json(path, { signal: options.signal })).data;
  }
  async cancel(id, options = {}) {
    const path = `/v1/jobs/${encodeURIComponent(id)}/cancel`;
    return (await this.#http.json(path, { method: "POST", signal: options.signal })).data;
  }
  /** Every job that matches, newest first, fetched a page at a time as you iterate:
   * `for await (const job of client.jobs.list({ status: "completed" }))`. */
  async *list(filters = {}, options = {}) {
    for await (const page of this.pages(filters, options)) yield* page.data;
  }
  /** The same, a page at a time. */
  async *pages(filters = {}, options = {}) {
    let cursor = null;
    do {
      const query = { ...filters, cursor };
      const request = { query, signal: options.signal };
      const { data } = await this.#http.json("/v1/jobs", request);
      yield data;
      cursor = data.next_cursor;
    } while (cursor !== null);
  }
};

// src/progressive.ts
var RANK = { placeholder: 0, preview: 1, final: 2 };
async function progressiveImage(img, jobOrId, source, options = {}) {
  const { signal } = options;
  let job = typeof jobOrId === "string" ? await source.getJob(jobOrId, signal) : jobOrId;
  const painter = new Painter(img, options);
  reserve(img, job);
  if (!isFinal(job)) {
    const previews = [];
    const onPreview = (url, update) => {
      previews.push(painter.paint(url, "preview"));
      options.onPreview?.(url, update);
    };
    const { onQueue, onProgress, onEvent } = options;
    job = await source.follow(job.id, { signal, onPreview, onQueue, onProgress, onEvent });
    await Promise.all(previews);
  }
  const image = job.images[options.index ?? 0];
  if (job.status !== "completed" || image === void 0) return job;
  if (!painter.showsPreview && image.placeholder) painter.show(image.placeholder.data_url, "placeholder");
  await painter.paint(image.url, "final", true);
  throwIfAborted(signal);
  return job;
}
function reserve(img, size) {
  if (!img.getAttribute("width")) img.setAttribute("width", String(size.width));
  if (!img.getAttribute("height")) img.setAttribute("height", String(size.height));
  img.style.aspectRatio = `${size.width} / ${size.height}`;
  img.style.objectFit = "cover";
  img.style.clipPath = "inset(0)";
}
var Painter = class {
  #img;
  #options;
  #ticket = 0;
  #shownTicket = -1;
  #shownRank = -1;
  constructor(img, options) {
    this.#img = img;
    this.#options = options;
    img.style.transition = `filter ${options.transitionMs ?? 300}ms ease-out`;
  }
  get showsPreview() {
    return this.#shownRank === RANK.preview;
  }
  /** Loads the picture, then shows it unless something newer or better was shown meanwhile.
   * A preview that fails to load is skipped; the final image's failure is thrown. */
  async paint(url, stage, required = false) {
    const ticket = ++this.#ticket;
    try {
      await (this.#options.load ?? preload)(url);
    } catch (error) {
      if (required) throw error;
      return;
    }
    if (ticket > this.#shownTicket && RANK[stage] >= this.#shownRank) this.show(url, stage, ticket);
  }
  show(src, stage, ticket = ++this.#ticket) {
    const blur = this.#options.blurPx ?? 12;
    const px = stage === "placeholder" ? blur : stage === "preview" ? blur / 3 : 0;
    this.#img.src = src;
    this.#img.style.filter = px > 0 ? `blur(${px}px)` : "none";
    this.#img.dataset["igStage"] = stage;
    this.#shownTicket = ticket;
    this.#shownRank = RANK[stage];
    this.#options.onStage?.(stage, src);
  }
};
function preload(url) {
  const loader = new Image();
  loader.decoding = "async";
  loader.src = url;
  return loader.decode();
}

// src/client.ts
var ImageGateClient = class {
  baseUrl;
  http;
  jobs;
  cache;
  constructor(baseUrl, options = {}) {
    this.http = new Http(baseUrl, new Auth(options), options);
    this.baseUrl = this.http.baseUrl;
    this.jobs = new Jobs(this.http);
    this.cache = options.cache === false ? null : new JobCache(options.cache);
  }
  /** Follows a job to its end (SSE, resumed after drops; polling if streaming fails) and
   * resolves with the finished job. */
  subscribe(jobId, options = {}) {
    return subscribe(this.http, jobId, options);
  }
  /** Submits, follows, and resolves with the completed job; rejects with JobFailedError,
   * JobCanceledError, AbortError or TimeoutError (the last two cancel it on the server). */
  generate(params, options = {}) {
    return generate(this, params, options);
  }
  /** Shows a job's image in `img`: placeholder, live previews, then the final image. */
  progressiveImage(img, jobOrId, options = {}) {
    const source = {
      getJob: (id, signal) => this.jobs.get(id, { signal }),
      follow: (id, follow) => this.subscribe(id, follow)
    };
    return progressiveImage(img, jobOrId, source, options);
  }
  async styles(options = {}) {
    return (await this.http.json("/v1/styles", { signal: options.signal })).data;
  }
  async templates(options = {}) {
    return (await this.http.json("/v1/templates", { signal: options.signal })).data;
  }
};

// src/legacy.ts
var ImageGenerationClient = class extends ImageGateClient {
  #results = /* @__PURE__ */ new Map();
  #loaded = /* @__PURE__ */ new Set();
  constructor(apiBaseUrl, options = {}) {
    super(apiBaseUrl, options);
  }
  async generate(first, second) {
    if (typeof first !== "string") return super.generate(first, second);
    const body = { prompt: first, style: typeof second === "string" ? second : null };
    const request = { method: "POST", body, idempotencyKey: randomId() };
    const { data } = await this.http.json("/generate", request);
    return data.job_id;
  }
  /** Polls the job every `intervalMs`, at most `maxAttempts` times; resolves with its image URL. */
  async waitForCompletion(jobId, maxAttempts = 60, intervalMs = 1e3) {
    const known = this.#results.get(jobId);
    if (known !== void 0) return known;
    for (let attempt = 0; attempt < maxAttempts; attempt++) {
      const path = `/status/${encodeURIComponent(jobId)}`;
      const { data: status } = await this.http.json(path);
      if (status.status === "completed" && status.result_url !== null) {
        this.#results.set(jobId, status.result_url);
        return status.result_url;
      }
      if (status.status === "failed") throw new JobFailedError(asJob(status));
      if (status.status === "canceled") throw new JobCanceledError(asJob(status));
      if (attempt < maxAttempts - 1) await sleep(intervalMs);
    }
    throw new TimeoutError(`The job was not done after ${maxAttempts} checks.`);
  }
  /** An <img> showing `placeholderUrl` blurred, then `imageUrl` once it has loaded. */
  loadImageProgressive(imageUrl, placeholderUrl) {
    const img = new Image();
    img.style.transition = "filter 300ms ease-out";
    if (this.#loaded.has(imageUrl)) {
      img.src = imageUrl;
      return img;
    }
    img.src = placeholderUrl;
    img.style.filter = "blur(10px)";
    const full = new Image();
    full.onload = () => {
      this.#loaded.add(imageUrl);
      img.src = imageUrl;
      img.style.filter = "none";
    };
    full.onerror = () => {
      img.style.filter = "none";
    };
    full.src = imageUrl;
    return img;
  }
};
function asJob(status) {
  const error = status.error === null ? null : { code: "generation_failed", message: status.error, retryable: false };
  return { id: status.id, status: status.status, error, images: [] };
}

// src/webhooks.ts
var encoder = new TextEncoder();
async function verifyWebhook(payload, headers, secret, options = {}) {
  const id = header(headers, "webhook-id");
  const timestamp = header(headers, "webhook-timestamp");
  const signatures = header(headers, "webhook-signature");
  checkTimestamp(timestamp, options);
  const body = typeof payload === "string" ? encoder.encode(payload) : payload;
  const signed = concat(encoder.encode(`${id}.${timestamp}.`), body);
  const given = signatures.split(" ").flatMap(versionOne);
  for (const key of (typeof secret === "string" ? [secret] : secret).map(keyOf)) {
    const expected = await hmac(key, signed);
    if (given.some((candidate) => equalInConstantTime(candidate, expected))) {
      return JSON.parse(new TextDecoder().decode(body));
    }
  }
  throw new WebhookVerificationError("No signature matches the message.");
}
function header(headers, name) {
  const raw = headers instanceof Headers ? headers.get(name) : lookup(headers, name);
  const value = Array.isArray(raw) ? raw[0] : raw;
  if (value === void 0 || value === null || value === "") {
    throw new WebhookVerificationError(`The ${name} header is missing.`);
  }
  return value;
}
function lookup(headers, name) {
  const found = Object.keys(headers).find((key) => key.toLowerCase() === name);
  return found === void 0 ? void 0 : headers[found];
}
function checkTimestamp(timestamp, options) {
  if (!/^\d+$/.test(timestamp)) throw new WebhookVerificationError("The timestamp is not a number.");
  const now = options.nowS ?? Math.floor(Date.now() / 1e3);
  if (Math.abs(now - Number(timestamp)) > (options.toleranceS ?? 300)) {
    throw new WebhookVerificationError("The timestamp is too far from now.");
  }
}
function versionOne(signature) {
  const [version, value] = signature.split(",", 2);
  if (version !== "v1" || value === void 0) return [];
  const decoded = fromBase64(value);
  return decoded === null ? [] : [decoded];
}
function keyOf(secret) {
  const key = fromBase64(secret.startsWith("whsec_") ? secret.slice(6) : secret);
  if (key === null || key.length === 0) throw new WebhookVerificationError("The secret is not valid base64.");
  return key;
}
async function hmac(key, data) {
  const algorithm = { name: "HMAC", hash: "SHA-256" };
  const imported = await crypto.subtle.importKey("raw", key, algorithm, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", imported, data));
}
function equalInConstantTime(a, b) {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= a[i] ^ b[i];
  return difference === 0;
}
function fromBase64(text) {
  try {
    return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  } catch {
    return null;
  }
}
function concat(a, b) {
  const joined = new Uint8Array(a.length + b.length);
  joined.set(a);
  joined.set(b, a.length);
  return joined;
}
export {
  APIError,
  AbortError,
  Auth,
  AuthenticationError,
  BudgetExceededError,
  ConflictError,
  ConnectionError,
  ContentPolicyError,
  FINAL_STATUSES,
  Http,
  ImageGateClient,
  ImageGateError,
  ImageGenerationClient,
  InternalServerError,
  JobCache,
  JobCanceledError,
  JobFailedError,
  Jobs,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
  ServiceUnavailableError,
  TimeoutError,
  ValidationError,
  WebhookVerificationError,
  errorFor,
  isFinal,
  jwtExpiry,
  parseEventStream,
  progressiveImage,
  requestKey,
  reserve,
  retryAfterSeconds,
  verifyWebhook
};
