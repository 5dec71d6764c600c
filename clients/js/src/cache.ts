// Finished jobs, kept in memory by the full request that made them: least recently used
// out first, and none past its time to live or past its image links' expiry. Only seeded
// requests are kept, as on the server: an unseeded one makes a new image every time.
import type { Job, JobCreateParams } from "./types.js";

export interface CacheOptions {
  /** Most jobs kept (default 100). */
  maxEntries?: number;
  /** How long a job is kept (default one hour), never past its signed URLs' expiry. */
  ttlMs?: number;
}

interface Entry {
  job: Job;
  expiresAtMs: number;
}

export class JobCache {
  readonly #entries = new Map<string, Entry>();
  readonly #maxEntries: number;
  readonly #ttlMs: number;
  readonly #now: () => number;

  constructor(options: CacheOptions = {}, now: () => number = Date.now) {
    this.#maxEntries = options.maxEntries ?? 100;
    this.#ttlMs = options.ttlMs ?? 3_600_000;
    this.#now = now;
  }

  get size(): number {
    return this.#entries.size;
  }

  get(params: JobCreateParams): Job | undefined {
    const key = requestKey(params);
    const entry = key === null ? undefined : this.#entries.get(key);
    if (entry === undefined || key === null) return undefined;
    this.#entries.delete(key);
    if (entry.expiresAtMs <= this.#now()) return undefined;
    this.#entries.set(key, entry); // now the most recently used
    return entry.job;
  }

  set(params: JobCreateParams, job: Job): void {
    const key = requestKey(params);
    if (key === null || job.status !== "completed") return;
    const expiresAtMs = Math.min(this.#now() + this.#ttlMs, linksExpireAtMs(job));
    this.#entries.delete(key);
    this.#entries.set(key, { job, expiresAtMs });
    while (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next().value as string;
      this.#entries.delete(oldest);
    }
  }

  clear(): void {
    this.#entries.clear();
  }
}

/** The cache key of a request: every field, in a stable order; null when the request is
 * not deterministic (no seed) or asks not to be answered from a cache. */
export function requestKey(params: JobCreateParams): string | null {
  if (params.seed === undefined || params.seed === null) return null;
  if (params.cache === "no-cache" || params.cache === "no-store") return null;
  return canonicalJson(params);
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const fields = Object.entries(value)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${fields.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** The earliest `expires` (Unix seconds) among the job's signed image URLs, a minute early. */
function linksExpireAtMs(job: Job): number {
  let earliest = Number.POSITIVE_INFINITY;
  for (const image of job.images) {
    const expires = Number(new URL(image.url).searchParams.get("expires"));
    if (expires > 0) earliest = Math.min(earliest, expires * 1000 - 60_000);
  }
  return earliest;
}
