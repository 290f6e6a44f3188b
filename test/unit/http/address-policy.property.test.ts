import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { destinationUrlProblem } from "../../../lib/util/address-policy.js";

/**
 * Properties over every spelling of an address: whatever form a private IPv4
 * address is written in (dotted, one decimal integer, hex, octal, IPv4-mapped
 * IPv6), a deployed stage refuses it; a destination that opted in accepts it.
 */
const deployed = { allowPrivate: false, localStage: false };

const PRIVATE_RANGES: [base: number, bits: number][] = [
  [0x0a000000, 8], // 10/8
  [0x7f000000, 8], // 127/8
  [0xac100000, 12], // 172.16/12
  [0xc0a80000, 16], // 192.168/16
  [0x64400000, 10], // 100.64/10
  [0xa9fe0000, 16], // 169.254/16
  [0x00000000, 8], // 0/8
];

const privateAddress = fc
  .tuple(fc.constantFrom(...PRIVATE_RANGES), fc.nat())
  .map(([[base, bits], n]) => (base | (n % 2 ** (32 - bits))) >>> 0);

const octets = (value: number) => [value >>> 24, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff];

const spellings: ((value: number) => string)[] = [
  (v) => octets(v).join("."),
  (v) => String(v),
  (v) => `0x${v.toString(16)}`,
  (v) => octets(v).map((o) => `0${o.toString(8)}`).join("."),
  (v) => octets(v).map((o) => `0x${o.toString(16)}`).join("."),
  (v) => `[::ffff:${octets(v).join(".")}]`,
  (v) => `[::ffff:${(v >>> 16).toString(16)}:${(v & 0xffff).toString(16)}]`,
  (v) => `[64:ff9b::${octets(v).join(".")}]`,
];

describe("address policy properties", () => {
  it("refuses a private IPv4 address in every spelling, and accepts it when the destination opts in", () => {
    fc.assert(
      fc.property(privateAddress, fc.integer({ min: 0, max: spellings.length - 1 }), (address, which) => {
        const host = spellings[which]?.(address) ?? "";
        const url = `https://${host}/hook`;
        expect(destinationUrlProblem(url, "url", deployed)).toMatch(/non-public address/);
        expect(destinationUrlProblem(url, "url", { allowPrivate: true, localStage: false })).toBeUndefined();
      }),
      { numRuns: 500, seed: 1127 },
    );
  });

  it("never throws on arbitrary input; the answer is a string naming the key or undefined", () => {
    fc.assert(
      fc.property(fc.string(), (text) => {
        for (const value of [text, `https://${text}/`, `https://[${text}]/`]) {
          const problem = destinationUrlProblem(value, "url", deployed);
          expect(problem === undefined || problem.startsWith("url ")).toBe(true);
        }
      }),
      { numRuns: 500, seed: 1127 },
    );
  });
});
