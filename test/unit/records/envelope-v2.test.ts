import { createHash, randomBytes } from "node:crypto";
import { gunzipSync, gzipSync } from "node:zlib";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { applyEventRules } from "../../../lib/mixpanel/event-rules.js";
import { ValidationError } from "../../../lib/util/errors.js";
import { canonicalJson } from "../../../lib/util/json.js";
import { serializeEnvelope } from "../../../lib/records/envelope.js";
import { MAX_RECORDS_PER_MESSAGE, gzipBody, packEnvelopesV2, parseQueuedRecords } from "../../../lib/records/envelope-v2.js";

/** Any JSON value, strings drawn from all of Unicode (lone surrogates, U+FFFE, outside the BMP). */
const jsonValue = fc.jsonValue({ maxDepth: 3, stringUnit: "binary" });

describe("envelope v2 packing", () => {
  it("packs any records into ASCII bodies under every cap, read back in order and unchanged", () => {
    fc.assert(
      fc.property(fc.array(jsonValue, { minLength: 1, maxLength: 300 }), fc.integer({ min: 2048, max: 20_000 }), fc.integer({ min: 1, max: 50 }), (values, maxMessageBytes, maxRecords) => {
        const lines = values.map((value) => JSON.stringify({ event: "E", properties: { value } }));
        const packed = packEnvelopesV2("event", "native", "corr-ü", lines, { maxMessageBytes, maxRecords });
        const kept = lines.filter((_, index) => !packed.oversizedIndexes.includes(index));
        const read = packed.bodies.flatMap((body) => {
          expect(body.length).toBeLessThanOrEqual(maxMessageBytes);
          expect(/^[\x20-\x7e]*$/.test(body)).toBe(true);
          const envelope = parseQueuedRecords(body);
          expect(envelope).toMatchObject({ version: 2, kind: "event", source: "native", correlationId: "corr-ü" });
          expect(envelope.count).toBeLessThanOrEqual(maxRecords);
          expect(envelope.lines()).toHaveLength(envelope.count);
          return [...envelope.lines()];
        });
        expect(read).toEqual(kept);
      }),
      { numRuns: 60 },
    );
  });

  it("caps a message at 2000 records, one /import request", () => {
    const lines = Array.from({ length: 4500 }, (_, i) => `{"event":"E","properties":{"i":${i}}}`);
    const packed = packEnvelopesV2("event", "native", "c", lines, { maxMessageBytes: 262_144 });
    expect(packed.bodies.map((body) => parseQueuedRecords(body).count)).toEqual([MAX_RECORDS_PER_MESSAGE, MAX_RECORDS_PER_MESSAGE, 500]);
  });

  it("sets apart a record that does not fit one message even compressed, and keeps the rest", () => {
    const incompressible = JSON.stringify({ event: "E", properties: { blob: randomBytes(40_000).toString("base64") } });
    const lines = ['{"event":"a","properties":{}}', incompressible, '{"event":"b","properties":{}}'];
    const packed = packEnvelopesV2("event", "native", "c", lines, { maxMessageBytes: 32_768 });
    expect(packed.oversizedIndexes).toEqual([1]);
    expect(packed.bodies.flatMap((body) => parseQueuedRecords(body).lines())).toEqual([lines[0], lines[2]]);
  });

  it("carries the message's body as the gzip /import takes, with its uncompressed size", () => {
    const lines = ['{"event":"a","properties":{}}', '{"event":"b","properties":{}}'];
    const envelope = parseQueuedRecords(packEnvelopesV2("event", "native", "c", lines, { maxMessageBytes: 4096 }).bodies[0] ?? "");
    expect(envelope.gzipped?.rawBytes).toBe(Buffer.byteLength(`${lines.join("\n")}\n`));
    expect(envelope.gzipped?.body.subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
  });
});

describe("gzip bodies", () => {
  it("stores small bodies uncompressed in a valid gzip stream and compresses larger ones", () => {
    for (const text of ["", '{"event":"a","properties":{"note":"é😀"}}\n', `${"x".repeat(50_000)}\n`]) {
      const body = gzipBody(text);
      expect(gunzipSync(body).toString("utf8")).toBe(text);
      expect(body.readUInt32LE(body.length - 4)).toBe(Buffer.byteLength(text));
    }
    expect(gzipBody("x".repeat(50_000)).length).toBeLessThan(1000);
    expect(gzipBody("tiny").length).toBe(10 + 5 + 4 + 8);
  });
});

describe("reading queued messages", () => {
  it("reads v1 envelopes as before", () => {
    const body = serializeEnvelope({ v: 1, kind: "profile", source: "profiles", correlationId: "c1", records: ['{"$distinct_id":"u"}'], attempt: 2 });
    const envelope = parseQueuedRecords(body);
    expect(envelope).toMatchObject({ version: 1, kind: "profile", count: 1, attempt: 2 });
    expect(envelope.gzipped).toBeUndefined();
    expect(envelope.lines()).toEqual(['{"$distinct_id":"u"}']);
  });

  it("refuses a v2 body that is not the gzip stream its header describes", () => {
    const header = { v: 2, kind: "event", source: "s", correlationId: "c", count: 1, bytes: 3 };
    expect(() => parseQueuedRecords(JSON.stringify({ ...header, gzip: Buffer.from("not gzip at all, really").toString("base64") }))).toThrow(/gzip/);
    const wrongSize = gzipSync("{}\n{}\n").toString("base64");
    expect(() => parseQueuedRecords(JSON.stringify({ ...header, gzip: wrongSize }))).toThrow(/gzip/);
    const wrongCount = parseQueuedRecords(JSON.stringify({ ...header, bytes: 6, gzip: wrongSize }));
    expect(() => wrongCount.lines()).toThrow(/says 1 records, body has 2/);
  });

  it("refuses a body that is not JSON as bad input for good (ValidationError), saying why", () => {
    for (const body of ["", "{\"v\":2,", "<html>busy</html>"]) {
      expect(() => parseQueuedRecords(body)).toThrow(ValidationError);
      expect(() => parseQueuedRecords(body)).toThrow(/^queue message is not JSON: ./);
    }
  });
});

/** canonicalJson written plainly, kept as the oracle: insert ids must not change across a deploy. */
function canonicalJsonBefore(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJsonBefore).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJsonBefore(v)}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

describe("insert id derivation after the intake speed-up", () => {
  it("canonical JSON is byte-identical to before", () => {
    fc.assert(
      fc.property(jsonValue, (value) => {
        expect(canonicalJson(value)).toBe(canonicalJsonBefore(value));
      }),
      { numRuns: 500 },
    );
  });

  it("keeps the canonical order where object key order is not insertion order (index-like keys, __proto__)", () => {
    for (const value of [
      JSON.parse('{"b":1,"10":2,"9":3,"a":{"2":[{"z":1,"y":2}],"1":null}}'),
      JSON.parse('{"__proto__":{"x":1},"a":2}'),
      [undefined, { u: undefined, d: new Date(0) }, "\u2028\uD800"],
    ]) {
      expect(canonicalJson(value)).toBe(canonicalJsonBefore(value));
    }
  });

  it("an event without $insert_id gets the same id as before", () => {
    const nowMs = Date.UTC(2026, 10, 27);
    // Keys whose place in an object is not insertion order, or that the rules treat specially, beside any string.
    const key = fc.oneof(fc.string(), fc.constantFrom("0", "9", "10", "__proto__", "time", "distinct_id", "ip", "a\u2028b", "é", "Z", "_"));
    const absentId = fc.constantFrom(undefined, null, "");
    fc.assert(
      fc.property(fc.dictionary(key, jsonValue, { maxKeys: 12 }), fc.string({ minLength: 1 }), absentId, (extra, name, insertId) => {
        // Through JSON.parse, as the intake reads it: "__proto__" is an own key there.
        const properties: Record<string, unknown> = JSON.parse(JSON.stringify({ ...extra, time: nowMs / 1000 - 60, distinct_id: "user-1" }));
        delete properties.$insert_id;
        if (insertId !== undefined) properties.$insert_id = insertId;
        const result = applyEventRules({ event: name, properties }, nowMs);
        fc.pre(result.ok);
        if (!result.ok) return;
        const content: Record<string, unknown> = JSON.parse(JSON.stringify(properties));
        delete content.$insert_id;
        content.time = nowMs - 60_000;
        content.distinct_id = "user-1";
        const expected = createHash("sha256")
          .update(canonicalJsonBefore({ event: name, properties: content }))
          .digest("hex")
          .slice(0, 36);
        expect((JSON.parse(result.line) as { properties: { $insert_id: string } }).properties.$insert_id).toBe(expected);
      }),
      { numRuns: 300 },
    );
  });
});
