import type { PropHashAlgorithm } from "./hash.js";

/**
 * A set of cohort members in column form (docs/vendors/cohort-sync.md §2): per member
 * its id, its property hash (hash.ts; a property change sends the member again) and its
 * identity (identity.ts; what a later removal needs). Columns rather than one object per
 * member: a run holds millions of members, and three arrays cost a fraction of the
 * memory and allocation of as many objects.
 */
export interface MemberColumns {
  readonly ids: string[];
  /** 52-bit (fnv-52) or 48-bit (sha1-48) property hash per member. */
  readonly hashes: number[];
  /** JSON of the identity properties ("" = none). */
  readonly identities: string[];
  /**
   * Decoded v1/v2 snapshots only: each row's line as stored. An unchanged member's
   * line is written to the next snapshot as it is (encodeSnapshotV2 `reuse`).
   */
  readonly lines?: string[];
  /** idHash of each id, where the reader had it: decoded snapshots (while checking the order), staged rows (read from their bytes). */
  readonly keyHashes?: number[];
  /** Decoded v3 snapshots only: every id was stored as it is (snapshot-v3.ts), so it can be written again unchecked. */
  readonly plainIds?: boolean;
  /** Decoded snapshots only: the property hash its rows were written with. */
  readonly propHash?: PropHashAlgorithm;
  /**
   * Decoded snapshots only: the identity properties its identities were picked with
   * (JSON of the list), when the header records them. With the same list, a member
   * whose property hash is unchanged has the same identity, so the diff keeps it
   * instead of parsing the member's properties again.
   */
  readonly identityKeys?: string;
}

export function emptyColumns(): MemberColumns {
  return { ids: [], hashes: [], identities: [] };
}
