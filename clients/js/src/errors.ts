// Every error this package throws, one class per kind a caller branches on:
//
//   ImageGateError
//   ├── APIError                  the server refused: status, code, field, detail, problem
//   │   ├── ValidationError           400, 413, 422 (a field's value; `field` names it)
//   │   ├── ContentPolicyError        content_policy_violation
//   │   ├── AuthenticationError       401
//   │   ├── BudgetExceededError       402
//   │   ├── PermissionDeniedError     403
//   │   ├── NotFoundError             404 (also another user's or tenant's object)
//   │   ├── ConflictError             409
//   │   ├── RateLimitError            429: rate_limited, quota_exceeded; retryAfterS
//   │   ├── ServiceUnavailableError   503; retryAfterS
//   │   └── InternalServerError       other 5xx
//   ├── ConnectionError           no answer at all (network, DNS, CORS)
//   ├── AbortError                the caller's signal aborted
//   ├── TimeoutError              the caller's timeoutMs passed
//   ├── JobFailedError            the job ended `failed`: code, retryable, job
//   ├── JobCanceledError          the job ended `canceled`
//   └── WebhookVerificationError  a webhook's signature or timestamp is not valid

import type { Job, Problem } from "./types.js";

export class ImageGateError extends Error {
  override name = "ImageGateError";
}

export interface ProblemDetails extends Partial<Problem> {
  [extra: string]: unknown;
}

export class APIError extends ImageGateError {
  override name = "APIError";
  readonly status: number;
  readonly code: string;
  readonly field: string | null;
  readonly detail: string;
  readonly problem: ProblemDetails;
  readonly headers: Headers;
  /** The server's request id (X-Request-ID), when it sends one. */
  readonly requestId: string | null;

  constructor(status: number, problem: ProblemDetails, headers: Headers) {
    const detail = problem.detail ?? `HTTP ${status}`;
    super(detail);
    this.status = status;
    this.code = problem.code ?? `http_${status}`;
    this.field = problem.field ?? null;
    this.detail = detail;
    this.problem = problem;
    this.headers = headers;
    this.requestId = headers.get("x-request-id");
  }
}

export class ValidationError extends APIError {
  override name = "ValidationError";
}
export class ContentPolicyError extends APIError {
  override name = "ContentPolicyError";
  get categories(): string[] {
    return asStrings(this.problem["categories"]);
  }
}
export class AuthenticationError extends APIError {
  override name = "AuthenticationError";
}
export class BudgetExceededError extends APIError {
  override name = "BudgetExceededError";
}
export class PermissionDeniedError extends APIError {
  override name = "PermissionDeniedError";
}
export class NotFoundError extends APIError {
  override name = "NotFoundError";
}
export class ConflictError extends APIError {
  override name = "ConflictError";
}
export class RateLimitError extends APIError {
  override name = "RateLimitError";
  /** Seconds the server asks to wait (Retry-After), when it says. */
  get retryAfterS(): number | null {
    return retryAfterSeconds(this.headers);
  }
  get policy(): string | null {
    const policy = this.problem["policy"];
    return typeof policy === "string" ? policy : null;
  }
}
export class ServiceUnavailableError extends APIError {
  override name = "ServiceUnavailableError";
  get retryAfterS(): number | null {
    return retryAfterSeconds(this.headers);
  }
}
export class InternalServerError extends APIError {
  override name = "InternalServerError";
}

export class ConnectionError extends ImageGateError {
  override name = "ConnectionError";
  constructor(cause: unknown) {
    super(`Could not reach ImageGate: ${cause instanceof Error ? cause.message : String(cause)}`, {
      cause,
    });
  }
}

export class AbortError extends ImageGateError {
  override name = "AbortError";
  constructor(message = "The operation was aborted.", options?: ErrorOptions) {
    super(message, options);
  }
}

export class TimeoutError extends ImageGateError {
  override name = "TimeoutError";
  constructor(message = "The operation timed out.") {
    super(message);
  }
}

export class JobFailedError extends ImageGateError {
  override name = "JobFailedError";
  readonly job: Job;
  readonly code: string;
  readonly retryable: boolean;
  constructor(job: Job) {
    super(job.error?.message ?? "The job failed.");
    this.job = job;
    this.code = job.error?.code ?? "generation_failed";
    this.retryable = job.error?.retryable ?? false;
  }
}

export class JobCanceledError extends ImageGateError {
  override name = "JobCanceledError";
  readonly job: Job;
  constructor(job: Job) {
    super("The job was canceled.");
    this.job = job;
  }
}

export class WebhookVerificationError extends ImageGateError {
  override name = "WebhookVerificationError";
}

type APIErrorClass = new (status: number, problem: ProblemDetails, headers: Headers) => APIError;

const BY_CODE: Record<string, APIErrorClass> = {
  content_policy_violation: ContentPolicyError,
  budget_exceeded: BudgetExceededError,
  rate_limited: RateLimitError,
  quota_exceeded: RateLimitError,
};

const BY_STATUS: Record<number, APIErrorClass> = {
  400: ValidationError,
  401: AuthenticationError,
  402: BudgetExceededError,
  403: PermissionDeniedError,
  404: NotFoundError,
  409: ConflictError,
  413: ValidationError,
  422: ValidationError,
  429: RateLimitError,
  503: ServiceUnavailableError,
};

/** The typed error for a refusal: by its problem `code` first, then by its status. */
export function errorFor(status: number, problem: ProblemDetails, headers: Headers): APIError {
  const byCode = problem.code === undefined ? undefined : BY_CODE[problem.code];
  const kind = byCode ?? BY_STATUS[status] ?? (status >= 500 ? InternalServerError : APIError);
  return new kind(status, problem, headers);
}

/** Retry-After as seconds: a number, or an HTTP date from now. */
export function retryAfterSeconds(headers: Headers, now = Date.now()): number | null {
  const value = headers.get("retry-after");
  if (value === null || value.trim() === "") return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, (date - now) / 1000);
}

function asStrings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];
}
