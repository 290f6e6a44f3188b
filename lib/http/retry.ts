import { RetryableError } from "../util/errors.js";

/**
 * One retry policy for every outbound call (Mixpanel, Brevo, Braze, webhooks).
 * Defaults follow docs/vendors/mixpanel-api.md §3: back off 2 s → 60 s (doubling)
 * plus 1–5 s of jitter, honour Retry-After, and never sleep past the Lambda's deadline.
 */
export interface RetryPolicy {
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  readonly jitterMinMs: number;
  readonly jitterMaxMs: number;
  /** Total tries including the first one. */
  readonly maxAttempts: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  baseDelayMs: 2_000,
  maxDelayMs: 60_000,
  jitterMinMs: 1_000,
  jitterMaxMs: 5_000,
  maxAttempts: 5,
};

export interface RetryDeps {
  readonly sleep: (ms: number) => Promise<void>;
  /** Uniform in [0, 1). */
  readonly random: () => number;
  /**
   * Milliseconds left for starting another try: the Lambda's remaining time minus a
   * safety margin and the longest a request may take, so a retry never runs past the deadline.
   */
  readonly remainingMs: () => number;
}

export const realRetryDeps = (remainingMs: () => number = () => Number.POSITIVE_INFINITY): RetryDeps => ({
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  random: Math.random,
  remainingMs,
});

/** Delay before retry number `retryIndex` (0 = first retry). */
export function backoffDelayMs(
  retryIndex: number,
  policy: RetryPolicy,
  random: () => number,
  retryAfterMs?: number,
): number {
  const jitter = policy.jitterMinMs + random() * (policy.jitterMaxMs - policy.jitterMinMs);
  if (retryAfterMs !== undefined && retryAfterMs >= 0) {
    // The server said when: honour it in full (withRetry hands the work back to SQS when it
    // does not fit in the time left), plus jitter so parallel senders do not return in lockstep.
    return retryAfterMs + jitter;
  }
  const exponential = Math.min(policy.baseDelayMs * 2 ** retryIndex, policy.maxDelayMs);
  return exponential + jitter;
}

/**
 * Runs `operation` until it succeeds, throws a non-retryable error, runs out of
 * attempts, or the next sleep would not fit in the remaining time. In the last
 * cases the final RetryableError is rethrown so the caller can hand the work back
 * to SQS for redelivery.
 */
export async function withRetry<T>(
  operation: (attempt: number) => Promise<T>,
  deps: RetryDeps,
  policy: RetryPolicy = DEFAULT_RETRY_POLICY,
  onRetry?: (error: RetryableError, delayMs: number, attempt: number) => void,
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await operation(attempt);
    } catch (error) {
      if (!(error instanceof RetryableError)) throw error;
      if (attempt + 1 >= policy.maxAttempts) throw error;
      const delayMs = backoffDelayMs(attempt, policy, deps.random, error.retryAfterMs);
      if (delayMs >= deps.remainingMs()) throw error;
      onRetry?.(error, delayMs, attempt);
      await deps.sleep(delayMs);
    }
  }
}

/** Retry-After is either delta-seconds or an HTTP date (RFC 9110 §10.2.3). */
export function parseRetryAfterMs(header: string | null | undefined, nowMs: number): number | undefined {
  if (!header) return undefined;
  const trimmed = header.trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000);
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - nowMs);
}
