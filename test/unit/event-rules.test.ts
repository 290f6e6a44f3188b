import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  MAX_ARRAY_ITEMS,
  MAX_CONTAINER_DEPTH,
  MAX_NESTED_KEYS,
  MAX_NESTING_DEPTH,
  MAX_PROPERTIES,
  applyEventRules,
  findNonFiniteNumber,
  deriveInsertId,
  isBannedId,
  normalizeEventTime,
} from "../../lib/mixpanel/event-rules.js";

const NOW = Date.UTC(2026, 10, 22, 12, 0, 0);
const NOW_S = Math.floor(NOW / 1000);

function parsed(result: ReturnType<typeof applyEventRules>) {
  if (!result.ok) throw new Error(`expected ok, got ${result.code}: ${result.reason}`);
  return JSON.parse(result.line) as { event: string; properties: Record<string, unknown> };
}

describe("time", () => {
  it("accepts seconds, milliseconds and numeric strings and answers integer ms", () => {
    expect(normalizeEventTime(NOW_S, NOW)).toEqual({ ok: true, ms: NOW_S * 1000 });
    expect(normalizeEventTime(NOW - 5, NOW)).toEqual({ ok: true, ms: NOW - 5 });
    expect(normalizeEventTime(String(NOW_S), NOW)).toEqual({ ok: true, ms: NOW_S * 1000 });
    expect(normalizeEventTime(NOW_S + 0.75, NOW)).toEqual({ ok: true, ms: NOW_S * 1000 + 750 });
  });

  it("refuses times before 1971 and more than an hour ahead, but allows up to one hour of skew", () => {
    expect(normalizeEventTime(Date.UTC(1970, 11, 31) / 1000, NOW).ok).toBe(false);
    expect(normalizeEventTime(Date.UTC(1971, 0, 1) / 1000, NOW).ok).toBe(true);
    expect(normalizeEventTime(NOW + 60 * 60 * 1000, NOW).ok).toBe(true);
    expect(normalizeEventTime(NOW + 60 * 60 * 1000 + 1, NOW).ok).toBe(false);
    expect(normalizeEventTime("yesterday", NOW).ok).toBe(false);
    expect(normalizeEventTime(Number.NaN, NOW).ok).toBe(false);
  });
});

describe("distinct_id", () => {
  it("refuses every documented placeholder in any casing", () => {
    for (const id of ["null", "NULL", "Anonymous", "undefined", "0", "-1", "[]", "{}", "<nil>", "n/a", "00000000-0000-0000-0000-000000000000"]) {
      expect(isBannedId(id), id).toBe(true);
      const result = applyEventRules({ event: "e", properties: { distinct_id: id, time: NOW_S } }, NOW);
      expect(result.ok ? "ok" : result.code).toBe("banned_distinct_id");
    }
  });

  it("allows the empty id for user-less events, stringifies numbers, and requires the key", () => {
    expect(parsed(applyEventRules({ event: "e", properties: { distinct_id: "", time: NOW_S } }, NOW)).properties.distinct_id).toBe("");
    expect(parsed(applyEventRules({ event: "e", properties: { distinct_id: 42, time: NOW_S } }, NOW)).properties.distinct_id).toBe("42");
    const unsafe = applyEventRules({ event: "e", properties: { distinct_id: JSON.parse("12345678901234567890"), time: NOW_S } }, NOW);
    expect(unsafe.ok ? "ok" : unsafe.code).toBe("invalid_distinct_id");
    const missing = applyEventRules({ event: "e", properties: { time: NOW_S } }, NOW);
    expect(missing.ok ? "ok" : missing.code).toBe("missing_distinct_id");
  });
});

describe("$insert_id", () => {
  it("keeps a valid id and derives a deterministic one when it is missing", () => {
    const kept = parsed(applyEventRules({ event: "e", properties: { distinct_id: "u", time: NOW_S, $insert_id: "abc-123" } }, NOW));
    expect(kept.properties.$insert_id).toBe("abc-123");

    const a = parsed(applyEventRules({ event: "e", properties: { distinct_id: "u", time: NOW_S, x: 1, y: 2 } }, NOW));
    // Same content, other key order, time in ms instead of s: the same event, so the same id.
    const b = parsed(applyEventRules({ event: "e", properties: { y: 2, time: NOW_S * 1000, x: 1, distinct_id: "u" } }, NOW + 999));
    const c = parsed(applyEventRules({ event: "e", properties: { distinct_id: "u", time: NOW_S, x: 1, y: 3 } }, NOW));
    expect(a.properties.$insert_id).toMatch(/^[0-9a-f]{36}$/);
    expect(b.properties.$insert_id).toBe(a.properties.$insert_id);
    expect(c.properties.$insert_id).not.toBe(a.properties.$insert_id);
  });

  it("maps an id Mixpanel would refuse to a valid one, the same every time", () => {
    const long = "x".repeat(37);
    const first = parsed(applyEventRules({ event: "e", properties: { distinct_id: "u", time: NOW_S, $insert_id: long } }, NOW));
    const again = parsed(applyEventRules({ event: "e", properties: { distinct_id: "u", time: NOW_S, $insert_id: long } }, NOW));
    expect(first.properties.$insert_id).toMatch(/^[A-Za-z0-9-]{1,36}$/);
    expect(first.properties.$insert_id).toBe(again.properties.$insert_id);
    expect(deriveInsertId({ a: 1, b: 2 })).toBe(deriveInsertId({ b: 2, a: 1 }));
  });
});

describe("shape limits", () => {
  it(`allows ${MAX_PROPERTIES} properties and refuses one more`, () => {
    const base = { distinct_id: "u", time: NOW_S, $insert_id: "id-1", ip: "1.2.3.4" };
    const fill = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`p${i}`, i]));
    expect(applyEventRules({ event: "e", properties: { ...base, ...fill(MAX_PROPERTIES - 4) } }, NOW).ok).toBe(true);
    const over = applyEventRules({ event: "e", properties: { ...base, ...fill(MAX_PROPERTIES - 3) } }, NOW);
    expect(over.ok ? "ok" : over.code).toBe("too_many_properties");
  });

  it("refuses oversized events, long arrays and deep nesting", () => {
    const big = applyEventRules({ event: "e", properties: { distinct_id: "u", time: NOW_S, blob: "x".repeat(1_000_000) } }, NOW);
    expect(big.ok ? "ok" : big.code).toBe("event_too_large");
    const list = applyEventRules({ event: "e", properties: { distinct_id: "u", time: NOW_S, list: Array.from({ length: 255 }, (_, i) => i) } }, NOW);
    expect(list.ok ? "ok" : list.code).toBe("too_many_items");
    const deep = applyEventRules({ event: "e", properties: { distinct_id: "u", time: NOW_S, a: { b: { c: { d: { e: 1 } } } } } }, NOW);
    expect(deep.ok ? "ok" : deep.code).toBe("too_deep");
    let hostile: unknown = [];
    for (let i = 0; i < 100_000; i++) hostile = [hostile];
    const stackBomb = applyEventRules({ event: "e", properties: { distinct_id: "u", time: NOW_S, bomb: hostile } }, NOW);
    expect(stackBomb.ok ? "ok" : stackBomb.code).toBe("too_deep");
    const fine = applyEventRules({ event: "e", properties: { distinct_id: "u", time: NOW_S, a: { b: { c: { d: 1 } } } } }, NOW);
    expect(fine.ok).toBe(true);
  });

  it("sets ip to 0 unless the sender gave one, so Mixpanel does not geolocate the Lambda", () => {
    expect(parsed(applyEventRules({ event: "e", properties: { distinct_id: "u", time: NOW_S } }, NOW)).properties.ip).toBe("0");
    expect(parsed(applyEventRules({ event: "e", properties: { distinct_id: "u", time: NOW_S, ip: "8.8.8.8" } }, NOW)).properties.ip).toBe("8.8.8.8");
  });

  it("refuses an empty event name and a missing time", () => {
    const noName = applyEventRules({ event: " ", properties: { distinct_id: "u", time: NOW_S } }, NOW);
    expect(noName.ok ? "ok" : noName.code).toBe("missing_event");
    const noTime = applyEventRules({ event: "e", properties: { distinct_id: "u" } }, NOW);
    expect(noTime.ok ? "ok" : noTime.code).toBe("missing_time");
  });
});

describe("the record line built in one pass", () => {
  it("is byte-identical to the line the spread-based implementation wrote (same keys, same order)", () => {
    const nowMs = Date.UTC(2026, 10, 27);
    const jsonValue = fc.jsonValue({ maxDepth: 2, stringUnit: "binary" });
    const key = fc.oneof(fc.string(), fc.constantFrom("time", "distinct_id", "$insert_id", "ip", "0", "10", "__proto__"));
    fc.assert(
      fc.property(fc.dictionary(key, jsonValue, { maxKeys: 12 }), fc.boolean(), fc.boolean(), (extra, idFirst, defaultIpZero) => {
        // JSON.parse, like the intake: "__proto__" is an own key, index-like keys come first.
        const body = idFirst ? { distinct_id: "user-1", ...extra, time: nowMs / 1000 - 60 } : { ...extra, time: nowMs / 1000 - 60, distinct_id: "user-1" };
        const properties = JSON.parse(JSON.stringify(body)) as Record<string, unknown>;
        const result = applyEventRules({ event: "E", properties }, nowMs, { defaultIpZero });
        fc.pre(result.ok);
        if (!result.ok) return;
        const insertId = (JSON.parse(result.line) as { properties: { $insert_id: string } }).properties.$insert_id;
        const distinctId = String(properties.distinct_id);
        const before: Record<string, unknown> = { ...properties, time: nowMs - 60_000, distinct_id: distinctId, $insert_id: insertId };
        if (defaultIpZero && before.ip === undefined) before.ip = "0";
        expect(result.line).toBe(JSON.stringify({ event: "E", properties: before }));
      }),
      { numRuns: 400 },
    );
  });
});

/** The value checks as a path-building walk per rule: the oracle for the one-pass scan. */
function checkNestedBefore(value: unknown, depth: number, path: string, containers = 1): { code: string; reason: string } | undefined {
  if (value === null || typeof value !== "object") return undefined;
  if (containers > MAX_CONTAINER_DEPTH) return { code: "too_deep", reason: `${path} nests lists or objects more than ${MAX_CONTAINER_DEPTH} levels deep` };
  if (Array.isArray(value)) {
    if (value.length > MAX_ARRAY_ITEMS) return { code: "too_many_items", reason: `${path} has ${value.length} items (max ${MAX_ARRAY_ITEMS})` };
    for (const item of value) {
      const violation = checkNestedBefore(item, depth, path, containers + 1);
      if (violation) return violation;
    }
    return undefined;
  }
  if (depth > MAX_NESTING_DEPTH) return { code: "too_deep", reason: `${path} nests objects deeper than ${MAX_NESTING_DEPTH} levels` };
  const entries = Object.entries(value);
  if (entries.length > MAX_NESTED_KEYS) return { code: "too_many_keys", reason: `${path} has ${entries.length} keys (max ${MAX_NESTED_KEYS})` };
  for (const [key, inner] of entries) {
    const violation = checkNestedBefore(inner, depth + 1, `${path}.${key}`, containers + 1);
    if (violation) return violation;
  }
  return undefined;
}

function valueVerdictBefore(properties: Record<string, unknown>): { code: string; reason: string } | undefined {
  for (const [key, value] of Object.entries(properties)) {
    const violation = checkNestedBefore(value, 1, `properties.${key}`);
    if (violation) return violation;
  }
  const nonFinite = findNonFiniteNumber(properties, "properties");
  return nonFinite === undefined ? undefined : { code: "invalid_number", reason: expect.stringContaining(nonFinite) };
}

describe("property value checks in one pass", () => {
  it("refuse exactly what the path-building walks refused, with the same code and path", () => {
    const nowMs = Date.UTC(2026, 10, 27);
    const leaf = fc.oneof(fc.jsonValue({ maxDepth: 0 }), fc.constantFrom(Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, Number.NaN));
    const { value } = fc.letrec<{ value: unknown }>((tie) => ({
      value: fc.oneof(
        { depthSize: "medium", withCrossShrink: true },
        { arbitrary: leaf, weight: 3 },
        { arbitrary: fc.array(tie("value"), { maxLength: 3 }), weight: 2 },
        { arbitrary: fc.dictionary(fc.constantFrom("a", "b", "c", "0"), tie("value"), { maxKeys: 2 }), weight: 3 },
        { arbitrary: fc.constantFrom(Array.from({ length: MAX_ARRAY_ITEMS + 1 }, (_, i) => i), Object.fromEntries(Array.from({ length: MAX_NESTED_KEYS + 1 }, (_, i) => [`k${i}`, i]))), weight: 1 },
      ),
    }));
    fc.assert(
      fc.property(fc.dictionary(fc.constantFrom("x", "y", "z", "w"), value, { maxKeys: 4 }), (extra) => {
        const properties = { ...extra, time: nowMs / 1000 - 60, distinct_id: "user-1" };
        const result = applyEventRules({ event: "E", properties }, nowMs);
        const expected = valueVerdictBefore(properties);
        if (expected === undefined) expect(result.ok ? "ok" : `${result.code}: ${result.reason}`).toBe("ok");
        else expect(result).toEqual({ ok: false, ...expected });
      }),
      { numRuns: 1000 },
    );
  });
});
