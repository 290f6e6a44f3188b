import { hash } from "node:crypto";
import { canonicalJson } from "../util/json.js";

/**
 * The two hashes a cohort member carries (docs/vendors/cohort-sync.md §2):
 *
 * - the **id hash**, FNV-1a 32 over the UTF-16 code units of the id: the first part of
 *   the member key (member-key.ts) and what picks a member's partition
 *   (partition-layout.ts);
 * - the **property hash**, over the canonical JSON of the exported properties: a
 *   member whose properties changed is sent again.
 *
 * Each has a string form and a form over ASCII bytes (the bytes of an ASCII text are
 * its UTF-16 code units, so both give the same value): staging and the staged-object
 * readers hash the bytes they write or read without decoding them to strings. The
 * loops take four code units per turn (the same values as one at a time): at a million
 * members the loop overhead, not the multiplications, was most of their cost.
 */

/**
 * How a property hash was computed. "fnv-52": two 32-bit FNV-1a lanes over the canonical
 * JSON, 52 bits (≈ 0.1 µs per member); "sha1-48": the first 48 bits of SHA-1 (≈ 2 µs),
 * which snapshots whose header names no `prop_hash` were written with. A diff compares
 * hashes of one algorithm only, so a diff run keeps its snapshot's algorithm and a full
 * run (which sends everyone anyway) moves the snapshot to fnv-52.
 */
export type PropHashAlgorithm = "sha1-48" | "fnv-52";
export const PROP_HASH_DEFAULT: PropHashAlgorithm = "fnv-52";

/** The property hash of a member under `algorithm` (see PropHashAlgorithm). */
export function propertyHash(properties: Record<string, unknown>, algorithm: PropHashAlgorithm = PROP_HASH_DEFAULT): number {
  return propertyHashOfText(canonicalJson(properties), algorithm);
}

/** The property hash of properties given as their canonical JSON text (a staged line stores that text). */
export function propertyHashOfText(text: string, algorithm: PropHashAlgorithm): number {
  if (algorithm === "sha1-48") return hash("sha1", text, "buffer").readUIntBE(0, 6);
  return propertyHashOfPieces([text], text.length);
}

/**
 * propertyHashOfText(pieces.join(""), "fnv-52") without joining them first: staging
 * hashes the canonical text from its parts, each a flat string, where hashing the
 * joined text would first flatten it. `length` is the joined length.
 */
export function propertyHashOfPieces(pieces: readonly string[], length: number): number {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ length;
  for (const piece of pieces) {
    const n = piece.length;
    let i = 0;
    for (; i + 3 < n; i += 4) {
      const c0 = piece.charCodeAt(i);
      const c1 = piece.charCodeAt(i + 1);
      const c2 = piece.charCodeAt(i + 2);
      const c3 = piece.charCodeAt(i + 3);
      a = Math.imul(Math.imul(Math.imul(Math.imul(a ^ c0, 0x01000193) ^ c1, 0x01000193) ^ c2, 0x01000193) ^ c3, 0x01000193);
      b = Math.imul(Math.imul(Math.imul(Math.imul(b ^ c0, 0x5bd1e995) ^ c1, 0x5bd1e995) ^ c2, 0x5bd1e995) ^ c3, 0x5bd1e995);
    }
    for (; i < n; i++) {
      const c = piece.charCodeAt(i);
      a = Math.imul(a ^ c, 0x01000193);
      b = Math.imul(b ^ c, 0x5bd1e995);
    }
  }
  b ^= b >>> 15;
  return (a >>> 0) * 1_048_576 + ((b >>> 0) >>> 12);
}

/** propertyHashOfPieces over the first n bytes of ASCII text (each byte is the UTF-16 code unit it stands for): staging hashes the bytes it writes. */
export function propertyHashOfAsciiBytes(bytes: Uint8Array, n: number): number {
  let a = 0x811c9dc5;
  let b = 0x01000193 ^ n;
  let i = 0;
  for (; i + 3 < n; i += 4) {
    const c0 = bytes[i] ?? 0;
    const c1 = bytes[i + 1] ?? 0;
    const c2 = bytes[i + 2] ?? 0;
    const c3 = bytes[i + 3] ?? 0;
    a = Math.imul(Math.imul(Math.imul(Math.imul(a ^ c0, 0x01000193) ^ c1, 0x01000193) ^ c2, 0x01000193) ^ c3, 0x01000193);
    b = Math.imul(Math.imul(Math.imul(Math.imul(b ^ c0, 0x5bd1e995) ^ c1, 0x5bd1e995) ^ c2, 0x5bd1e995) ^ c3, 0x5bd1e995);
  }
  for (; i < n; i++) {
    const c = bytes[i] ?? 0;
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
  }
  b ^= b >>> 15;
  return (a >>> 0) * 1_048_576 + ((b >>> 0) >>> 12);
}

/** FNV-1a over the UTF-16 code units of the id: the sort key and the partition of a member. */
export function idHash(id: string): number {
  const n = id.length;
  let h = 0x811c9dc5;
  let i = 0;
  for (; i + 3 < n; i += 4) {
    h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
    h = Math.imul(h ^ id.charCodeAt(i + 1), 0x01000193);
    h = Math.imul(h ^ id.charCodeAt(i + 2), 0x01000193);
    h = Math.imul(h ^ id.charCodeAt(i + 3), 0x01000193);
  }
  for (; i < n; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/**
 * idHash of the id stored in bytes[from, to) when it is ASCII without escapes: its bytes
 * are then its UTF-16 code units (nearly every id). -1 for any other id, to be decoded.
 */
export function idHashOfAsciiBytes(bytes: Uint8Array, from: number, to: number): number {
  let h = 0x811c9dc5;
  for (let i = from; i < to; i++) {
    const c = bytes[i] ?? 0;
    if (c >= 0x80 || c === 92) return -1;
    h = Math.imul(h ^ c, 0x01000193);
  }
  return h >>> 0;
}

/** idHash of each id. */
export function idHashes(ids: readonly string[]): Uint32Array {
  const out = new Uint32Array(ids.length);
  for (let i = 0; i < ids.length; i++) out[i] = idHash(ids[i] ?? "");
  return out;
}
