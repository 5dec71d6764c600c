import assert from "node:assert/strict";
import { test } from "node:test";
import {
  APIError,
  AuthenticationError,
  BudgetExceededError,
  ContentPolicyError,
  errorFor,
  InternalServerError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
  retryAfterSeconds,
  ServiceUnavailableError,
  ValidationError,
} from "../../dist/index.js";

test("the problem's code picks the class first, then its status", () => {
  const cases = [
    [400, "content_policy_violation", ContentPolicyError],
    [402, "budget_exceeded", BudgetExceededError],
    [429, "quota_exceeded", RateLimitError],
    [401, "unauthorized", AuthenticationError],
    [403, "origin_forbidden", PermissionDeniedError],
    [404, "job_not_found", NotFoundError],
    [422, "invalid_dimensions", ValidationError],
    [503, "queue_full", ServiceUnavailableError],
    [500, "internal_error", InternalServerError],
    [418, "teapot", APIError],
  ];
  for (const [status, code, kind] of cases) {
    const error = errorFor(status, { code, detail: "why", field: "width" }, new Headers());
    assert.equal(error.constructor, kind, code);
    assert.equal(error.status, status);
    assert.equal(error.code, code);
    assert.equal(error.field, "width");
    assert.equal(error.detail, "why");
    assert.equal(error.name, kind.name);
    assert.ok(error instanceof APIError);
  }
});

test("a refusal carries what the server said about it", () => {
  const headers = new Headers({ "retry-after": "7", "x-request-id": "req_1" });
  const limited = errorFor(429, { code: "rate_limited", policy: "tenant.requests_per_minute" }, headers);
  assert.equal(limited.retryAfterS, 7);
  assert.equal(limited.policy, "tenant.requests_per_minute");
  assert.equal(limited.requestId, "req_1");
  const refused = errorFor(400, { code: "content_policy_violation", categories: ["weapons"] }, new Headers());
  assert.deepEqual(refused.categories, ["weapons"]);
});

test("Retry-After is read as seconds or as an HTTP date", () => {
  const now = Date.parse("2026-01-01T00:00:00Z");
  assert.equal(retryAfterSeconds(new Headers({ "retry-after": "3" }), now), 3);
  const date = new Headers({ "retry-after": "Thu, 01 Jan 2026 00:00:10 GMT" });
  assert.equal(retryAfterSeconds(date, now), 10);
  assert.equal(retryAfterSeconds(new Headers({ "retry-after": "soon" }), now), null);
  assert.equal(retryAfterSeconds(new Headers(), now), null);
});
