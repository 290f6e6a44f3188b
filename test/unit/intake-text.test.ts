import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MAX_STORED_ITEM_CHARS, rejectedBatchSchema, serializeBatch } from "../../lib/queue/rejected-store.js";
import { MAX_JSON_CONTAINERS, MAX_JSON_VALUES, jsonShapeRefusal, parseJsonBounded } from "../../lib/util/json.js";
import { declaredCharset, decodeText, decodeUtf8 } from "../../lib/util/text.js";
import { browserUtf8 } from "../support/browser-utf8.js";

function depthOf(value: unknown): number {
  if (value === null || typeof value !== "object") return 0;
  const inner = Array.isArray(value) ? value : Object.values(value);
  return 1 + inner.reduce<number>((deepest, item) => Math.max(deepest, depthOf(item)), 0);
}

describe("decodeUtf8", () => {
  it("turns surrogate pairs written as two 3-byte sequences into the real character, for any text", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", maxLength: 40 }), (text) => {
        expect(decodeUtf8(browserUtf8(text))).toEqual({ ok: true, text, loneSurrogates: 0 });
        expect(decodeUtf8(Buffer.from(text))).toEqual({ ok: true, text, loneSurrogates: 0 });
      }),
      { seed: 18, numRuns: 300 },
    );
    expect(decodeUtf8(Buffer.from([0xed, 0xa0, 0xbd, 0xed, 0xba, 0x80]))).toEqual({ ok: true, text: "🚀", loneSurrogates: 0 });
  });

  it("turns a half without its partner into U+FFFD and counts it", () => {
    expect(decodeUtf8(browserUtf8("a\uD83Db"))).toEqual({ ok: true, text: "a\uFFFDb", loneSurrogates: 1 });
    expect(decodeUtf8(browserUtf8("\uDE80\uD83D"))).toEqual({ ok: true, text: "\uFFFD\uFFFD", loneSurrogates: 2 });
  });

  it("refuses other bytes that are not UTF-8, naming the offset", () => {
    expect(decodeUtf8(Buffer.from("Caf\xe9 au lait", "latin1"))).toMatchObject({ ok: false, code: "invalid_utf8", message: expect.stringContaining("byte 3") });
    expect(decodeUtf8(Buffer.from([0x61, 0xc0, 0x80]))).toMatchObject({ ok: false, message: expect.stringContaining("byte 1") });
    expect(decodeUtf8(Buffer.from([0x61, 0xf0, 0x9f, 0x9a]))).toMatchObject({ ok: false, message: expect.stringContaining("byte 1") });
  });
});

describe("decodeText", () => {
  it("reads the charset a Content-Type declares", () => {
    expect(declaredCharset('application/json; Charset="ISO-8859-1"')).toBe("iso-8859-1");
    for (const charset of ["iso-8859-1", "latin1", "windows-1252"]) {
      expect(decodeText(Buffer.from("Caf\xe9", "latin1"), charset)).toEqual({ ok: true, text: "Café", loneSurrogates: 0 });
    }
    expect(decodeText(Buffer.from([0x80]), "windows-1252")).toMatchObject({ ok: true, text: "€" });
    expect(decodeText(Buffer.from("\uFEFFh😀", "utf16le"), "utf-16")).toMatchObject({ ok: true, text: "h😀" });
    expect(decodeText(Buffer.from([0x00, 0x68]), "utf-16be")).toMatchObject({ ok: true, text: "h" });
    expect(decodeText(Buffer.from([0x00, 0xd8, 0x41]), "utf-16le")).toMatchObject({ ok: false, code: "invalid_text" });
    expect(decodeText(Buffer.from("x"), "x-klingon")).toMatchObject({ ok: false, code: "unsupported_charset" });
  });
});

describe("parseJsonBounded", () => {
  it("refuses exactly the JSON that nests deeper than the limit, strings not counted", () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 6 }), fc.integer({ min: 0, max: 6 }), (value, limit) => {
        const text = JSON.stringify(value);
        const parsed = parseJsonBounded(text, { maxDepth: limit, maxContainers: 1000, maxValues: 10_000 });
        expect(parsed.ok || !("code" in parsed) || parsed.code !== "too_deep").toBe(depthOf(value) <= limit);
      }),
      { seed: 64, numRuns: 500 },
    );
    const limits = { maxDepth: 64, maxContainers: MAX_JSON_CONTAINERS, maxValues: MAX_JSON_VALUES };
    expect(jsonShapeRefusal('["[[[\\"[["]', { ...limits, maxDepth: 1 })).toBeUndefined();
    expect(jsonShapeRefusal(`${"[".repeat(65)}${"]".repeat(65)}`, limits)).toEqual({ code: "too_deep", error: expect.stringContaining("at character 64") });
  });

  it("refuses deep nesting however the body gets past the width check: by its length, by its character counts or by the exact scan", () => {
    const deep = (levels: number, padding = "") => `${'{"__proto__":'.repeat(levels)}"${padding}"${"}".repeat(levels)}`;
    // Short enough that width cannot pass the limits: parsed, then walked.
    expect(parseJsonBounded(`${"[".repeat(100_000)}${"]".repeat(100_000)}`)).toMatchObject({ ok: false, code: "too_deep" });
    expect(parseJsonBounded(deep(65))).toMatchObject({ ok: false, code: "too_deep" });
    expect(parseJsonBounded(deep(64))).toMatchObject({ ok: true });
    // Long, with few braces and commas: bounded by counting them, then walked.
    expect(parseJsonBounded(deep(65, "x".repeat(3_000_000)))).toMatchObject({ ok: false, code: "too_deep" });
    expect(parseJsonBounded(deep(64, "x".repeat(3_000_000)))).toMatchObject({ ok: true });
    // Long, with braces and commas in a string past the counts: the exact scan.
    expect(parseJsonBounded(deep(65, "{[,".repeat(1_000_000)))).toMatchObject({ ok: false, code: "too_deep" });
    expect(parseJsonBounded(deep(64, "{[,".repeat(1_000_000)))).toMatchObject({ ok: true });
  });

  it("refuses bodies wider than the limits: millions of empty objects or numbers", () => {
    expect(parseJsonBounded(`[${Array.from({ length: MAX_JSON_CONTAINERS }, () => "{}").join(",")}]`)).toMatchObject({ ok: false, code: "too_many_values" });
    expect(parseJsonBounded(`[${"0,".repeat(MAX_JSON_VALUES)}0]`)).toMatchObject({ ok: false, code: "too_many_values" });
    expect(parseJsonBounded(`[${"0,".repeat(MAX_JSON_VALUES - 2)}0]`)).toMatchObject({ ok: true });
    expect(parseJsonBounded(JSON.stringify([{ s: ",".repeat(2 * MAX_JSON_VALUES) }]))).toMatchObject({ ok: true });
  });
});

describe("rejected store items", () => {
  it("keeps an item longer than the cap cut, with truncated: true", () => {
    const [text = "", ...more] = serializeBatch({
      v: 1,
      stage: "test",
      source: "native",
      correlationId: "corr-big",
      rejectedAt: "2026-01-01T00:00:00.000Z",
      stageOfFailure: "intake",
      items: [{ index: 0, code: "too_big", reason: "big", payload: { filler: "x".repeat(MAX_STORED_ITEM_CHARS * 2) } }],
    });
    expect(more).toEqual([]);
    const [item] = rejectedBatchSchema.parse(JSON.parse(text)).items;
    expect(item).toMatchObject({ index: 0, code: "too_big", truncated: true });
    expect(item?.payload).toBeUndefined();
    expect(item?.received?.length).toBe(MAX_STORED_ITEM_CHARS);
    expect(item?.received?.startsWith('{"filler":"xxx')).toBe(true);
  });
});
