import { gzipSync } from "node:zlib";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { importEventRefusal } from "../../../infra/local/peers/mixpanel-rules.js";
import { MixpanelSandbox } from "../../../infra/local/peers/mixpanel-server.js";

/** The local Mixpanel against Mixpanel's published /import contract (docs/vendors/mixpanel-api.md §3–§4). */
const NOW = Date.UTC(2026, 10, 1);
const ok = (properties: Record<string, unknown> = {}) => ({
  event: "Signed Up",
  properties: { time: NOW - 1000, distinct_id: "u1", $insert_id: "abc-123", ...properties },
});

describe("Mixpanel's per-event rules, as the sandbox enforces them", () => {
  it.each([
    ["an event as documented", ok(), undefined],
    ["seconds instead of ms", ok({ time: Math.floor(NOW / 1000) }), undefined],
    ["user-less (distinct_id \"\")", ok({ distinct_id: "" }), undefined],
    ["time missing", { event: "e", properties: { distinct_id: "u", $insert_id: "a" } }, "properties.time"],
    ["time before 1971", ok({ time: Date.UTC(1970, 11, 31) }), "properties.time"],
    ["time 1 h + 1 s ahead", ok({ time: NOW + 3_601_000 }), "properties.time"],
    ["time just under 1 h ahead", ok({ time: NOW + 3_599_000 }), undefined],
    ["time as a string", ok({ time: String(NOW) }), "properties.time"],
    ["distinct_id missing", { event: "e", properties: { time: NOW, $insert_id: "a" } }, "properties.distinct_id"],
    ["placeholder distinct_id", ok({ distinct_id: "undefined" }), "properties.distinct_id"],
    ["placeholder distinct_id in other casing", ok({ distinct_id: "Anonymous" }), "properties.distinct_id"],
    ["distinct_id 0 as a number", ok({ distinct_id: 0 }), "properties.distinct_id"],
    ["$insert_id missing", { event: "e", properties: { time: NOW, distinct_id: "u" } }, "properties.$insert_id"],
    ["$insert_id of 37 characters", ok({ $insert_id: "a".repeat(37) }), "properties.$insert_id"],
    ["$insert_id of 36 characters", ok({ $insert_id: "a".repeat(36) }), undefined],
    ["$insert_id with an underscore", ok({ $insert_id: "a_b" }), "properties.$insert_id"],
    ["254 properties", ok(Object.fromEntries(Array.from({ length: 251 }, (_, i) => [`p${i}`, i]))), undefined],
    ["255 properties", ok(Object.fromEntries(Array.from({ length: 252 }, (_, i) => [`p${i}`, i]))), "properties"],
    ["objects 3 levels deep", ok({ a: { b: { c: { d: 1 } } } }), undefined],
    ["objects 4 levels deep", ok({ a: { b: { c: { d: { e: 1 } } } } }), "properties.a.b.c.d"],
    ["a list of 255 items", ok({ list: Array.from({ length: 255 }, (_, i) => i) }), "properties.list"],
    ["an object of 255 keys", ok({ o: Object.fromEntries(Array.from({ length: 255 }, (_, i) => [`k${i}`, i])) }), "properties.o"],
    ["an event of 1 MB", ok({ big: "x".repeat(1_000_000) }), "event"],
    ["no event name", { properties: ok().properties }, "event"],
    ["not an object", 42, "event"],
  ])("%s", (_name, candidate, field) => {
    expect(importEventRefusal(candidate, NOW)?.field).toBe(field);
  });

  it("100 000 nested lists are walked without overflowing the stack", () => {
    let deep: unknown = [];
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(importEventRefusal(ok({ deep }), NOW)?.field).toBe("event");
  });

  it("any JSON value gets an answer, never an exception (property-based)", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const answer = importEventRefusal(value, NOW);
        return answer === undefined || (typeof answer.field === "string" && typeof answer.message === "string");
      }),
      { seed: 19, numRuns: 300 },
    );
  });
});

describe("the sandbox's /import answers", () => {
  const credentials = { projectId: "7", projectToken: "tok", serviceAccountUsername: "sa", serviceAccountSecret: "secret" };
  const sandbox = new MixpanelSandbox({ credentials, nowMs: () => NOW, maxImportBytes: 50_000 });
  let url = "";
  beforeAll(async () => {
    url = await sandbox.start();
  });
  afterAll(() => sandbox.stop());

  const serviceAccount = `Basic ${Buffer.from("sa:secret").toString("base64")}`;
  const post = (query: string, body: string | Uint8Array<ArrayBuffer>, headers: Record<string, string> = {}) =>
    fetch(`${url}/import${query}`, { method: "POST", headers: { authorization: serviceAccount, "content-type": "application/json", ...headers }, body });

  it("200 with num_records_imported for a valid batch; gzip and NDJSON too", async () => {
    const events = [ok({ $insert_id: "a1" }), ok({ $insert_id: "a2" })];
    const plain = await post("?strict=1&project_id=7", JSON.stringify(events));
    expect([plain.status, await plain.json()]).toEqual([200, { code: 200, num_records_imported: 2, status: "OK" }]);
    const ndjson = events.map((e) => JSON.stringify(e)).join("\n");
    const gz = await post("?strict=1&project_id=7", new Uint8Array(gzipSync(ndjson)), { "content-encoding": "gzip", "content-type": "application/x-ndjson" });
    expect(gz.status).toBe(200);
  });

  it("400 names each failed record by index and insert_id; the valid ones were imported", async () => {
    const before = sandbox.events.length;
    const response = await post("?strict=1&project_id=7", JSON.stringify([ok({ $insert_id: "good" }), ok({ $insert_id: "bad", distinct_id: "null" })]));
    expect(response.status).toBe(400);
    const body = (await response.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ code: 400, num_records_imported: 1, status: "Bad Request" });
    expect(body.failed_records).toEqual([{ index: 1, insert_id: "bad", field: "properties.distinct_id", message: expect.stringContaining("placeholder") as unknown }]);
    expect(sandbox.events.length).toBe(before + 1);
  });

  it("401 without credentials or without project_id for a service account; strict=1 is required", async () => {
    expect((await post("?strict=1&project_id=7", "[]", { authorization: "" })).status).toBe(401);
    expect((await post("?strict=1", "[]")).status).toBe(401);
    expect((await post("?project_id=7", "[]")).status).toBe(400);
  });

  it("413 past the byte cap (uncompressed), 400 past 2000 events", async () => {
    expect((await post("?strict=1&project_id=7", JSON.stringify([ok({ pad: "x".repeat(60_000) })]))).status).toBe(413);
    const many = Array.from({ length: 2001 }, (_, i) => ({ event: "e", properties: { time: NOW, distinct_id: "u", $insert_id: `i${i}` } }));
    const big = new MixpanelSandbox({ credentials, nowMs: () => NOW });
    const bigUrl = await big.start();
    try {
      const response = await fetch(`${bigUrl}/import?strict=1&project_id=7`, { method: "POST", headers: { authorization: serviceAccount, "content-type": "application/json" }, body: JSON.stringify(many) });
      expect(response.status).toBe(400);
    } finally {
      await big.stop();
    }
  });
});
