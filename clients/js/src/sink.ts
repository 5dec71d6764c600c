// What a subscriber hears, whichever way the news came (SSE, EventSource or polling):
// the callbacks, the last stored event id (to resume from), and whether the job ended.
import type { Job, JobEvent, ProgressUpdate, QueueUpdate } from "./types.js";

export interface SubscribeHandlers {
  /** The job's place in the queue changed (position, and an ETA when known). */
  onQueue?: (update: QueueUpdate) => void;
  /** A step was done. */
  onProgress?: (update: ProgressUpdate) => void;
  /** A step made a preview: its signed URL. */
  onPreview?: (url: string, update: ProgressUpdate) => void;
  /** Every event, as the server sent it (polling makes them up, with id 0). */
  onEvent?: (event: JobEvent) => void;
}

const TERMINAL = new Set(["completed", "failed", "canceled"]);
const EVENT_OF_STATUS: Record<Job["status"], JobEvent["type"]> = {
  pending_review: "pending_review",
  queued: "queued",
  generating: "started",
  completed: "completed",
  failed: "failed",
  canceled: "canceled",
};

export class Sink {
  /** The last stored event's id: a reconnect resumes after it. */
  lastId: number;
  /** How many events it has taken off streams. */
  heard = 0;
  readonly #handlers: SubscribeHandlers;
  #seen: Job | null = null;

  constructor(handlers: SubscribeHandlers, lastId = 0) {
    this.#handlers = handlers;
    this.lastId = lastId;
  }

  /** Takes one event off a stream; true when it ends the job. */
  take(type: string, data: string, id: string | null): boolean {
    const number = id === null || id === "" ? 0 : Number(id);
    this.lastId = Math.max(this.lastId, number); // a resume starts after it: no repeats
    this.heard += 1;
    const payload = parse(data);
    this.#emit({ id: number, type: type as JobEvent["type"], data: payload });
    return TERMINAL.has(type);
  }

  /** Takes a polled job: what changed since the last poll becomes events. */
  observe(job: Job): void {
    const before = this.#seen;
    this.#seen = job;
    const data: Record<string, unknown> = {};
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

  #emit(event: JobEvent): void {
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
}

function parse(data: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(data);
    return value !== null && typeof value === "object" ? (value as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

function numberOrNull(value: unknown): number | null {
  return typeof value === "number" ? value : null;
}
