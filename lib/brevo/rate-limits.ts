import { parseRetryAfterMs } from "../http/retry.js";

/**
 * Brevo's rate limits are per bucket (docs/vendors/brevo-connector.md §4 table): `/v3/contacts/*`,
 * `/v3/events`, and "all other endpoints" (companies, processes). Answers carry
 * `x-sib-ratelimit-limit`, `-remaining` and `-reset` (seconds); Brevo sends no Retry-After.
 */
export type BrevoBucket = "contacts" | "events" | "other";

export function bucketOf(path: string): BrevoBucket {
  if (path.startsWith("/contacts")) return "contacts";
  if (path.startsWith("/events")) return "events";
  return "other";
}

function seconds(header: string | null): number | undefined {
  if (header === null || !/^\d+(\.\d+)?$/.test(header.trim())) return undefined;
  return Math.round(Number(header) * 1000);
}

/**
 * Brevo's rate-limit state, one gate per bucket (§4): the epoch ms before which no call in that
 * bucket may be made. The one gate every Brevo caller shares (the connector's client and the
 * cohort list sender), kept per container.
 */
export type BrevoRateGates = Record<BrevoBucket, number>;
export const newBrevoRateGates = (): BrevoRateGates => ({ contacts: 0, events: 0, other: 0 });

/**
 * Reads an answer's `x-sib-ratelimit-*` headers: a 429, or `remaining` 0, closes the bucket's gate
 * for `reset` seconds (Brevo sends no Retry-After; one a proxy adds is honoured; 1 s when neither).
 * Returns the wait in ms when the answer closed the gate.
 */
export function noteRateLimit(gates: BrevoRateGates, bucket: BrevoBucket, status: number, headers: Headers, now: number): number | undefined {
  const resetMs = seconds(headers.get("x-sib-ratelimit-reset"));
  const remaining = headers.get("x-sib-ratelimit-remaining");
  if (status !== 429 && (remaining === null || remaining.trim() === "" || Number(remaining) > 0)) return undefined;
  const wait = resetMs ?? parseRetryAfterMs(headers.get("retry-after"), now) ?? 1000;
  gates[bucket] = Math.max(gates[bucket], now + wait);
  return wait;
}

