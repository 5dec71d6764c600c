// Standard Webhooks verification, for a Node backend receiving ImageGate's webhooks:
// webhook-id, webhook-timestamp and webhook-signature ("v1,<base64>", several separated by
// spaces while a secret rotates); HMAC-SHA256 over "id.timestamp.body" with the key inside
// each "whsec_<base64>" secret; a timestamp within the tolerance; constant-time compares.
import { WebhookVerificationError } from "./errors.js";

export type WebhookHeaders =
  | Headers
  | Record<string, string | string[] | undefined>;

export interface VerifyOptions {
  /** How far the timestamp may be from now, in seconds (default 300). */
  toleranceS?: number;
  /** Now, in Unix seconds (for tests). */
  nowS?: number;
}

const encoder = new TextEncoder();

/** The parsed payload, once its signature is valid; else throws WebhookVerificationError.
 * `payload` must be the raw body as received (a string or bytes), not parsed JSON. */
export async function verifyWebhook(
  payload: string | Uint8Array,
  headers: WebhookHeaders,
  secret: string | readonly string[],
  options: VerifyOptions = {},
): Promise<unknown> {
  const id = header(headers, "webhook-id");
  const timestamp = header(headers, "webhook-timestamp");
  const signatures = header(headers, "webhook-signature");
  checkTimestamp(timestamp, options);
  const body = typeof payload === "string" ? encoder.encode(payload) : payload;
  const signed = concat(encoder.encode(`${id}.${timestamp}.`), body);
  const given = signatures.split(" ").flatMap(versionOne);
  for (const key of (typeof secret === "string" ? [secret] : secret).map(keyOf)) {
    const expected = await hmac(key, signed);
    if (given.some((candidate) => equalInConstantTime(candidate, expected))) {
      return JSON.parse(new TextDecoder().decode(body));
    }
  }
  throw new WebhookVerificationError("No signature matches the message.");
}

function header(headers: WebhookHeaders, name: string): string {
  const raw = headers instanceof Headers ? headers.get(name) : lookup(headers, name);
  const value = Array.isArray(raw) ? raw[0] : raw;
  if (value === undefined || value === null || value === "") {
    throw new WebhookVerificationError(`The ${name} header is missing.`);
  }
  return value;
}

type HeaderValue = string | string[] | undefined;

function lookup(headers: Record<string, HeaderValue>, name: string): HeaderValue {
  const found = Object.keys(headers).find((key) => key.toLowerCase() === name);
  return found === undefined ? undefined : headers[found];
}

function checkTimestamp(timestamp: string, options: VerifyOptions): void {
  if (!/^\d+$/.test(timestamp)) throw new WebhookVerificationError("The timestamp is not a number.");
  const now = options.nowS ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - Number(timestamp)) > (options.toleranceS ?? 300)) {
    throw new WebhookVerificationError("The timestamp is too far from now.");
  }
}

function versionOne(signature: string): Uint8Array[] {
  const [version, value] = signature.split(",", 2);
  if (version !== "v1" || value === undefined) return [];
  const decoded = fromBase64(value);
  return decoded === null ? [] : [decoded];
}

function keyOf(secret: string): Uint8Array {
  const key = fromBase64(secret.startsWith("whsec_") ? secret.slice(6) : secret);
  if (key === null || key.length === 0) throw new WebhookVerificationError("The secret is not valid base64.");
  return key;
}

async function hmac(key: Uint8Array, data: Uint8Array): Promise<Uint8Array> {
  const algorithm = { name: "HMAC", hash: "SHA-256" };
  const imported = await crypto.subtle.importKey("raw", key as BufferSource, algorithm, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", imported, data as BufferSource));
}

/** Compares every byte whatever the first difference, so timing tells nothing. */
function equalInConstantTime(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= (a[i] as number) ^ (b[i] as number);
  return difference === 0;
}

function fromBase64(text: string): Uint8Array | null {
  try {
    return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  } catch {
    return null;
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const joined = new Uint8Array(a.length + b.length);
  joined.set(a);
  joined.set(b, a.length);
  return joined;
}
