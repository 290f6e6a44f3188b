import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { canonicalJson } from "../../../lib/util/json.js";
import { idHash, propertyHash, propertyHashOfText } from "../../../lib/cohorts/hash.js";

describe("property hash", () => {
  it("hashes properties independent of key order", () => {
    expect(canonicalJson({ b: 1, a: { d: 2, c: [1, { y: 1, x: 2 }] } })).toBe('{"a":{"c":[1,{"x":2,"y":1}],"d":2},"b":1}');
    expect(propertyHash({ a: 1, b: 2 })).toBe(propertyHash({ b: 2, a: 1 }));
    expect(propertyHash({ a: 1 })).not.toBe(propertyHash({ a: 2 }));
  });
});

describe("hash functions", () => {
  // The definitions as the snapshots in S3 were written with them, one code unit at a time.
  const fnv52 = (text: string) => {
    let a = 0x811c9dc5;
    let b = 0x01000193 ^ text.length;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      a = Math.imul(a ^ c, 0x01000193);
      b = Math.imul(b ^ c, 0x5bd1e995);
    }
    b ^= b >>> 15;
    return (a >>> 0) * 1_048_576 + ((b >>> 0) >>> 12);
  };
  const fnv32 = (id: string) => {
    let h = 0x811c9dc5;
    for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
    return h >>> 0;
  };

  it("the unrolled property and id hashes give the values stored snapshots hold", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 40 }), (text) => {
        expect(propertyHashOfText(text, "fnv-52")).toBe(fnv52(text));
        expect(idHash(text)).toBe(fnv32(text));
      }),
      { numRuns: 500 },
    );
    expect(propertyHashOfText('{"$email":"a@x","plan":"pro"}', "fnv-52")).toBe(fnv52('{"$email":"a@x","plan":"pro"}'));
    expect(idHash("d-1")).toBe(fnv32("d-1"));
  });
});
