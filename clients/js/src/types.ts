// The shapes of ImageGate's requests and answers, named for users of this package. They
// come from the OpenAPI document (./openapi.ts, generated); only what the document cannot
// say (the events' payloads, and the placeholder until the server documents it) is here.
import type { components, operations } from "./openapi.js";

type Schemas = components["schemas"];

export type Job = Schemas["JobOut"];
export type JobStatus = Schemas["Status"];
export type JobCreateParams = Schemas["JobCreate"];
export type JobPage = Schemas["JobPage"];
export type Problem = Schemas["ProblemOut"];
export type Style = Schemas["StyleOut"];
export type LegacyStatus = Schemas["LegacyStatusOut"];
export type LegacyGenerated = Schemas["LegacyGenerateOut"];
export type ClientToken = Schemas["ClientTokenOut"];
export type JobFilters = Omit<
  NonNullable<operations["list_jobs_v1_jobs_get"]["parameters"]["query"]>,
  "cursor"
>;

/** A tiny stand-in shown while the image loads: a ThumbHash and a PNG data URL of it. */
export interface Placeholder {
  thumbhash: string;
  data_url: string;
}

export type Image = Job["images"][number] & { placeholder?: Placeholder | null };

export interface Template {
  name: string;
  description: string;
  template: string;
  style: string;
  forbidden: string[];
  inputs: { name: string; description: string; required: boolean }[];
}

/** One event of a job's stream (SSE or polled), as `onEvent` receives it. */
export interface JobEvent {
  /** The stored event's id; 0 for an unstored queue update. */
  id: number;
  type: "pending_review" | "queued" | "started" | "progress" | "completed" | "failed" | "canceled";
  data: Record<string, unknown>;
}

export interface QueueUpdate {
  /** Queued jobs ahead of this one (null while it waits to be retried). */
  position: number | null;
  /** Likely seconds until it is done, when the server knows. */
  etaS: number | null;
}

export interface ProgressUpdate {
  step: number;
  total: number;
  /** A signed URL of a low-resolution preview, when this step made one. */
  previewUrl: string | null;
}

export const FINAL_STATUSES: ReadonlySet<JobStatus> = new Set(["completed", "failed", "canceled"]);

export function isFinal(job: Pick<Job, "status">): boolean {
  return FINAL_STATUSES.has(job.status);
}
