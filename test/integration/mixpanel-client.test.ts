import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { gunzipSync } from "node:zlib";
import { createIngestionClient, type IngestionClientOptions } from "../../lib/mixpanel/ingestion.js";
import type { MixpanelCredentials } from "../../lib/mixpanel/credentials.js";
import { MixpanelSandbox } from "../../infra/local/peers/mixpanel-server.js";

const credentials = {
  projectId: "777",
  projectToken: "sandbox-token",
  serviceAccountUsername: "sa.relay",
  serviceAccountSecret: "sa-secret",
};
const serviceAccount: MixpanelCredentials = {
  project_id: credentials.projectId,
  project_token: credentials.projectToken,
  service_account_username: credentials.serviceAccountUsername,
  service_account_secret: credentials.serviceAccountSecret,
};
const NOW_S = Math.floor(Date.now() / 1000);

const sandbox = new MixpanelSandbox({ credentials, maxImportBytes: 1_000_000 });
const wireBodies: Buffer[] = [];
const recordingFetch: typeof fetch = async (input, init) => {
  if (init?.body instanceof Uint8Array) wireBodies.push(Buffer.from(init.body));
  return fetch(input, init);
};

function client(overrides: Partial<IngestionClientOptions> = {}) {
  const slept: number[] = [];
  const instance = createIngestionClient({
    fetch: recordingFetch,
    baseUrl: sandbox.url,
    credentials: async () => serviceAccount,
    importMaxBytes: 10_000_000,
    concurrency: 2,
    timeoutMs: 5_000,
    retryDeps: { sleep: async (ms) => void slept.push(ms), random: () => 0, remainingMs: () => 600_000 },
    nowMs: Date.now,
    ...overrides,
  });
  return { instance, slept };
}

const event = (i: number, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ event: "Test", properties: { distinct_id: `u${i}`, time: NOW_S * 1000, $insert_id: `id-${i}`, ...extra } });

beforeAll(() => sandbox.start());
afterAll(() => sandbox.stop());
afterEach(() => {
  sandbox.reset();
  wireBodies.length = 0;
});

describe("/import", () => {
  it("sends gzipped NDJSON with strict=1 and the service account's project_id", async () => {
    const { instance } = client();
    const outcomes = await instance.importEvents([event(1), event(2)]);
    expect(outcomes.map((o) => o.status)).toEqual(["imported", "imported"]);
    const [request] = sandbox.requests;
    expect(request?.headers["content-encoding"]).toBe("gzip");
    expect(request?.headers["content-type"]).toBe("application/x-ndjson");
    expect(request?.query).toMatchObject({ strict: "1", project_id: "777" });
    const [wire] = wireBodies;
    expect(wire?.subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
    expect(gunzipSync(wire ?? Buffer.alloc(0)).toString("utf8")).toBe(`${event(1)}\n${event(2)}\n`);
    expect(sandbox.events.map((e) => e.properties.$insert_id)).toEqual(["id-1", "id-2"]);
  });

  it("falls back to the project token without project_id", async () => {
    const { instance } = client({ credentials: async () => ({ project_token: credentials.projectToken }) });
    expect((await instance.importEvents([event(1)]))[0]?.status).toBe("imported");
    expect(sandbox.requests[0]?.query.project_id).toBeUndefined();
  });

  it("never sends more than 2000 events in one request", async () => {
    const { instance } = client();
    const lines = Array.from({ length: 4500 }, (_, i) => event(i));
    const outcomes = await instance.importEvents(lines);
    expect(outcomes.every((o) => o.status === "imported")).toBe(true);
    expect(sandbox.requests.map((r) => r.records).sort((a, b) => b - a)).toEqual([2000, 2000, 500]);
    expect(sandbox.events).toHaveLength(4500);
  });

  it("respects the byte cap, counted uncompressed", async () => {
    const { instance } = client({ importMaxBytes: 50_000 });
    const lines = Array.from({ length: 100 }, (_, i) => event(i, { pad: "x".repeat(1000) }));
    await instance.importEvents(lines);
    expect(sandbox.requests.length).toBeGreaterThan(2);
    for (const request of sandbox.requests) expect(request.uncompressedBytes).toBeLessThanOrEqual(50_000);
    expect(sandbox.events).toHaveLength(100);
  });

  it("halves and resends on 413 until the pieces fit", async () => {
    // The sandbox caps at 1 MB while the client believes 10 MB: only 413 can teach it.
    const { instance } = client();
    const lines = Array.from({ length: 40 }, (_, i) => event(i, { pad: "y".repeat(60_000) }));
    const outcomes = await instance.importEvents(lines);
    expect(outcomes.every((o) => o.status === "imported")).toBe(true);
    expect(sandbox.requests.filter((r) => r.status === 413).length).toBeGreaterThan(0);
    expect(sandbox.events).toHaveLength(40);
    expect(new Set(sandbox.events.map((e) => e.properties.$insert_id)).size).toBe(40);
  });

  it("on 400 rejects only the failed_records and does not resend the rest", async () => {
    const { instance } = client();
    const bad = JSON.stringify({ event: "Test", properties: { distinct_id: "u9", time: 5, $insert_id: "id-bad" } });
    const outcomes = await instance.importEvents([event(1), bad, event(3)]);
    expect(outcomes[0]).toEqual({ status: "imported" });
    expect(outcomes[1]?.status).toBe("rejected");
    expect(outcomes[1]?.status === "rejected" && outcomes[1].reason).toContain("properties.time");
    expect(outcomes[2]).toEqual({ status: "imported" });
    expect(sandbox.requests).toHaveLength(1);
    expect(sandbox.events.map((e) => e.properties.$insert_id)).toEqual(["id-1", "id-3"]);
  });

  it("backs off on 429 honouring Retry-After, then succeeds", async () => {
    const { instance, slept } = client();
    sandbox.failNext({ status: 429, headers: { "retry-after": "4" } }, { status: 503 });
    const outcomes = await instance.importEvents([event(1)]);
    expect(outcomes[0]?.status).toBe("imported");
    // Retry-After 4 s (+1 s minimum jitter), then the exponential step for the second retry.
    expect(slept).toEqual([5000, 5000]);
    expect(sandbox.requests.map((r) => r.status)).toEqual([429, 503, 200]);
  });

  it("does not hammer: real waits separate the tries", async () => {
    const { instance } = client({
      retryDeps: { sleep: (ms) => new Promise((r) => setTimeout(r, ms)), random: () => 0, remainingMs: () => 60_000 },
      retryPolicy: { baseDelayMs: 150, maxDelayMs: 1_000, jitterMinMs: 50, jitterMaxMs: 50, maxAttempts: 4 },
    });
    sandbox.failNext({ status: 429 }, { status: 429 });
    await instance.importEvents([event(1)]);
    const times = sandbox.requests.map((r) => r.at);
    expect(times).toHaveLength(3);
    expect((times[1] ?? 0) - (times[0] ?? 0)).toBeGreaterThanOrEqual(190);
    expect((times[2] ?? 0) - (times[1] ?? 0)).toBeGreaterThanOrEqual(340);
  });

  it("hands records back for redelivery when retries run out of time", async () => {
    const { instance } = client({
      retryDeps: { sleep: async () => undefined, random: () => 0, remainingMs: () => 2_500 },
    });
    sandbox.failNext({ status: 503 }, { status: 503 });
    const outcomes = await instance.importEvents([event(1), event(2)]);
    expect(outcomes.map((o) => o.status)).toEqual(["retry", "retry"]);
    expect(sandbox.requests).toHaveLength(1);
  });

  it("honours a Retry-After longer than the 60 s backoff cap", async () => {
    const { instance, slept } = client();
    sandbox.failNext({ status: 429, headers: { "retry-after": "120" } });
    expect((await instance.importEvents([event(1)]))[0]?.status).toBe("imported");
    expect(slept).toEqual([121_000]);
  });

  it("starts no request when the invocation has no time left, leaving the records to SQS", async () => {
    const { instance } = client({ retryDeps: { sleep: async () => undefined, random: () => 0, remainingMs: () => 0 } });
    const outcomes = await instance.importEvents([event(1), event(2)]);
    expect(outcomes.map((o) => o.status)).toEqual(["retry", "retry"]);
    expect(sandbox.requests).toHaveLength(0);
  });

  it("maps failed_records by insert_id when the index does not match, and keeps the chunk when nothing matches", async () => {
    const { instance } = client();
    const failure = (index: number, insertId: string) =>
      JSON.stringify({
        code: 400,
        error: "some data points in the request failed validation",
        num_records_imported: 2,
        status: "Bad Request",
        failed_records: [{ index, insert_id: insertId, field: "properties.x", message: "bad x" }],
      });
    sandbox.failNext({ path: "/import", status: 400, body: failure(0, "id-3") });
    const byInsertId = await instance.importEvents([event(1), event(2), event(3)]);
    expect(byInsertId.map((o) => o.status)).toEqual(["imported", "imported", "rejected"]);

    sandbox.failNext({ path: "/import", status: 400, body: failure(7, "id-unknown") });
    const unmatched = await instance.importEvents([event(1), event(2)]);
    expect(unmatched.map((o) => o.status)).toEqual(["rejected", "rejected"]);
    expect(unmatched[0]?.status === "rejected" && unmatched[0].reason).toContain("do not match");
  });

  it("treats 401 as a configuration error without retrying", async () => {
    const { instance, slept } = client({
      credentials: async () => ({ ...serviceAccount, service_account_secret: "wrong" }),
    });
    const outcomes = await instance.importEvents([event(1)]);
    expect(outcomes[0]?.status).toBe("config");
    expect(slept).toEqual([]);
    expect(sandbox.requests.map((r) => r.status)).toEqual([401]);
  });
});

describe("every /import status code", () => {
  const cases: [number, string][] = [
    [401, "config"],
    [403, "config"],
    [404, "config"],
    [408, "retry"],
    [429, "retry"],
    [500, "retry"],
    [502, "retry"],
    [503, "retry"],
    [504, "retry"],
  ];
  for (const [status, expected] of cases) {
    it(`${status} → ${expected}`, async () => {
      // One try only, so the scripted answer is the final word.
      const { instance } = client({ retryPolicy: { baseDelayMs: 1, maxDelayMs: 1, jitterMinMs: 0, jitterMaxMs: 0, maxAttempts: 1 } });
      sandbox.failNext({ status, path: "/import" });
      const [outcome] = await instance.importEvents([event(1)]);
      expect(outcome?.status).toBe(expected);
      expect(sandbox.events).toHaveLength(0);
    });
  }
});

describe("/engage and /groups", () => {
  const profile = (id: string, op: Record<string, unknown>) => JSON.stringify({ $distinct_id: id, $ip: "0", ...op });

  it("adds $token, sends plain JSON with verbose=1 and applies the updates", async () => {
    const { instance } = client();
    const outcomes = await instance.updateProfiles([
      profile("u1", { $set: { plan: "pro", $email: "a@example.com" } }),
      profile("u1", { $add: { logins: 2 } }),
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(["imported", "imported"]);
    expect(sandbox.requests[0]?.headers["content-encoding"]).toBeUndefined();
    expect(sandbox.requests[0]?.query.verbose).toBe("1");
    expect(sandbox.profiles.get("u1")).toEqual({ plan: "pro", $email: "a@example.com", logins: 2 });
  });

  it("finds the bad update inside a 200 {status:0} answer by bisecting", async () => {
    const { instance } = client();
    const lines = [
      profile("u1", { $set: { a: 1 } }),
      profile("u2", { $set: { a: 2 } }),
      JSON.stringify({ $distinct_id: "", $set: { a: 3 } }),
      profile("u4", { $set: { a: 4 } }),
    ];
    const outcomes = await instance.updateProfiles(lines);
    expect(outcomes.map((o) => o.status)).toEqual(["imported", "imported", "rejected", "imported"]);
    expect(outcomes[2]?.status === "rejected" && outcomes[2].reason).toContain("$distinct_id");
    expect(sandbox.profiles.get("u4")).toEqual({ a: 4 });
  });

  it("needs the project token for $token", async () => {
    const { instance } = client({
      credentials: async () => ({ project_id: "777", service_account_username: "sa.relay", service_account_secret: "sa-secret" }),
    });
    const outcomes = await instance.updateGroups([JSON.stringify({ $group_key: "company", $group_id: "c1", $set: { n: 1 } })]);
    expect(outcomes[0]?.status).toBe("config");
  });

  it("updates groups", async () => {
    const { instance } = client();
    const outcomes = await instance.updateGroups([JSON.stringify({ $group_key: "company", $group_id: "c1", $set: { tier: "gold" } })]);
    expect(outcomes[0]?.status).toBe("imported");
    expect(sandbox.groups.get("company:c1")).toEqual({ tier: "gold" });
  });
});
