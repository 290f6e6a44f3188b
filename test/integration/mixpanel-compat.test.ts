import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { GetObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rejectedBatchSchema, type RejectedBatch } from "../../lib/queue/rejected-store.js";
import { LOCAL_MIXPANEL_CREDENTIALS, type LocalStack, startLocalStack } from "../../infra/local/stack.js";
import { eventually } from "../support/eventually.js";

/**
 * The Mixpanel-compatible endpoints' wire forms and answers (docs/vendors/mixpanel-wire.md §1–§4),
 * over HTTP through the local stack, under a path prefix, down to the local Mixpanel.
 */
const PREFIX = "/_mp/api";
const TOKEN = LOCAL_MIXPANEL_CREDENTIALS.projectToken;
const ORIGIN = "https://shop.example.com";
let stack: LocalStack;
let url: (path: string) => string;

/** Scratch folder for this file's config (and certificate), removed after. */
let dir = "";

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "relay-compat-"));
  const configFile = join(dir, "config.json");
  writeFileSync(
    configFile,
    JSON.stringify({
      event_mapping: { "Legacy Signup": "signed_up" },
      mixpanel_compat: { path_prefix: PREFIX, project_tokens: [TOKEN], cors_origins: [ORIGIN] },
    }),
  );
  stack = await startLocalStack({ configFile, visibilityTimeoutSeconds: 2, env: { INTAKE_MAX_BODY_BYTES: "300000" } });
  url = (path) => `${stack.intakeUrl}${PREFIX}${path}`;
});
afterAll(async () => {
  await stack?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});


const arrived = (name: string) => stack.sandbox?.events.filter((event) => event.event === name) ?? [];
const waitFor = (name: string, count = 1) => eventually(() => (arrived(name).length >= count ? arrived(name) : undefined));
const event = (name: string, properties: Record<string, unknown> = {}) => ({
  event: name,
  properties: { token: TOKEN, distinct_id: "wire-user", time: Date.now(), ...properties },
});
const base64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64");

async function rejectedBatches(source: string): Promise<RejectedBatch[]> {
  const listed = await stack.s3.send(new ListObjectsV2Command({ Bucket: stack.rejectedBucket, Prefix: `rejected/${source}/` }));
  const batches: RejectedBatch[] = [];
  for (const object of listed.Contents ?? []) {
    const got = await stack.s3.send(new GetObjectCommand({ Bucket: stack.rejectedBucket, Key: object.Key }));
    batches.push(rejectedBatchSchema.parse(JSON.parse(await got.Body!.transformToString())));
  }
  return batches;
}

describe("encodings", () => {
  it("GET ?data=<url-encoded base64>, with and without the trailing slash, answers 1", async () => {
    for (const path of ["/track", "/track/"]) {
      const response = await fetch(url(`${path}?ip=0&verbose=0&data=${encodeURIComponent(base64(event("Got Query", { path })))}`));
      expect(response.status).toBe(200);
      expect(await response.text()).toBe("1");
    }
    await waitFor("Got Query", 2);
  });

  it("a raw '+' in an unescaped base64 form body (the Node SDK's track_batch) still decodes", async () => {
    let value = "";
    let encoded = "";
    for (let i = 0; !encoded.includes("+"); i += 1) {
      value = `>?${"~".repeat(i % 7)}${i}`;
      encoded = base64([event("Plus Sign", { value })]);
    }
    const response = await fetch(url("/track?ip=0&verbose=0"), {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: `data=${encoded}`,
    });
    expect(await response.text()).toBe("1");
    const [got] = await waitFor("Plus Sign");
    expect(got?.properties.value).toBe(value);
  });

  it("a raw JSON form value with verbose=1 and ip=0 in the body (Python) gets the verbose answer", async () => {
    const response = await fetch(url("/track"), {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ data: JSON.stringify([event("From Python")]), verbose: "1", ip: "0" }).toString(),
    });
    expect(response.headers.get("content-type")).toMatch(/application\/json/);
    expect(await response.json()).toEqual({ status: 1, error: null });
    await waitFor("From Python");
  });

  it("a gzipped application/json array (Swift) is accepted; time in seconds becomes ms; event_mapping applies", async () => {
    const seconds = Math.floor(Date.now() / 1000) - 60;
    const response = await fetch(url("/track/?ip=1"), {
      method: "POST",
      headers: { "content-type": "application/json", "content-encoding": "gzip" },
      body: gzipSync(JSON.stringify([event("Legacy Signup", { time: seconds, mp_lib: "swift", $lib_version: "4.0.0" })])),
    });
    expect(await response.text()).toBe("1");
    const [got] = await waitFor("signed_up");
    expect(got?.properties).toMatchObject({ time: seconds * 1000, mp_lib: "swift", $lib_version: "4.0.0", ip: "127.0.0.1" });
  });

  it("a missing $insert_id is derived deterministically: the same event sent twice dedupes", async () => {
    const same = event("Sent Twice", { time: Date.now() - 5000 });
    for (let i = 0; i < 2; i += 1) await fetch(url(`/track?data=${encodeURIComponent(base64(same))}`));
    const copies = await waitFor("Sent Twice", 2);
    expect(copies[0]?.properties.$insert_id).toBe(copies[1]?.properties.$insert_id);
  });

  it("a gzip bomb gets 413, and the relay keeps serving", async () => {
    const bomb = gzipSync(Buffer.alloc(60_000_000, 0x20));
    expect(bomb.length).toBeLessThan(300_000);
    const response = await fetch(url("/import"), {
      method: "POST",
      headers: { authorization: `Bearer ${stack.intakeToken}`, "content-type": "application/x-ndjson", "content-encoding": "gzip" },
      body: bomb,
    });
    expect(response.status).toBe(413);
    expect((await fetch(`${stack.intakeUrl}/healthz`)).status).toBe(200);
  });

  it("undecodable data is a 400 with the SDK's answer shape, never a 5xx", async () => {
    const response = await fetch(url("/track?verbose=1&data=%%%not-base64"));
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ status: 0, error: expect.stringContaining("invalid_data") });
  });
});

describe("tokens and answers", () => {
  it("refuses a wrong payload token per record: the rest of the batch is queued, the refused one is stored with its reason", async () => {
    const response = await fetch(url("/track?verbose=1"), {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: `data=${encodeURIComponent(base64([event("Right Token"), { event: "Wrong Token", properties: { token: "someone-else", distinct_id: "x", time: Date.now() } }]))}`,
    });
    const answer = (await response.json()) as { status: number; error: string };
    expect(answer.status).toBe(1);
    expect(answer.error).toContain("#1 invalid_token");
    await waitFor("Right Token");
    // The rejected store is written before the answer.
    const stored = await rejectedBatches("mixpanel-track");
    expect(stored.flatMap((batch) => batch.items).some((item) => item.code === "invalid_token")).toBe(true);
    expect(arrived("Wrong Token")).toHaveLength(0);

    const allWrong = await fetch(url(`/track?data=${encodeURIComponent(base64({ event: "Wrong", properties: { token: "nope", distinct_id: "x" } }))}`));
    expect(allWrong.status).toBe(200);
    expect(await allWrong.text()).toBe("0");
  });

  it("an SDK's $identify under Simplified ID Merge is skipped, not an error: answered 1, stored as dropped", async () => {
    const identify = { event: "$identify", properties: { token: TOKEN, distinct_id: "known-1", $identified_id: "known-1", $anon_id: "anon-1", time: Date.now() } };
    const response = await fetch(url(`/track/?verbose=1&data=${encodeURIComponent(base64([identify]))}`));
    expect(await response.json()).toEqual({ status: 1, error: null });
    const items = (await rejectedBatches("mixpanel-track")).flatMap((batch) => batch.items);
    expect(items.find((item) => item.code === "identity_event_requires_original_mode")?.dropped).toBe(true);
    expect(arrived("$identify")).toHaveLength(0);
  });

  it("/engage with $token, /groups with $token: the token is not forwarded as a property", async () => {
    const engage = await fetch(url("/engage/?verbose=1"), {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: `data=${encodeURIComponent(JSON.stringify({ $token: TOKEN, $distinct_id: "wire-profile", $set: { plan: "team" } }))}`,
    });
    expect(await engage.json()).toEqual({ status: 1, error: null });
    const groups = await fetch(url(`/groups?data=${encodeURIComponent(base64({ $token: TOKEN, $group_key: "company", $group_id: "wire-co", $set: { tier: 2 } }))}`));
    expect(await groups.text()).toBe("1");
    expect(await eventually(() => stack.sandbox?.profiles.get("wire-profile"))).toEqual({ plan: "team" });
    expect(await eventually(() => stack.sandbox?.groups.get("company:wire-co"))).toEqual({ tier: 2 });
  });

  it("/import: Basic base64(<intake token>:) or Bearer; anything else is a 401", async () => {
    const body = JSON.stringify([event("Imported Basic")]);
    const basic = `Basic ${Buffer.from(`${stack.intakeToken}:`).toString("base64")}`;
    const ok = await fetch(url("/import"), { method: "POST", headers: { authorization: basic, "content-type": "application/json" }, body });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ code: 200, num_records_imported: 1, status: "OK", failed_records: [] });
    for (const authorization of [undefined, `Basic ${Buffer.from(`${TOKEN}:`).toString("base64")}`, "Bearer wrong-token-wrong-token"]) {
      const refused = await fetch(url("/import"), { method: "POST", headers: { ...(authorization ? { authorization } : {}), "content-type": "application/json" }, body });
      expect(refused.status).toBe(401);
      expect(await refused.json()).toMatchObject({ status: "error" });
    }
    await waitFor("Imported Basic");
  });

  it("/import NDJSON with strict=1: 400 with failed_records by index, the valid records are imported", async () => {
    const ndjson = [
      JSON.stringify({ event: "Strict Good", properties: { distinct_id: "s", time: Date.now() - 1000, $insert_id: "good-1" } }),
      JSON.stringify({ event: "Strict Bad", properties: { distinct_id: "s", $insert_id: "bad-1" } }),
      JSON.stringify({ event: "Strict Good", properties: { distinct_id: "s", time: Date.now() - 2000, $insert_id: "good-2" } }),
    ].join("\n");
    const response = await fetch(url("/import?strict=1"), {
      method: "POST",
      headers: { authorization: `Bearer ${stack.intakeToken}`, "content-type": "application/x-ndjson" },
      body: ndjson,
    });
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({
      code: 400,
      error: "some data points in the request failed validation",
      num_records_imported: 2,
      status: "Bad Request",
      failed_records: [{ index: 1, insert_id: "bad-1", field: "properties.time", message: "missing_time: properties.time is required" }],
    });
    await waitFor("Strict Good", 2);
  });

  it("a legacy data= form on /import (the Node SDK) gets 1, not the JSON shape", async () => {
    const response = await fetch(url("/import?ip=0&verbose=0"), {
      method: "POST",
      headers: { authorization: `Bearer ${stack.intakeToken}`, "content-type": "application/x-www-form-urlencoded" },
      body: `data=${base64([event("Imported Form", { time: Date.now() - 86_400_000 })])}`,
    });
    expect(await response.text()).toBe("1");
    await waitFor("Imported Form");
  });
});

describe("browsers", () => {
  it("echoes an allowed Origin with credentials, and answers its preflight", async () => {
    const preflight = await fetch(url("/track/"), {
      method: "OPTIONS",
      headers: { origin: ORIGIN, "access-control-request-method": "POST", "access-control-request-headers": "x-requested-by" },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get("access-control-allow-origin")).toBe(ORIGIN);
    expect(preflight.headers.get("access-control-allow-credentials")).toBe("true");
    expect(preflight.headers.get("access-control-allow-headers")).toBe("x-requested-by");
    const response = await fetch(url(`/track/?data=${encodeURIComponent(base64(event("From Browser")))}`), { headers: { origin: ORIGIN } });
    expect(response.headers.get("access-control-allow-origin")).toBe(ORIGIN);
    expect(await response.text()).toBe("1");
  });

  it("refuses an origin that is not allowed with 403 and queues nothing", async () => {
    const response = await fetch(url(`/track/?data=${encodeURIComponent(base64(event("From Elsewhere")))}`), { headers: { origin: "https://evil.example" } });
    expect(response.status).toBe(403);
    expect(response.headers.get("access-control-allow-origin")).toBeNull();
    await waitFor("From Browser");
    expect(arrived("From Elsewhere")).toHaveLength(0);
  });

  it("routes without the configured prefix are not Mixpanel routes", async () => {
    const response = await fetch(`${stack.intakeUrl}/track?data=${encodeURIComponent(base64(event("No Prefix")))}`);
    expect(response.status).toBe(404);
  });
});
