import fc from "fast-check";
import { propertyHash } from "../../lib/cohorts/hash.js";
import { identityOf } from "../../lib/cohorts/identity.js";
import type { MemberColumns } from "../../lib/cohorts/member-columns.js";

/** What the cohort codec tests (staged lines, staged rows, snapshots, diff) draw and build members from. */

/** Ids with the characters a JSON string escapes (quote, backslash, tab, newline) and non-ASCII. */
export const memberId = fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom('a"b', "a\\b", "t\tab", "n\nl", "é", "\u2028", ""));

/** Ids a v3 snapshot entry must escape (leading quote, newline, lone and paired surrogates) and ones it stores as they are. */
export const hostileMemberId = fc.oneof(
  fc.string({ maxLength: 8 }),
  fc.string({ unit: "binary", maxLength: 6 }),
  fc.constantFrom('"quoted', 'a"b', "a\\b", "n\nl", "\r\n", "lone\ud800", "\udc00x", "emoji😀", "é", "\u2028", "", '"', "\\"),
);

/** A member's properties: up to `maxKeys` short names, JSON values two levels deep. */
export const memberProps = (maxKeys: number) => fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys });

/** The property hash field of a v2 staged line (a JSON id and JSON properties never hold a raw tab). */
export const storedHashOf = (line: string): number => Number(line.split("\t")[1]);

/** Snapshot columns of `[id, properties]` members: their property hashes, and `$email` as the identity. */
export function memberColumns(members: readonly (readonly [string, Record<string, unknown>])[]): MemberColumns {
  return {
    ids: members.map(([id]) => id),
    hashes: members.map(([, props]) => propertyHash(props)),
    identities: members.map(([, props]) => identityOf(props, ["$email"])),
  };
}

/** A v1 snapshot header (encodeSnapshot writes v3 whatever `v` says: snapshot-codec.ts). */
export const SNAPSHOT_HEADER_V1 = { v: 1 as const, sync_id: "s", cohort_id: 1, run_id: "r", created_at: "2026-01-01T00:00:00Z", count: 0 };
/** A v2 snapshot header that records its identity keys. */
export const SNAPSHOT_HEADER_WITH_IDENTITY_KEYS = { v: 2 as const, sync_id: "s", cohort_id: 1, run_id: "r", created_at: "2026-11-27T00:00:00Z", count: 0, identity_keys: ["$email"] };
