import { createHmac, timingSafeEqual } from "node:crypto";

/**
 * Webhook signatures: HMAC-SHA256 over `<timestamp>.<raw body>` with the sync's
 * signing secret, hex-encoded, sent as
 *
 *   X-Relay-Timestamp: <unix seconds>
 *   X-Relay-Signature: v1=<hex>
 *
 * A receiver recomputes the HMAC over the raw body bytes, compares in constant
 * time and rejects timestamps older than its tolerance (replay protection).
 */
export const TIMESTAMP_HEADER = "x-relay-timestamp";
export const SIGNATURE_HEADER = "x-relay-signature";
/** `<session>:<action>:<page>`: the same for every redelivery of one page (receiver-side dedup key). */
export const DELIVERY_ID_HEADER = "x-relay-delivery-id";

export function signBody(secret: string, timestampSeconds: number, body: string): string {
  const mac = createHmac("sha256", secret).update(`${timestampSeconds}.${body}`).digest("hex");
  return `v1=${mac}`;
}

export interface VerifyInput {
  readonly secret: string;
  readonly body: string;
  readonly timestamp: string | undefined;
  readonly signature: string | undefined;
  readonly nowSeconds: number;
  /** Maximum age of the timestamp, seconds (default 300). */
  readonly toleranceSeconds?: number;
}

export function verifySignature(input: VerifyInput): { ok: true } | { ok: false; reason: string } {
  if (!input.timestamp || !/^\d+$/.test(input.timestamp)) return { ok: false, reason: "missing or bad timestamp" };
  const ts = Number(input.timestamp);
  if (Math.abs(input.nowSeconds - ts) > (input.toleranceSeconds ?? 300)) return { ok: false, reason: "timestamp outside tolerance" };
  if (!input.signature?.startsWith("v1=")) return { ok: false, reason: "missing signature" };
  const expected = Buffer.from(signBody(input.secret, ts, input.body));
  const given = Buffer.from(input.signature);
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) return { ok: false, reason: "signature mismatch" };
  return { ok: true };
}
