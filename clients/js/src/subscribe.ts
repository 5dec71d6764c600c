// Following one job to its end. Over SSE first: EventSource where the platform has one
// (a browser; a token goes as ?access_token=, which is all EventSource can send), a fetch
// stream elsewhere (Node, or a secret key, which never goes in a URL). A dropped stream
// resumes after the last event heard (Last-Event-ID, or ?after=). When streaming does not
// work at all, it polls the job at the interval the server's Retry-After suggests.
import { abortError, sleep, throwIfAborted } from "./abort.js";
import { APIError, ConnectionError, retryAfterSeconds } from "./errors.js";
import type { Http } from "./http.js";
import { Sink, type SubscribeHandlers } from "./sink.js";
import { parseEventStream } from "./sse.js";
import { isFinal, type Job } from "./types.js";

export interface SubscribeOptions extends SubscribeHandlers {
  signal?: AbortSignal | undefined;
  /** "auto" (default): stream, and poll if streaming fails; "poll": poll only. */
  transport?: "auto" | "poll";
  /** Resume after this stored event id, as Last-Event-ID does. */
  lastEventId?: number;
}

type Outcome = "ended" | "unavailable";
const EVENT_TYPES = ["pending_review", "queued", "started", "progress", "completed", "failed", "canceled"];
const MAX_FAILURES = 3; // connections in a row that fail before any event: give up streaming

/** Follows the job until it ends; resolves with the finished job (completed, failed or
 * canceled: the caller decides what a failure means). */
export async function subscribe(http: Http, jobId: string, options: SubscribeOptions = {}): Promise<Job> {
  const sink = new Sink(options, options.lastEventId ?? 0);
  const path = `/v1/jobs/${encodeURIComponent(jobId)}`;
  if (options.transport !== "poll") {
    const stream = useEventSource(http) ? overEventSource : overFetch;
    if ((await stream(http, path, sink, options.signal)) === "ended") {
      return (await http.json<Job>(path, { signal: options.signal })).data;
    }
  }
  return poll(http, path, sink, options.signal);
}

function useEventSource(http: Http): boolean {
  return typeof globalThis.EventSource === "function" && !http.auth.isSecretKey;
}

async function overFetch(http: Http, path: string, sink: Sink, signal?: AbortSignal): Promise<Outcome> {
  for (let failures = 0; failures < MAX_FAILURES; ) {
    const resume: Record<string, string> = sink.lastId > 0 ? { "Last-Event-ID": String(sink.lastId) } : {};
    const headers = { Accept: "text/event-stream", ...resume };
    let response: Response;
    try {
      response = await http.send(`${path}/events`, { headers, signal });
    } catch (error) {
      if (!isTransient(error)) throw error;
      await sleep(backoffMs(++failures), signal);
      continue;
    }
    if (!(response.headers.get("content-type") ?? "").startsWith("text/event-stream")) {
      await response.body?.cancel();
      return "unavailable"; // a proxy or an old server answered something else
    }
    const before = sink.heard;
    if (await readStream(response, sink, signal)) return "ended";
    failures = sink.heard > before ? 0 : failures + 1; // news came: reconnect at once
    if (failures > 0) await sleep(backoffMs(failures), signal);
  }
  return "unavailable";
}

/** Reads one open stream; true when it carried the job's end. */
async function readStream(response: Response, sink: Sink, signal?: AbortSignal): Promise<boolean> {
  if (response.body === null) return false;
  try {
    for await (const message of parseEventStream(response.body)) {
      if (sink.take(message.event, message.data, message.id)) return true;
    }
  } catch (error) {
    throwIfAborted(signal);
    if (!(error instanceof TypeError || isDomException(error))) throw error; // a drop
  }
  return false;
}

async function overEventSource(http: Http, path: string, sink: Sink, signal?: AbortSignal): Promise<Outcome> {
  for (let failures = 0; failures < MAX_FAILURES; ) {
    const query = { access_token: await http.auth.credential(), after: sink.lastId || undefined };
    const before = sink.heard;
    const outcome = await openEventSource(http.url(`${path}/events`, query), sink, signal);
    if (outcome === "ended") return "ended";
    if (outcome === "dropped" && sink.heard > before) {
      failures = 0; // it carried news before it dropped: resume at once
      continue;
    }
    // It never opened: EventSource cannot say why, so ask the job itself. A 401 refreshes
    // the token; a 404 or 403 is thrown; if the job is there, streaming is what fails.
    await http.send(path, { signal });
    await sleep(backoffMs(++failures), signal);
  }
  return "unavailable";
}

type SourceOutcome = "ended" | "dropped" | "failed";

function openEventSource(url: string, sink: Sink, signal?: AbortSignal): Promise<SourceOutcome> {
  return new Promise((resolve, reject) => {
    throwIfAborted(signal);
    const source = new EventSource(url);
    let opened = false;
    const finish = (outcome: SourceOutcome): void => {
      source.close(); // we reconnect ourselves: with a fresh token, after the last event
      signal?.removeEventListener("abort", onAbort);
      resolve(outcome);
    };
    const onAbort = (): void => {
      source.close();
      reject(abortError(signal as AbortSignal));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    source.onopen = () => {
      opened = true;
    };
    source.onerror = () => finish(opened ? "dropped" : "failed");
    for (const type of EVENT_TYPES) {
      source.addEventListener(type, (event: MessageEvent<string>) => {
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

async function poll(http: Http, path: string, sink: Sink, signal?: AbortSignal): Promise<Job> {
  for (;;) {
    const { data: job, response } = await http.json<Job>(path, { signal });
    sink.observe(job);
    if (isFinal(job)) return job;
    await sleep((retryAfterSeconds(response.headers) ?? 2) * 1000, signal);
  }
}

function isTransient(error: unknown): boolean {
  if (error instanceof ConnectionError) return true;
  return error instanceof APIError && (error.status === 429 || error.status >= 500);
}

function isDomException(error: unknown): boolean {
  return typeof DOMException === "function" && error instanceof DOMException;
}

function backoffMs(failures: number): number {
  return Math.random() * Math.min(5000, 250 * 2 ** failures);
}
