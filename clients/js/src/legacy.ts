// The original design's client, kept with its meaning: generate(prompt, style) submits to
// POST /generate and gives the job id, waitForCompletion() polls GET /status/{id} and gives
// the image URL, loadImageProgressive() shows a blurred placeholder until the image loads.
// Fixed: its cache was keyed by a prompt and style that the status answer does not carry,
// so it never hit; here finished results are kept by job id (and loaded images by URL),
// and requests themselves are never cached, since /generate takes no seed and so never
// makes the same image twice. A canceled job ends the wait, errors are typed, POSTs carry
// an Idempotency-Key and retries back off, and the placeholder's blur always clears.
import { randomId, sleep } from "./abort.js";
import { ImageGateClient, type ClientOptions } from "./client.js";
import { JobCanceledError, JobFailedError, TimeoutError } from "./errors.js";
import type { GenerateOptions } from "./generate.js";
import type { Job, JobCreateParams, LegacyGenerated, LegacyStatus } from "./types.js";

export class ImageGenerationClient extends ImageGateClient {
  readonly #results = new Map<string, string>();
  readonly #loaded = new Set<string>();

  constructor(apiBaseUrl: string, options: ClientOptions = {}) {
    super(apiBaseUrl, options);
  }

  /** Queues the prompt (with an optional style); resolves with the job id. Given a
   * request object instead, it is ImageGateClient's generate(). */
  override async generate(prompt: string, style?: string | null): Promise<string>;
  override async generate(params: JobCreateParams, options?: GenerateOptions): Promise<Job>;
  override async generate(first: unknown, second?: unknown): Promise<string | Job> {
    if (typeof first !== "string") return super.generate(first as JobCreateParams, second as GenerateOptions);
    const body = { prompt: first, style: typeof second === "string" ? second : null };
    const request = { method: "POST", body, idempotencyKey: randomId() };
    const { data } = await this.http.json<LegacyGenerated>("/generate", request);
    return data.job_id;
  }

  /** Polls the job every `intervalMs`, at most `maxAttempts` times; resolves with its image URL. */
  async waitForCompletion(jobId: string, maxAttempts = 60, intervalMs = 1000): Promise<string> {
    const known = this.#results.get(jobId);
    if (known !== undefined) return known;
    for (let attempt = 0; attempt < maxAttempts; attempt++) {
      const path = `/status/${encodeURIComponent(jobId)}`;
      const { data: status } = await this.http.json<LegacyStatus>(path);
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
  loadImageProgressive(imageUrl: string, placeholderUrl: string): HTMLImageElement {
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
}

/** The parts of a job that the original status answer has, for the typed errors. */
function asJob(status: LegacyStatus): Job {
  const error =
    status.error === null ? null : { code: "generation_failed", message: status.error, retryable: false };
  return { id: status.id, status: status.status, error, images: [] } as unknown as Job;
}
