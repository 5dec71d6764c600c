import assert from "node:assert/strict";
import { createHmac, randomBytes } from "node:crypto";
import { test } from "node:test";
import { verifyWebhook, WebhookVerificationError } from "../../dist/index.js";

const key = randomBytes(32);
const secret = `whsec_${key.toString("base64")}`;
const body = JSON.stringify({ type: "job.completed", data: { id: "job_1" } });
const now = 1_760_000_000;

function signed(id, timestamp, payload, keys = [key]) {
  const signatures = keys.map(
    (k) => `v1,${createHmac("sha256", k).update(`${id}.${timestamp}.${payload}`).digest("base64")}`,
  );
  return { "webhook-id": id, "webhook-timestamp": String(timestamp), "webhook-signature": signatures.join(" ") };
}

test("a valid message verifies and its payload comes back parsed", async () => {
  const payload = await verifyWebhook(body, signed("msg_1", now, body), secret, { nowS: now });
  assert.deepEqual(payload, JSON.parse(body));
  const asBytes = await verifyWebhook(new TextEncoder().encode(body), new Headers(signed("msg_1", now, body)), secret, { nowS: now });
  assert.deepEqual(asBytes, JSON.parse(body));
});

test("any one of several signatures, and any one of several secrets, is enough", async () => {
  const other = randomBytes(32);
  const headers = signed("msg_2", now, body, [other, key]);
  await verifyWebhook(body, headers, secret, { nowS: now });
  const rotating = [`whsec_${randomBytes(32).toString("base64")}`, secret];
  await verifyWebhook(body, signed("msg_2", now, body), rotating, { nowS: now });
});

test("a tampered body, id or timestamp, or another secret, is refused", async () => {
  const headers = signed("msg_3", now, body);
  const refusals = [
    () => verifyWebhook(body.replace("job_1", "job_2"), headers, secret, { nowS: now }),
    () => verifyWebhook(body, { ...headers, "webhook-id": "msg_4" }, secret, { nowS: now }),
    () => verifyWebhook(body, { ...headers, "webhook-timestamp": String(now + 1) }, secret, { nowS: now }),
    () => verifyWebhook(body, headers, `whsec_${randomBytes(32).toString("base64")}`, { nowS: now }),
    () => verifyWebhook(body, { ...headers, "webhook-signature": "v2,abc" }, secret, { nowS: now }),
    () => verifyWebhook(body, { "webhook-id": "msg_3" }, secret, { nowS: now }),
  ];
  for (const refuse of refusals) await assert.rejects(refuse(), WebhookVerificationError);
});

test("the timestamp must be within the tolerance", async () => {
  const old = signed("msg_5", now - 301, body);
  await assert.rejects(verifyWebhook(body, old, secret, { nowS: now }), /too far/);
  await verifyWebhook(body, old, secret, { nowS: now, toleranceS: 600 });
  const future = signed("msg_6", now + 301, body);
  await assert.rejects(verifyWebhook(body, future, secret, { nowS: now }), /too far/);
});
