import { describe, expect, it } from "vitest";
import { createBrevoClient, type BrevoClientOptions } from "../../../lib/brevo/client.js";
import { ConfigError, RetryableError } from "../../../lib/errors.js";
import { BrevoServer } from "../../../infra/local/peers/brevo-server.js";

/** The Brevo send path's status meanings, rate gate and deadline, against the strict local Brevo and a scripted fetch. */
function clock() {
  let now = Date.UTC(2026, 10, 27);
  const sleeps: number[] = [];
  return {
    now: () => now,
    sleeps,
    sleep: async (ms: number) => {
      sleeps.push(ms);
      now += ms;
    },
  };
}

function client(options: Partial<BrevoClientOptions> & { baseUrl: string }, time = clock(), remainingMs = 600_000) {
  return createBrevoClient({
    addressPolicy: { allowPrivate: false, localStage: true },
    apiKey: async () => "k",
    timeoutMs: 5_000,
    retryDeps: { sleep: time.sleep, random: () => 0, remainingMs: () => remainingMs },
    retryPolicy: { baseDelayMs: 10, maxDelayMs: 10, jitterMinMs: 0, jitterMaxMs: 0, maxAttempts: 4 },
    now: time.now,
    ...options,
  });
}

const scripted = (status: number, headers: Record<string, string> = {}, seen: RequestInit[] = []) =>
  async (_url: string | URL, init?: RequestInit) => {
    seen.push(init ?? {});
    return new Response(status === 204 ? null : JSON.stringify({ code: "x", message: "m" }), { status, headers });
  };

describe("Brevo client", () => {
  it("waits x-sib-ratelimit-reset after a 429 and then succeeds", async () => {
    const time = clock();
    const brevo = new BrevoServer({ apiKey: "k", listIds: [], limit: 1, windowMs: 3000, now: time.now });
    const url = await brevo.start();
    try {
      const brevoClient = client({ baseUrl: url }, time);
      expect((await brevoClient.call("POST", "/events", { event_name: "a", identifiers: { ext_id: "u" } })).status).toBe(204);
      // remaining hit 0: the next call waits for the reset instead of walking into a 429.
      expect((await brevoClient.call("POST", "/events", { event_name: "b", identifiers: { ext_id: "u" } })).status).toBe(204);
      expect(time.sleeps).toEqual([3000]);
      expect(brevo.throttled).toBe(0);
    } finally {
      await brevo.close();
    }
  });

  it("hands the work back at once when the reset does not fit in the invocation", async () => {
    const time = clock();
    const brevo = new BrevoServer({ apiKey: "k", listIds: [], limit: 1, windowMs: 3_600_000, now: time.now });
    const url = await brevo.start();
    try {
      const brevoClient = client({ baseUrl: url }, time, 60_000);
      await brevoClient.call("POST", "/events", { event_name: "a", identifiers: { ext_id: "u" } });
      const error = await brevoClient.call("POST", "/events", { event_name: "b", identifiers: { ext_id: "u" } }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(RetryableError);
      expect(time.sleeps).toEqual([]);
      expect(brevo.calls).toHaveLength(1);
    } finally {
      await brevo.close();
    }
  });

  it("falls back to Retry-After when no x-sib-ratelimit-reset is sent", async () => {
    const time = clock();
    let calls = 0;
    const brevoClient = client(
      { baseUrl: "https://api.brevo.com/v3", fetch: async (url, init) => (calls++ === 0 ? scripted(429, { "retry-after": "4" })(url, init) : scripted(204)(url, init)) },
      time,
    );
    expect((await brevoClient.call("DELETE", "/contacts/x?identifierType=ext_id")).status).toBe(204);
    expect(time.sleeps[0]).toBe(4000);
  });

  it.each([401, 402, 403])("treats %i as a configuration error", async (status) => {
    const error = await client({ baseUrl: "https://api.brevo.com/v3", fetch: scripted(status) }).call("GET", "/contacts/x").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
  });

  it("never follows a redirect", async () => {
    const seen: RequestInit[] = [];
    const error = await client({ baseUrl: "https://api.brevo.com/v3", fetch: scripted(302, { location: "https://elsewhere.example/" }, seen) })
      .call("POST", "/contacts", {})
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect(seen).toHaveLength(1);
    expect(seen[0]?.redirect).toBe("manual");
  });

  it("retries 425 and 5xx, then gives up with a RetryableError", async () => {
    const time = clock();
    const seen: RequestInit[] = [];
    const error = await client({ baseUrl: "https://api.brevo.com/v3", fetch: scripted(425, {}, seen) }, time).call("GET", "/contacts/x").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RetryableError);
    expect(seen).toHaveLength(4);
  });

  it("returns other refusals to the caller", async () => {
    expect((await client({ baseUrl: "https://api.brevo.com/v3", fetch: scripted(404) }).call("GET", "/contacts/x")).status).toBe(404);
  });
});
