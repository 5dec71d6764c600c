// The client: one object per ImageGate server and credential.
import { Auth, type AuthOptions } from "./auth.js";
import { JobCache, type CacheOptions } from "./cache.js";
import { generate, type GenerateOptions } from "./generate.js";
import { Http, type HttpOptions } from "./http.js";
import { Jobs, type CallOptions } from "./jobs.js";
import { progressiveImage, type ProgressiveOptions } from "./progressive.js";
import { subscribe, type SubscribeOptions } from "./subscribe.js";
import type { Job, JobCreateParams, Style, Template } from "./types.js";

export interface ClientOptions extends AuthOptions, HttpOptions {
  /** The cache of finished seeded jobs (default on: 100 jobs, one hour); false turns it off. */
  cache?: CacheOptions | false;
}

export class ImageGateClient {
  readonly baseUrl: string;
  readonly http: Http;
  readonly jobs: Jobs;
  readonly cache: JobCache | null;

  constructor(baseUrl: string, options: ClientOptions = {}) {
    this.http = new Http(baseUrl, new Auth(options), options);
    this.baseUrl = this.http.baseUrl;
    this.jobs = new Jobs(this.http);
    this.cache = options.cache === false ? null : new JobCache(options.cache);
  }

  /** Follows a job to its end (SSE, resumed after drops; polling if streaming fails) and
   * resolves with the finished job. */
  subscribe(jobId: string, options: SubscribeOptions = {}): Promise<Job> {
    return subscribe(this.http, jobId, options);
  }

  /** Submits, follows, and resolves with the completed job; rejects with JobFailedError,
   * JobCanceledError, AbortError or TimeoutError (the last two cancel it on the server). */
  generate(params: JobCreateParams, options: GenerateOptions = {}): Promise<Job> {
    return generate(this, params, options);
  }

  /** Shows a job's image in `img`: placeholder, live previews, then the final image. */
  progressiveImage(
    img: HTMLImageElement,
    jobOrId: Job | string,
    options: ProgressiveOptions = {},
  ): Promise<Job> {
    const source = {
      getJob: (id: string, signal?: AbortSignal) => this.jobs.get(id, { signal }),
      follow: (id: string, follow: SubscribeOptions) => this.subscribe(id, follow),
    };
    return progressiveImage(img, jobOrId, source, options);
  }

  async styles(options: CallOptions = {}): Promise<Style[]> {
    return (await this.http.json<Style[]>("/v1/styles", { signal: options.signal })).data;
  }

  async templates(options: CallOptions = {}): Promise<Template[]> {
    return (await this.http.json<Template[]>("/v1/templates", { signal: options.signal })).data;
  }
}
