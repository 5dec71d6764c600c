// The job resource: create, get, list (an async iterator over pages), cancel.
import type { Http, Query } from "./http.js";
import type { Job, JobCreateParams, JobFilters, JobPage } from "./types.js";

export interface CallOptions {
  signal?: AbortSignal | undefined;
}

export interface CreateOptions extends CallOptions {
  /** Sent as Idempotency-Key; made up when not given, and the same on every retry. */
  idempotencyKey?: string | undefined;
  /** Sent as Cache-Control: "no-cache" generates afresh, "no-store" also keeps nothing. */
  cacheControl?: "no-cache" | "no-store" | undefined;
}

/** A job as created, with what the answer's headers said about it. */
export interface Created {
  job: Job;
  /** RFC 9211 Cache-Status: `ImageGate; hit`, `…; fwd=miss; stored`, … */
  cacheStatus: string | null;
  /** True when an earlier request with the same Idempotency-Key made this job. */
  replayed: boolean;
  /** Suggested seconds between polls while the job is unfinished. */
  retryAfterS: number | null;
}

export class Jobs {
  readonly #http: Http;

  constructor(http: Http) {
    this.#http = http;
  }

  async create(params: JobCreateParams, options: CreateOptions = {}): Promise<Job> {
    return (await this.createWithDetails(params, options)).job;
  }

  async createWithDetails(params: JobCreateParams, options: CreateOptions = {}): Promise<Created> {
    const headers: Record<string, string> = {};
    if (options.cacheControl !== undefined) headers["Cache-Control"] = options.cacheControl;
    const { data, response } = await this.#http.json<Job>("/v1/jobs", {
      method: "POST",
      body: params,
      headers,
      signal: options.signal,
      idempotencyKey: options.idempotencyKey,
    });
    const retryAfter = response.headers.get("retry-after");
    return {
      job: data,
      cacheStatus: response.headers.get("cache-status"),
      replayed: response.headers.get("idempotent-replayed") === "true",
      retryAfterS: retryAfter === null ? null : Number(retryAfter),
    };
  }

  async get(id: string, options: CallOptions = {}): Promise<Job> {
    const path = `/v1/jobs/${encodeURIComponent(id)}`;
    return (await this.#http.json<Job>(path, { signal: options.signal })).data;
  }

  async cancel(id: string, options: CallOptions = {}): Promise<Job> {
    const path = `/v1/jobs/${encodeURIComponent(id)}/cancel`;
    return (await this.#http.json<Job>(path, { method: "POST", signal: options.signal })).data;
  }

  /** Every job that matches, newest first, fetched a page at a time as you iterate:
   * `for await (const job of client.jobs.list({ status: "completed" }))`. */
  async *list(filters: JobFilters = {}, options: CallOptions = {}): AsyncGenerator<Job> {
    for await (const page of this.pages(filters, options)) yield* page.data;
  }

  /** The same, a page at a time. */
  async *pages(filters: JobFilters = {}, options: CallOptions = {}): AsyncGenerator<JobPage> {
    let cursor: string | null = null;
    do {
      const query: Query = { ...filters, cursor };
      const request = { query, signal: options.signal };
      const { data }: { data: JobPage } = await this.#http.json<JobPage>("/v1/jobs", request);
      yield data;
      cursor = data.next_cursor;
    } while (cursor !== null);
  }
}
