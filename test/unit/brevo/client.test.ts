import { describe, expect, it } from "vitest";
import { createBrevoClient, type BrevoClientOptions } from "../../../lib/brevo/client.js";
import { ConfigError, RetryableError, ValidationError } from "../../../lib/util/errors.js";
import { BrevoServer } from "../../../infra/local/peers/brevo-server.js";
import { createBrevoClientFor } from "../../../lib/runtime/brevo-forwarder.js";
import { brevoConfigSchema } from "../../../lib/config/brevo.js";

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

  it.each([302, 307, 401, 402, 403])("with refusalsJudgedBy caller, hands a %i back (not followed, not a ConfigError) and still retries 5xx", async (status) => {
    const seen: RequestInit[] = [];
    const judged = client({ baseUrl: "https://api.brevo.com/v3", fetch: scripted(status, { location: "https://elsewhere.example/" }, seen), refusalsJudgedBy: "caller" });
    const result = await judged.call("POST", "/contacts/import", { jsonBody: [] });
    expect(result.status).toBe(status);
    expect(seen.map((init) => init.redirect)).toEqual(["manual"]);
    const failing = client({ baseUrl: "https://api.brevo.com/v3", fetch: scripted(503), refusalsJudgedBy: "caller" });
    await expect(failing.call("GET", "/processes/1")).rejects.toBeInstanceOf(RetryableError);
  });

  it("returns other refusals to the caller", async () => {
    expect((await client({ baseUrl: "https://api.brevo.com/v3", fetch: scripted(404) }).call("GET", "/contacts/x")).status).toBe(404);
  });

  it("makes the call through Brevo's SDK: its client headers, the {events} body of /events/batch, one try per relay attempt", async () => {
    const seen: { url: string; init: RequestInit }[] = [];
    const brevoClient = client({
      baseUrl: "https://api.brevo.com/v3",
      fetch: async (url, init) => {
        seen.push({ url: String(url), init: init ?? {} });
        return new Response(JSON.stringify({ code: "x", message: "m" }), { status: 503 });
      },
    });
    const error = await brevoClient.call("POST", "/events/batch", { events: [{ event_name: "a", identifiers: { ext_id: "u" } }] }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RetryableError);
    // maxRetries 0: the SDK would otherwise try each 5xx three times, under the relay's own four attempts.
    expect(seen).toHaveLength(4);
    const headers = new Headers(seen[0]?.init.headers);
    expect(headers.get("x-fern-sdk-name")).toBe("@getbrevo/brevo");
    expect(headers.get("api-key")).toBe("k");
    expect(seen[0]?.url).toBe("https://api.brevo.com/v3/events/batch");
    expect(JSON.parse(String(seen[0]?.init.body))).toEqual({ events: [{ event_name: "a", identifiers: { ext_id: "u" } }] });
  });

  it("sends path identifiers once encoded and keeps the caller's query (identifierType, custom company filters)", async () => {
    const urls: string[] = [];
    const brevoClient = client({ baseUrl: "https://api.brevo.com/v3", fetch: async (url) => (urls.push(String(url)), new Response(null, { status: 204 })) });
    await brevoClient.call("DELETE", `/contacts/${encodeURIComponent("a+b@example.com")}?identifierType=email_id`);
    await brevoClient.call("GET", `/companies?${new URLSearchParams({ "filters[attributes.relay_id]": "org:1", limit: "50" }).toString()}`);
    expect(urls[0]).toBe("https://api.brevo.com/v3/contacts/a%2Bb%40example.com?identifierType=email_id");
    const companies = new URL(urls[1] ?? "");
    expect(companies.pathname).toBe("/v3/companies");
    expect(companies.searchParams.get("filters[attributes.relay_id]")).toBe("org:1");
    expect(companies.searchParams.get("limit")).toBe("50");
  });

  it.each([
    ["https://[64:ff9b::a9fe:a9fe]/v3", "NAT64 form of the metadata address"],
    ["https://[::a00:1]/v3", "IPv4-compatible form of 10.0.0.1"],
    ["https://[::ffff:192.168.1.1]/v3", "IPv4-mapped form of 192.168.1.1"],
    ["https://10.1.2.3/v3", "private IPv4"],
    ["http://127.0.0.1:4010/v3", "plain http to loopback outside the local stage"],
  ])("refuses the base URL %s (%s) on a deployed stage", (baseUrl) => {
    expect(() => client({ baseUrl, addressPolicy: { allowPrivate: false, localStage: false } })).toThrow(ConfigError);
  });

  it("a DNS answer the address policy refuses is a configuration error, never sent", async () => {
    const brevoClient = client({
      baseUrl: "https://api.brevo.com/v3",
      fetch: async () => {
        throw new ValidationError("api.brevo.com resolves to 10.0.0.5, a non-public address");
      },
    });
    const error = await brevoClient.call("GET", "/contacts/x").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect(String(error)).toContain("10.0.0.5");
  });

  it("a try that takes longer than the timeout is aborted and retryable", async () => {
    const brevoClient = client({
      baseUrl: "https://api.brevo.com/v3",
      timeoutMs: 50,
      retryPolicy: { baseDelayMs: 1, maxDelayMs: 1, jitterMinMs: 0, jitterMaxMs: 0, maxAttempts: 1 },
      fetch: (_url, init) =>
        new Promise<Response>((_resolve, reject) => {
          init?.signal?.addEventListener("abort", () => reject(new Error("aborted")), { once: true });
        }),
    });
    const error = await brevoClient.call("GET", "/contacts/x").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RetryableError);
    expect(String(error)).toContain("timed out after 50 ms");
  });

  it("a 2xx answer that is not JSON reaches the caller as its text", async () => {
    const brevoClient = client({ baseUrl: "https://api.brevo.com/v3", fetch: async () => new Response("accepted", { status: 202 }) });
    expect(await brevoClient.call("POST", "/contacts/import", { jsonBody: [] })).toMatchObject({ status: 202, body: "accepted" });
  });

  it("the one factory (Brevo forwarder, gdpr:delete) allows the loopback sandbox on the local stage only", () => {
    const settings = {
      config: brevoConfigSchema.parse({ api_key_secret: "mixpanel-relay/prod/brevo" }),
      apiKey: "k",
      apiUrl: "http://127.0.0.1:3003/v3",
      secrets: { getJson: async () => ({}) } as never,
      timeoutMs: 1000,
      remainingMs: () => 60_000,
    };
    expect(() => createBrevoClientFor({ ...settings, stage: "local" })).not.toThrow();
    expect(() => createBrevoClientFor({ ...settings, stage: "prod" })).toThrow(ConfigError);
    expect(() => createBrevoClientFor({ ...settings, stage: "prod", apiUrl: "https://[::ffff:169.254.169.254]/v3" })).toThrow(ConfigError);
  });
});
