import * as z from "../util/zod.js";
import { UpstreamRejectedError } from "../util/errors.js";
import { type FetchLike, type HttpResult, throwForStatus } from "../http/fetch.js";
import type { RetryDeps, RetryPolicy } from "../http/retry.js";
import type { SecretReader } from "../secrets/secrets.js";

/** What every destination sender needs: the guarded network, the one retry policy, clock, secrets. */
/** The guarded fetches destinations are called through (createDestinationNetwork in send.ts). */
export interface DestinationNetwork {
  /** The guarded fetch for a destination's `allow_private_network` setting. */
  fetchFor(allowPrivate: boolean): FetchLike;
}

export interface SenderDeps {
  /** Guarded fetch per address policy (lib/destinations/send.ts). */
  readonly network: DestinationNetwork;
  readonly timeoutMs: number;
  readonly retryDeps: RetryDeps;
  readonly retryPolicy?: RetryPolicy;
  /** Milliseconds since epoch. */
  readonly now: () => number;
  readonly secrets: SecretReader;
  readonly warn: (message: string, extra?: Record<string, unknown>) => void;
}

export const apiKeySecretSchema = z.object({ api_key: z.string().check(z.minLength(1)) });
export const signingSecretSchema = z.object({ secret: z.string().check(z.minLength(16)) });
export const basicAuthSecretSchema = z.object({ username: z.string().check(z.minLength(1)), password: z.string() });

export const basicAuth = (username: string, password: string) =>
  `Basic ${Buffer.from(`${username}:${password}`).toString("base64")}`;

/** Small helper: string value of a profile property, or "". */
export function text(value: unknown): string {
  if (value === undefined || value === null) return "";
  if (typeof value === "string") return value;
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return JSON.stringify(value);
}

export function chunkOf<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/**
 * The status rule for every destination (docs/cohorts.md):
 * 2xx fine; 408/429/5xx transient (RetryableError); **every other 4xx, 401 and
 * 403 included, permanent** (UpstreamRejectedError with the response body). A
 * refused credential is treated like Mixpanel treats it (docs/vendors/cohort-sync.md
 * §1: 401/403 pause the sync): the page goes to the `failed/` ledger and the DLQ
 * with the body and the sync is unhealthy at once, instead of being retried by
 * SQS as a ConfigError. The next run re-sends it from the old snapshot once the
 * credentials are fixed.
 */
export function throwForDestinationStatus(result: HttpResult, what: string, nowMs: number): void {
  if (result.status === 401 || result.status === 403) {
    throw new UpstreamRejectedError(
      `${what} refused the credentials (${result.status}): ${result.body.slice(0, 500)}`,
      result.status,
      result.body,
    );
  }
  throwForStatus(result, what, nowMs);
}
