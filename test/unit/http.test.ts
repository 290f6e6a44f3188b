import { describe, expect, it } from "vitest";
import { ConfigError, RetryableError, UpstreamRejectedError, ValidationError } from "../../lib/util/errors.js";
import { throwForStatus } from "../../lib/http/fetch.js";
import { DEFAULT_RETRY_POLICY, backoffDelayMs, parseRetryAfterMs, withRetry } from "../../lib/http/retry.js";

const result = (status: number, headers: Record<string, string> = {}) => ({ status, headers: new Headers(headers), body: `body ${status}` });
const NOW = Date.UTC(2026, 10, 22);

function classify(status: number, headers?: Record<string, string>): unknown {
  try {
    throwForStatus(result(status, headers), "vendor", NOW);
    return "ok";
  } catch (error) {
    return error;
  }
}

describe("status classification", () => {
  it("treats every 2xx as success", () => {
    for (const status of [200, 201, 202, 204]) expect(classify(status)).toBe("ok");
  });
  it("treats 408, 429 and every 5xx as retryable, carrying Retry-After", () => {
    for (const status of [408, 429, 500, 502, 503, 504]) expect(classify(status)).toBeInstanceOf(RetryableError);
    const throttled = classify(429, { "retry-after": "7" });
    expect(throttled).toBeInstanceOf(RetryableError);
    expect(throttled instanceof RetryableError && throttled.retryAfterMs).toBe(7000);
  });
  it("treats 401 and 403 as configuration errors", () => {
    for (const status of [401, 403]) expect(classify(status)).toBeInstanceOf(ConfigError);
  });
  it("treats other 4xx as permanent refusals that keep the vendor's body", () => {
    for (const status of [400, 404, 409, 422]) {
      const error = classify(status);
      expect(error).toBeInstanceOf(UpstreamRejectedError);
      expect(error instanceof UpstreamRejectedError && error.body).toBe(`body ${status}`);
    }
  });
});

describe("backoff", () => {
  const noJitter = () => 0;
  it("doubles from 2 s to a 60 s cap, plus 1–5 s of jitter", () => {
    const delays = [0, 1, 2, 3, 4, 5, 6].map((i) => backoffDelayMs(i, DEFAULT_RETRY_POLICY, noJitter));
    expect(delays).toEqual([3000, 5000, 9000, 17000, 33000, 61000, 61000]);
    expect(backoffDelayMs(0, DEFAULT_RETRY_POLICY, () => 0.999_999)).toBeCloseTo(2000 + 5000, -1);
  });
  it("honours Retry-After in seconds or as a date", () => {
    expect(parseRetryAfterMs("3", NOW)).toBe(3000);
    expect(parseRetryAfterMs(new Date(NOW + 10_000).toUTCString(), NOW)).toBe(10_000);
    expect(parseRetryAfterMs("soon", NOW)).toBeUndefined();
    expect(backoffDelayMs(0, DEFAULT_RETRY_POLICY, noJitter, 12_000)).toBe(13_000);
  });
  it("retries only retryable errors, sleeps between tries, and stops before the deadline", async () => {
    const slept: number[] = [];
    let calls = 0;
    const value = await withRetry(
      async () => {
        calls++;
        if (calls < 3) throw new RetryableError("busy");
        return "done";
      },
      { sleep: async (ms) => void slept.push(ms), random: noJitter, remainingMs: () => 1_000_000 },
    );
    expect(value).toBe("done");
    expect(slept).toEqual([3000, 5000]);

    let permanentCalls = 0;
    await expect(
      withRetry(async () => {
        permanentCalls++;
        throw new ValidationError("bad");
      }, { sleep: async () => undefined, random: noJitter, remainingMs: () => 1_000_000 }),
    ).rejects.toBeInstanceOf(ValidationError);
    expect(permanentCalls).toBe(1);

    let deadlineCalls = 0;
    await expect(
      withRetry(async () => {
        deadlineCalls++;
        throw new RetryableError("busy");
      }, { sleep: async () => undefined, random: noJitter, remainingMs: () => 4_000 }),
    ).rejects.toBeInstanceOf(RetryableError);
    // 3 s fits in the 4 s left, the next 5 s does not.
    expect(deadlineCalls).toBe(2);
  });
});
