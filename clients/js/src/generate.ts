// Submit, follow, and resolve with the finished job. An abort or a timeout also cancels
// the job on the server: it must not go on spending the caller's budget unseen.
import { abortError, randomId } from "./abort.js";
import type { JobCache } from "./cache.js";
import { AbortError, JobCanceledError, JobFailedError, TimeoutError } from "./errors.js";
import type { Http } from "./http.js";
import type { Jobs } from "./jobs.js";
import { subscribe, type SubscribeOptions } from "./subscribe.js";
import { isFinal, type Job, type JobCreateParams } from "./types.js";

export interface GenerateOptions extends SubscribeOptions {
  /** Aborting it cancels the job on the server and rejects with AbortError. */
  signal?: AbortSignal | undefined;
  /** Past it, the job is canceled on the server and the call rejects with TimeoutError. */
  timeoutMs?: number | undefined;
  idempotencyKey?: string | undefined;
}

export interface Generator {
  http: Http;
  jobs: Jobs;
  cache: JobCache | null;
}

const CANCEL_TIMEOUT_MS = 10_000;

export async function generate(
  parts: Generator,
  params: JobCreateParams,
  options: GenerateOptions = {},
): Promise<Job> {
  const cached = parts.cache?.get(params);
  if (cached !== undefined) return cached;
  const control = deadline(options.signal, options.timeoutMs);
  const key = options.idempotencyKey ?? randomId();
  let job: Job | null = null;
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

function settle(job: Job, cache: JobCache | null, params: JobCreateParams): Job {
  if (job.status === "failed") throw new JobFailedError(job);
  if (job.status === "canceled") throw new JobCanceledError(job);
  cache?.set(params, job);
  return job;
}

/** Cancels the job, best effort. Aborted while it was being created, the job's id is not
 * known: the same request with the same Idempotency-Key answers with that job (or makes
 * one, which is canceled before it runs). */
async function cancelOnServer(
  jobs: Jobs,
  id: string | null,
  params: JobCreateParams,
  key: string,
): Promise<void> {
  const signal = AbortSignal.timeout(CANCEL_TIMEOUT_MS);
  try {
    const target = id ?? (await jobs.create(params, { idempotencyKey: key, signal })).id;
    await jobs.cancel(target, { signal });
  } catch {
    // finished meanwhile (409), or unreachable: nothing more to do here
  }
}

interface Deadline {
  signal: AbortSignal;
  dispose: () => void;
}

function deadline(outer: AbortSignal | undefined, timeoutMs: number | undefined): Deadline {
  const controller = new AbortController();
  const onAbort = (): void => controller.abort(new AbortError(undefined, { cause: outer?.reason }));
  if (outer?.aborted) onAbort();
  outer?.addEventListener("abort", onAbort, { once: true });
  const onTimeout = (): void => controller.abort(new TimeoutError(`No result within ${timeoutMs} ms.`));
  const timer = timeoutMs === undefined ? undefined : setTimeout(onTimeout, timeoutMs);
  return {
    signal: controller.signal,
    dispose: () => {
      clearTimeout(timer);
      outer?.removeEventListener("abort", onAbort);
    },
  };
}
