// One request, done well: the credential, an Idempotency-Key on every POST (the same on
// each retry, so a retry never makes a second job), retries with backoff and full jitter
// on network errors, 429 and 503 (waiting what Retry-After says), and typed errors.
import { abortError, randomId, sleep } from "./abort.js";
import type { Auth } from "./auth.js";
import { ConnectionError, errorFor, retryAfterSeconds, type ProblemDetails } from "./errors.js";

export type Query = Record<string, string | number | boolean | null | undefined>;

export interface RetryOptions {
  /** Retries after the first try (default 2). */
  maxRetries?: number;
  /** The first backoff's ceiling in ms, doubled on each retry (default 500). */
  retryBaseMs?: number;
  /** The longest backoff in ms (default 8000). */
  retryMaxMs?: number;
  /** A Retry-After longer than this (seconds) is not waited for: the error is thrown (default 60). */
  maxRetryAfterS?: number;
}

export interface HttpOptions extends RetryOptions {
  fetch?: typeof fetch;
  headers?: Record<string, string>;
}

export interface RequestOptions {
  method?: string;
  query?: Query;
  body?: unknown;
  headers?: Record<string, string>;
  signal?: AbortSignal | undefined;
  /** For a POST; one is made up when not given. */
  idempotencyKey?: string | undefined;
}

const RETRIED_STATUSES = new Set([429, 503]);

export class Http {
  readonly baseUrl: string;
  readonly auth: Auth;
  readonly #fetch: typeof fetch;
  readonly #options: HttpOptions;

  constructor(baseUrl: string, auth: Auth, options: HttpOptions = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    this.auth = auth;
    this.#fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.#options = options;
  }

  url(path: string, query: Query = {}): string {
    const url = new URL(this.baseUrl + path);
    for (const [name, value] of Object.entries(query)) {
      if (value !== undefined && value !== null) url.searchParams.set(name, String(value));
    }
    return url.toString();
  }

  /** The parsed JSON body of a 2xx answer, with the response. */
  async json<T>(path: string, options: RequestOptions = {}): Promise<{ data: T; response: Response }> {
    const response = await this.send(path, options);
    return { data: (await response.json()) as T, response };
  }

  /** A 2xx response, after retries; anything else is thrown as a typed error. */
  async send(path: string, options: RequestOptions = {}): Promise<Response> {
    const method = options.method ?? "GET";
    const key = method === "POST" ? (options.idempotencyKey ?? randomId()) : undefined;
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
        this.auth.invalidate(); // a token revoked or expired early: one fresh try
        refreshed = true;
        continue;
      }
      const waitMs = this.#retryWaitMs(response, attempt);
      if (attempt >= maxRetries || waitMs === null) throw error;
      await sleep(waitMs, options.signal);
    }
  }

  /** One try: the response, or null after a network error that may be retried. */
  async #attempt(
    path: string,
    options: RequestOptions,
    key: string | undefined,
    last: boolean,
  ): Promise<Response | null> {
    const init = await this.#init(options, key);
    try {
      return await this.#fetch(this.url(path, options.query), init);
    } catch (cause) {
      if (options.signal?.aborted) throw abortError(options.signal);
      if (last) throw new ConnectionError(cause);
      return null;
    }
  }

  async #init(options: RequestOptions, key: string | undefined): Promise<RequestInit> {
    const headers: Record<string, string> = { ...this.#options.headers, ...options.headers };
    const credential = await this.auth.credential();
    if (credential !== undefined) headers["Authorization"] = `Bearer ${credential}`;
    if (key !== undefined) headers["Idempotency-Key"] = key;
    const init: RequestInit = { method: options.method ?? "GET", headers };
    if (options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    if (options.signal !== undefined) init.signal = options.signal;
    return init;
  }

  #retryWaitMs(response: Response, attempt: number): number | null {
    if (!RETRIED_STATUSES.has(response.status)) return null;
    const asked = retryAfterSeconds(response.headers);
    if (asked === null) return this.#backoffMs(attempt);
    return asked > (this.#options.maxRetryAfterS ?? 60) ? null : asked * 1000;
  }

  /** Full jitter: anywhere from 0 to the doubled ceiling, so clients that failed together
   * do not all come back together. */
  #backoffMs(attempt: number): number {
    const base = this.#options.retryBaseMs ?? 500;
    const ceiling = Math.min(this.#options.retryMaxMs ?? 8000, base * 2 ** attempt);
    return Math.random() * ceiling;
  }
}

async function toError(response: Response): Promise<Error> {
  let problem: ProblemDetails = {};
  try {
    const body: unknown = await response.json();
    if (body !== null && typeof body === "object") problem = body as ProblemDetails;
  } catch {
    problem = { detail: `HTTP ${response.status} ${response.statusText}`.trim() };
  }
  return errorFor(response.status, problem, response.headers);
}
