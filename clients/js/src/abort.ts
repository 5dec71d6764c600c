// Waiting that an AbortSignal can cut short, and what an abort rejects with.
import { AbortError, TimeoutError } from "./errors.js";

/** The error an aborted signal stands for: our TimeoutError or AbortError as given, else
 * an AbortError (a DOMException reason, say, becomes its cause). */
export function abortError(signal: AbortSignal): AbortError | TimeoutError {
  const reason: unknown = signal.reason;
  if (reason instanceof AbortError || reason instanceof TimeoutError) return reason;
  return new AbortError(undefined, { cause: reason });
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(signal);
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const timer = setTimeout(done, ms);
    function done(): void {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }
    function onAbort(): void {
      clearTimeout(timer);
      reject(abortError(signal as AbortSignal));
    }
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** A random id for an Idempotency-Key: getRandomValues works outside secure contexts too,
 * where crypto.randomUUID does not exist. */
export function randomId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
