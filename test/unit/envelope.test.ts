import { describe, expect, it } from "vitest";
import { packEnvelopes, parseEnvelope } from "../../lib/records/envelope.js";

describe("queue envelopes", () => {
  it("escape every surrogate and U+FFFE/U+FFFF, count the escaped size when packing, and parse back to the same records", () => {
    const lines = Array.from({ length: 200 }, (_, i) => JSON.stringify({ event: `E${i} 🛒`, properties: { note: "😀".repeat(i), odd: "\uFFFF", lone: "\uD800" } }));
    const cap = 4_096;
    const { bodies, oversizedIndexes } = packEnvelopes("event", "native", "corr", lines, cap);
    expect(oversizedIndexes).toEqual([]);
    for (const body of bodies) {
      expect(Buffer.byteLength(body)).toBeLessThanOrEqual(cap);
      expect(body).not.toMatch(/[\uD800-\uDFFF\uFFFE\uFFFF]/);
    }
    expect(bodies.flatMap((body) => parseEnvelope(body).records)).toEqual(lines);
  });
});
