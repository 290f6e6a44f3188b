import type { ExportState, SyncState } from "./messages.js";
import { idHash } from "./hash.js";
import type { MemberColumns } from "./member-columns.js";
import { decodeSnapshot } from "./snapshot-codec.js";
import { type CohortStore, keys } from "./store.js";
import type { ExportLimits } from "./tick.js";

/**
 * Hash-range partitions of a cohort's id space (pure parts and the snapshot
 * reader). Partition `p` of `P` holds the members whose 32-bit id hash
 * (hash.ts idHash) falls in [p·2³²/P, (p+1)·2³²/P): a range, not a modulo,
 * so partitions 0…P−1 read one after another are in member-key order, a
 * snapshot stored in P₁ partitions can be read by a run that uses P₂ (each new
 * partition reads only the old partitions overlapping its range), and the
 * unpartitioned snapshot is simply P = 1.
 */
export const DEFAULT_PARTITION_MEMBERS = 500_000;
export const DEFAULT_INVOCATION_WORK_MS = 240_000;
const HASH_SPACE = 4_294_967_296;

export const partitionOf = (keyHash: number, parts: number): number => Math.floor((keyHash * parts) / HASH_SPACE);

export function partitionCount(members: number, limits: ExportLimits): number {
  return Math.max(1, Math.ceil(members / (limits.partitionMembers ?? DEFAULT_PARTITION_MEMBERS)));
}

/**
 * Partitions of a run: sized by the larger of the export and the last snapshot,
 * so a cohort that shrank from 10 M to 100 k is not diffed against 10 M rows in
 * one invocation.
 */
export function runPartitions(run: ExportState, state: SyncState, limits: ExportLimits): number {
  return partitionCount(Math.max(run.staged_members, state.snapshot?.count ?? 0), limits);
}

/** Whether an export in its emit phase is handled partition by partition across invocations (emit.ts). */
export function isPartitionedRun(run: ExportState, state: SyncState, limits: ExportLimits): boolean {
  return run.partitioned !== undefined || runPartitions(run, state, limits) > 1;
}

/** The snapshot objects a partitioned or single snapshot is stored in. */
export function snapshotKeys(syncId: string, snapshot: NonNullable<SyncState["snapshot"]>): string[] {
  const parts = snapshot.partitions ?? 1;
  if (parts === 1) return [keys.snapshot(syncId)];
  return Array.from({ length: parts }, (_, part) => keys.snapshotPart(syncId, part, parts));
}

/**
 * The last delivered snapshot's members in hash range `part` of `parts`, in
 * member-key order. undefined when there is no snapshot or one of its objects is
 * missing (the caller then runs a full sync, as with a lost single snapshot).
 */
export async function readPrevious(
  store: CohortStore,
  syncId: string,
  snapshot: SyncState["snapshot"],
  part: number,
  parts: number,
): Promise<MemberColumns | undefined> {
  if (!snapshot) return undefined;
  const stored = snapshot.partitions ?? 1;
  const low = Math.ceil((part * HASH_SPACE) / parts);
  const high = Math.ceil(((part + 1) * HASH_SPACE) / parts) - 1;
  const keep = parts === 1 ? undefined : (keyHash: number) => partitionOf(keyHash, parts) === part;
  const all = snapshotKeys(syncId, snapshot);
  const wanted = stored === 1 ? all : all.slice(partitionOf(low, stored), partitionOf(high, stored) + 1);
  const keyHashes: number[] = [];
  let out: MemberColumns = { ids: [], hashes: [], identities: [], keyHashes };
  // Kept identities need one list of identity properties across the objects read.
  const identityKeys = new Set<string | undefined>();
  let plain = true;
  for (const key of wanted) {
    const bytes = await store.getBytes(key);
    if (bytes === undefined) return undefined;
    const { columns } = await decodeSnapshot(bytes, keep);
    if (wanted.length === 1) return columns;
    if (columns.propHash) out = { ...out, propHash: columns.propHash };
    plain = plain && columns.plainIds === true;
    identityKeys.add(columns.identityKeys);
    for (let i = 0; i < columns.ids.length; i++) {
      out.ids.push(columns.ids[i] ?? "");
      out.hashes.push(columns.hashes[i] ?? 0);
      out.identities.push(columns.identities[i] ?? "");
      keyHashes.push(columns.keyHashes?.[i] ?? idHash(columns.ids[i] ?? ""));
    }
  }
  const [onlyKeys] = identityKeys;
  if (plain) out = { ...out, plainIds: true };
  return identityKeys.size === 1 && onlyKeys !== undefined ? { ...out, identityKeys: onlyKeys } : out;
}
