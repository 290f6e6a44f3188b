import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { type FormFields, decodeCompatRequest, decodeDataValue, parseFormFields, queryParams } from "../../../lib/intake/mixpanel-compat/decode.js";
import { importCredential } from "../../../lib/intake/mixpanel-compat/handler.js";

const payload = [{ event: "E", properties: { s: "a>b?c~d ü 日本" } }];
const base64 = Buffer.from(JSON.stringify(payload)).toString("base64");
function fieldsOf(result: ReturnType<typeof parseFormFields>): FormFields {
  if (!result.ok) throw new Error(result.message);
  return result.fields;
}
const decode = (options: { query?: string; body?: Buffer | string; headers?: Record<string, string>; maxBodyBytes?: number }) =>
  decodeCompatRequest({
    headers: options.headers ?? {},
    query: fieldsOf(parseFormFields(options.query ?? "")),
    body: typeof options.body === "string" ? Buffer.from(options.body) : options.body,
    maxBodyBytes: options.maxBodyBytes ?? 1_000_000,
    maxDecompressedBytes: 10_000,
  });

describe("decodeDataValue", () => {
  it("reads JSON, padded and unpadded base64, and base64 whose '+' became a space in form decoding", () => {
    expect(base64).toContain("+");
    expect(decodeDataValue(JSON.stringify(payload))).toEqual({ ok: true, value: payload, loneSurrogates: 0 });
    expect(decodeDataValue(base64)).toEqual({ ok: true, value: payload, loneSurrogates: 0 });
    expect(decodeDataValue(base64.replace(/=+$/, ""))).toEqual({ ok: true, value: payload, loneSurrogates: 0 });
    expect(decodeDataValue(base64.replaceAll("+", " "))).toEqual({ ok: true, value: payload, loneSurrogates: 0 });
  });

  it("refuses what is neither", () => {
    for (const value of ["", "   ", "%%%", "not base64!", "A", Buffer.from("not json").toString("base64"), "{broken"]) {
      expect(decodeDataValue(value).ok, value).toBe(false);
    }
  });
});

describe("decodeCompatRequest", () => {
  it("takes data from the query first, and reads flags from the query and a form body", () => {
    const fromQuery = decode({ query: `verbose=1&ip=1&data=${encodeURIComponent(base64)}` });
    expect(fromQuery).toMatchObject({ ok: true, style: "legacy", records: payload, flags: { verbose: true, ip: "1", strict: false } });
    const fromForm = decode({ body: `data=${encodeURIComponent(JSON.stringify(payload))}&verbose=1&ip=0`, headers: { "content-type": "text/plain;charset=UTF-8" } });
    expect(fromForm).toMatchObject({ ok: true, style: "legacy", records: payload, flags: { verbose: true, ip: "0" } });
  });

  it("reads a raw '+' from a rawQuery string (API Gateway's rawQueryString)", () => {
    const query = fieldsOf(queryParams(`data=${base64}`, {}));
    expect(decodeCompatRequest({ headers: {}, query, body: undefined, maxBodyBytes: 1000, maxDecompressedBytes: 1000 })).toMatchObject({ ok: true, records: payload });
  });

  it("reads JSON and NDJSON bodies as the modern style; one object becomes one record", () => {
    expect(decode({ body: JSON.stringify(payload[0]), headers: { "content-type": "application/json" } })).toMatchObject({ ok: true, style: "json", records: payload });
    const ndjson = `${JSON.stringify(payload[0])}\n\n${JSON.stringify(payload[0])}\n`;
    expect(decode({ body: ndjson, headers: { "content-type": "application/x-ndjson" } })).toMatchObject({ ok: true, style: "json", records: [payload[0], payload[0]] });
  });

  it("inflates gzip up to the cap: 413 beyond it, 400 for broken gzip, 415 for other encodings", () => {
    expect(decode({ body: gzipSync(JSON.stringify(payload)), headers: { "content-encoding": "gzip" } })).toMatchObject({ ok: true, records: payload });
    expect(decode({ body: gzipSync(Buffer.alloc(20_000, 0x20)), headers: { "content-encoding": "gzip" } })).toMatchObject({ ok: false, status: 413 });
    expect(decode({ body: "not gzip", headers: { "content-encoding": "gzip" } })).toMatchObject({ ok: false, status: 400, code: "invalid_gzip" });
    expect(decode({ body: "x", headers: { "content-encoding": "br" } })).toMatchObject({ ok: false, status: 415 });
  });

  it("refuses too big, too many, empty and non-object data", () => {
    expect(decode({ body: "data=xxxx", maxBodyBytes: 4 })).toMatchObject({ ok: false, status: 413 });
    expect(decode({ body: JSON.stringify(Array.from({ length: 2001 }, () => ({}))) })).toMatchObject({ ok: false, status: 413, code: "too_many_records" });
    expect(decode({})).toMatchObject({ ok: false, status: 400 });
    expect(decode({ query: "data=42" })).toMatchObject({ ok: false, status: 400, code: "invalid_utf8" });
    expect(decode({ body: "verbose=1" })).toMatchObject({ ok: false, status: 400, flags: { verbose: true } });
  });
});

describe("importCredential", () => {
  it("reads the user of Basic (the SDK's secret) or a Bearer token", () => {
    expect(importCredential(`Basic ${Buffer.from("intake-token:").toString("base64")}`)).toBe("intake-token");
    expect(importCredential("bearer  intake-token ")).toBe("intake-token");
    expect(importCredential(`Basic ${Buffer.from(":only-password").toString("base64")}`)).toBeUndefined();
    expect(importCredential("Digest abc")).toBeUndefined();
    expect(importCredential(undefined)).toBeUndefined();
  });
});
