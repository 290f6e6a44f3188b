import { describe, expect, it } from "vitest";
import { bearerToken, tokenMatches } from "../../../lib/intake/auth.js";

describe("intake tokens", () => {
  it("accepts only a currently configured token, across rotations (digests of configured tokens are cached)", () => {
    const old = "old-token-0123456789";
    const next = "new-token-0123456789";
    expect(tokenMatches(old, [old])).toBe(true);
    expect(tokenMatches(next, [old])).toBe(false);
    // Rotation: both accepted, then the old one removed.
    expect(tokenMatches(old, [old, next])).toBe(true);
    expect(tokenMatches(next, [old, next])).toBe(true);
    expect(tokenMatches(old, [next])).toBe(false);
    expect(tokenMatches(next, [next])).toBe(true);
    expect(tokenMatches("", [next])).toBe(false);
    expect(tokenMatches(`${next}x`, [next])).toBe(false);
  });

  it("keeps answering right past the digest cache's bound", () => {
    const tokens = Array.from({ length: 200 }, (_, i) => `token-${i}-0123456789abcdef`);
    for (const token of tokens) expect(tokenMatches(token, [token])).toBe(true);
    expect(tokenMatches(tokens[0] ?? "", tokens.slice(1))).toBe(false);
    expect(tokenMatches(tokens[199] ?? "", tokens)).toBe(true);
  });

  it("reads a Bearer token with any scheme casing and surrounding spaces", () => {
    expect(bearerToken("  bEaReR   abc  ")).toBe("abc");
    expect(bearerToken("Basic abc")).toBeUndefined();
  });
});
