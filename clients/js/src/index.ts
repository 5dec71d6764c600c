export { ImageGateClient, type ClientOptions } from "./client.js";
export { ImageGenerationClient } from "./legacy.js";
export { Jobs, type CallOptions, type CreateOptions, type Created } from "./jobs.js";
export type { SubscribeOptions } from "./subscribe.js";
export type { SubscribeHandlers } from "./sink.js";
export type { GenerateOptions } from "./generate.js";
export {
  progressiveImage,
  reserve,
  type JobSource,
  type ProgressiveOptions,
  type Stage,
} from "./progressive.js";
export { verifyWebhook, type VerifyOptions, type WebhookHeaders } from "./webhooks.js";
export { JobCache, requestKey, type CacheOptions } from "./cache.js";
export { Auth, jwtExpiry, type AuthOptions, type TokenResult } from "./auth.js";
export { Http, type HttpOptions, type RequestOptions, type RetryOptions } from "./http.js";
export { parseEventStream, type StreamMessage } from "./sse.js";
export * from "./errors.js";
export * from "./types.js";
export type { components, operations, paths } from "./openapi.js";
