import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { LOCAL_MIXPANEL_CREDENTIALS, type LocalStack, startLocalStack } from "../../infra/local/stack.js";
import { eventually } from "../support/eventually.js";

/**
 * Bytes that are not plain UTF-8, through the real handler and queue to the strict local
 * Mixpanel: mixpanel-browser's surrogate halves (each written as its own 3-byte sequence) on
 * every Mixpanel-compatible form, charsets a sender declares, and undeclared bytes that are not
 * UTF-8 refused whole with their offset rather than replaced.
 */
let stack: LocalStack;
let dir = "";
const TOKEN = LOCAL_MIXPANEL_CREDENTIALS.projectToken;
const NOW_S = () => Math.floor(Date.now() / 1000);
const ROCKET_CESU = Buffer.from([0xed, 0xa0, 0xbd, 0xed, 0xba, 0x80]);
const CLEF_CESU = Buffer.from([0xed, 0xa0, 0xb4, 0xed, 0xb4, 0x9e]);

/** A record's JSON with `marker` spliced in as raw bytes: `"e":"<marker>"`. */
function recordBytes(event: string, distinctId: string, marker: Buffer): Buffer {
  const [before, after] = JSON.stringify({ event, properties: { token: TOKEN, distinct_id: distinctId, time: NOW_S(), e: "MARK" } }).split("MARK");
  return Buffer.concat([Buffer.from(before ?? ""), marker, Buffer.from(after ?? "")]);
}
const percent = (bytes: Buffer) => [...bytes].map((byte) => `%${byte.toString(16).padStart(2, "0").toUpperCase()}`).join("");

async function send(path: string, init: { method?: string; headers?: Record<string, string>; body?: Buffer | string }) {
  const response = await fetch(`${stack.intakeUrl}${path}`, {
    method: init.method ?? "POST",
    headers: init.headers ?? {},
    ...(init.body !== undefined ? { body: typeof init.body === "string" ? init.body : new Uint8Array(init.body) } : {}),
  });
  return { status: response.status, text: await response.text() };
}
const bearer = () => ({ authorization: `Bearer ${stack.intakeToken}` });
const arrivedFor = (distinctId: string) => eventually(() => stack.sandbox?.events.find((event) => event.properties.distinct_id === distinctId));

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "relay-charsets-"));
  const configFile = join(dir, "config.json");
  writeFileSync(configFile, JSON.stringify({ mixpanel_compat: { project_tokens: [TOKEN], cors_origins: [] } }));
  stack = await startLocalStack({ configFile, visibilityTimeoutSeconds: 2 });
});
afterAll(async () => {
  await stack?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});
beforeEach(() => stack.sandbox?.reset());

describe("surrogate pairs written as two 3-byte sequences (mixpanel-browser's base64 payload)", () => {
  const forms: [string, (record: Buffer) => Parameters<typeof send>[1] & { path: string }][] = [
    ["base64 data= in a form body", (record) => ({ path: "/track/?verbose=1", headers: { "content-type": "application/x-www-form-urlencoded" }, body: `data=${encodeURIComponent(record.toString("base64"))}` })],
    ["base64 data= in the query (GET)", (record) => ({ path: `/track/?verbose=1&data=${encodeURIComponent(record.toString("base64"))}`, method: "GET" })],
    ["sendBeacon's text/plain body", (record) => ({ path: "/track/?verbose=1", headers: { "content-type": "text/plain;charset=UTF-8" }, body: `data=${encodeURIComponent(record.toString("base64"))}` })],
    ["JSON data= percent-encoded in a form body", (record) => ({ path: "/track/?verbose=1", headers: { "content-type": "application/x-www-form-urlencoded" }, body: `data=${percent(record)}` })],
    ["JSON data= percent-encoded in the query", (record) => ({ path: `/track/?verbose=1&data=${percent(record)}`, method: "GET" })],
    ["a JSON body", (record) => ({ path: "/track/?verbose=1", headers: { "content-type": "application/json" }, body: Buffer.concat([Buffer.from("["), record, Buffer.from("]")]) })],
    ["a gzip JSON body", (record) => ({ path: "/track/?verbose=1", headers: { "content-type": "application/json", "content-encoding": "gzip" }, body: gzipSync(record) })],
  ];
  for (const [name, build] of forms) {
    it(`${name}: 🚀 and 𝄞 arrive as themselves`, async () => {
      const id = `cesu-${name.replace(/\W+/g, "-")}`;
      const { path, ...init } = build(recordBytes("cesu", id, Buffer.concat([ROCKET_CESU, Buffer.from(" "), CLEF_CESU])));
      const answer = await send(path, init);
      expect(answer).toEqual({ status: 200, text: '{"status":1,"error":null}' });
      expect((await arrivedFor(id)).properties.e).toBe("🚀 𝄞");
    });
  }

  it("a half without its partner becomes U+FFFD, the rest of the text kept", async () => {
    const record = recordBytes("lone", "cesu-lone", Buffer.concat([Buffer.from("a"), ROCKET_CESU.subarray(0, 3), Buffer.from("b")]));
    const answer = await send("/track/?verbose=1", { headers: { "content-type": "application/x-www-form-urlencoded" }, body: `data=${record.toString("base64")}` });
    expect(answer.status).toBe(200);
    expect((await arrivedFor("cesu-lone")).properties.e).toBe("a\uFFFDb");
  });
});

describe("declared charsets and bytes that are not UTF-8", () => {
  const cafe = (distinctId: string) => ({ event: "Charset", properties: { distinct_id: distinctId, time: NOW_S(), label: "Café €" } });
  const braze = (id: string) => ({
    events: [{ event_type: "users.behaviors.CustomEvent", id: "b7c4f0a2-1111-4c1e-9f00-0000000c4a25", time: NOW_S(), user: { external_user_id: id }, properties: { name: "Charset", custom_properties: { label: "Café €" } } }],
  });
  const routes: [string, (id: string) => unknown, Record<string, string>, (event: { properties: Record<string, unknown> }) => unknown][] = [
    ["/v1/events", (id) => [cafe(id)], {}, (event) => event.properties.label],
    ["/v1/adobe/events", (id) => cafe(id), {}, (event) => event.properties.label],
    ["/v1/braze/currents", braze, { "braze-currents-version": "1" }, (event) => Object.entries(event.properties).find(([key]) => key.endsWith("label"))?.[1]],
  ];
  for (const [path, body, headers, labelOf] of routes) {
    it(`${path}: windows-1252 and UTF-16 decoded as declared; undeclared Latin-1 refused with its offset`, async () => {
      const text = JSON.stringify(body(`cs-1252-${path}`));
      const latin = await send(path, { headers: { ...bearer(), ...headers, "content-type": "application/json; charset=windows-1252" }, body: Buffer.from(text.replace("€", "\x80"), "latin1") });
      expect(latin.status, latin.text).toBe(202);
      expect(labelOf(await arrivedFor(`cs-1252-${path}`))).toBe("Café €");

      const utf16 = await send(path, { headers: { ...bearer(), ...headers, "content-type": "application/json; charset=utf-16" }, body: Buffer.from(`\uFEFF${JSON.stringify(body(`cs-16-${path}`))}`, "utf16le") });
      expect(utf16.status, utf16.text).toBe(202);
      expect(labelOf(await arrivedFor(`cs-16-${path}`))).toBe("Café €");

      const undeclared = Buffer.from(JSON.stringify(body(`cs-bad-${path}`)).replace("€", "EUR"), "latin1");
      const refused = await send(path, { headers: { ...bearer(), ...headers, "content-type": "application/json" }, body: undeclared });
      expect(refused.status).toBe(400);
      expect(JSON.parse(refused.text)).toMatchObject({ error: "invalid_utf8", message: expect.stringContaining(`byte ${undeclared.indexOf(0xe9)}`) });
    });
  }

  it("/track: ISO-8859-1 declared on a JSON body is decoded; undeclared, refused", async () => {
    const record = JSON.stringify({ event: "Charset", properties: { token: TOKEN, distinct_id: "cs-track", time: NOW_S(), label: "Café" } });
    const ok = await send("/track/?verbose=1", { headers: { "content-type": "application/json; charset=ISO-8859-1" }, body: Buffer.from(record, "latin1") });
    expect(ok).toEqual({ status: 200, text: '{"status":1,"error":null}' });
    expect((await arrivedFor("cs-track")).properties.label).toBe("Café");
    const refused = await send("/track/?verbose=1", { headers: { "content-type": "application/json" }, body: Buffer.from(record, "latin1") });
    expect(refused.status).toBe(400);
    expect(refused.text).toContain("invalid_utf8");
  });
});
