import type { SyncState } from "./messages.js";
import { readPrevious } from "./partition-layout.js";
import type { MemberColumns } from "./member-columns.js";
import { decodeSnapshot } from "./snapshot-codec.js";
import { keys } from "./store.js";
import type { BrazeDestination, CohortSync } from "../config/cohort-syncs.js";
import { CorruptIdentityError, destinationKey, parseIdentity } from "./identity.js";
import type { ExportDeps, SyncReport } from "./tick.js";

/**
 * Braze keeps at most the workspace's array length of elements in an array attribute (25 by
 * default, up to 100: https://www.braze.com/docs/user_guide/data_and_analytics/custom_data/custom_attributes/#arrays)
 * and drops the rest without an error. Every Braze lane writes one value (its cohort) into
 * its `attribute`, so a user in more lanes of the same endpoint and attribute than
 * `array_length_max` would lose memberships silently. This step counts those users and says
 * so in the run's report and the `BrazeArrayOverflow` metric.
 *
 * Cost: nothing unless a group of lanes has more distinct values than its limit; then the
 * latest membership of each lane of the group is read once per tick (ids only are kept).
 */
export interface BrazeArrayGroup {
  readonly endpoint: string;
  readonly attribute: string;
  readonly limit: number;
  readonly lanes: readonly CohortSync[];
  /** The value each lane writes: its configured `value`, else its cohort (named by id here). */
  readonly values: ReadonlyMap<string, string>;
}

export function valueOfLane(destination: BrazeDestination, cohortId: number): string {
  return destination.value ?? `cohort:${cohortId}`;
}

/** Braze lanes grouped by the array they write (pure). Only groups that can pass their limit. */
export function brazeArrayGroups(syncs: readonly CohortSync[]): BrazeArrayGroup[] {
  const groups = new Map<string, { endpoint: string; attribute: string; limit: number; lanes: CohortSync[]; values: Map<string, string> }>();
  for (const sync of syncs) {
    const destination = sync.destination;
    if (destination.type !== "braze" || !sync.enabled) continue;
    const endpoint = destination.rest_endpoint.replace(/\/+$/, "").toLowerCase();
    const key = JSON.stringify([endpoint, destination.attribute]);
    const group = groups.get(key) ?? {
      endpoint,
      attribute: destination.attribute,
      limit: destination.array_length_max,
      lanes: [] as CohortSync[],
      values: new Map<string, string>(),
    };
    group.limit = Math.min(group.limit, destination.array_length_max);
    group.lanes.push(sync);
    group.values.set(sync.id, valueOfLane(destination, sync.cohort_id));
    groups.set(key, group);
  }
  return [...groups.values()].filter((group) => new Set(group.values.values()).size > group.limit);
}

/**
 * Users whose array would hold more than `limit` values (pure): `memberships` is, per lane,
 * the Braze keys (external ids) of its members.
 */
export function usersOverLimit(
  memberships: ReadonlyMap<string, Iterable<string>>,
  values: ReadonlyMap<string, string>,
  limit: number,
): number {
  const perUser = new Map<string, Set<string>>();
  for (const [lane, users] of memberships) {
    const value = values.get(lane);
    if (value === undefined) continue;
    for (const user of users) {
      let set = perUser.get(user);
      if (!set) perUser.set(user, (set = new Set()));
      set.add(value);
    }
  }
  let over = 0;
  for (const set of perUser.values()) if (set.size > limit) over += 1;
  return over;
}

/** The Braze keys of a lane's latest membership: the run out for delivery, else the last delivered snapshot. */
async function latestMembership(sync: CohortSync, state: SyncState, deps: ExportDeps): Promise<string[]> {
  let columns: MemberColumns | undefined;
  if (state.delivery) {
    const parts = state.delivery.partitions ?? 1;
    const objectKeys =
      parts > 1
        ? Array.from({ length: parts }, (_, part) => keys.pendingSnapshotPart(sync.id, state.delivery?.run_id ?? "", part, parts))
        : [keys.pendingSnapshot(sync.id, state.delivery.run_id)];
    const ids: string[] = [];
    const identities: string[] = [];
    for (const key of objectKeys) {
      const bytes = await deps.store.getBytes(key);
      if (!bytes) continue;
      const decoded = (await decodeSnapshot(bytes)).columns;
      ids.push(...decoded.ids);
      identities.push(...decoded.identities);
    }
    columns = { ids, hashes: [], identities };
  } else {
    columns = await readPrevious(deps.store, sync.id, state.snapshot, 0, 1);
  }
  if (!columns) return [];
  const out: string[] = [];
  for (let row = 0; row < columns.ids.length; row++) {
    out.push(userKey(sync, columns.ids[row] ?? "", columns.identities[row] ?? ""));
  }
  return out;
}

/**
 * The user a member's array value lands on. This check only counts users over the
 * limit, so a stored identity that cannot be read counts under the member's id (the
 * key Braze falls back to without an external id) instead of stopping the report.
 */
function userKey(sync: CohortSync, id: string, identity: string): string {
  try {
    return destinationKey(sync, parseIdentity(identity)) ?? id;
  } catch (error) {
    if (error instanceof CorruptIdentityError) return id;
    throw error;
  }
}

/**
 * For each group that can pass its limit and has a lane that emitted this tick: counts the
 * users over the limit and reports them on those lanes (report detail, metric, warning).
 */
export async function checkBrazeArrays(
  syncs: readonly CohortSync[],
  states: ReadonlyMap<string, SyncState>,
  report: Record<string, SyncReport>,
  deps: ExportDeps,
): Promise<void> {
  for (const group of brazeArrayGroups(syncs)) {
    const emitted = group.lanes.filter((lane) => {
      const outcome = report[lane.id]?.outcome;
      return outcome === "enqueued" || outcome === "advanced";
    });
    if (emitted.length === 0) continue;
    const memberships = new Map<string, string[]>();
    for (const lane of group.lanes) {
      const state = states.get(lane.id) ?? (await deps.store.readState(lane.id));
      memberships.set(lane.id, await latestMembership(lane, state, deps));
    }
    const over = usersOverLimit(memberships, group.values, group.limit);
    for (const lane of emitted) {
      const entry = report[lane.id];
      if (entry) entry.brazeArrayOverflow = { users: over, limit: group.limit, attribute: group.attribute };
      deps.metric("BrazeArrayOverflow", over, lane.id);
    }
    if (over > 0) {
      deps.log.warn("braze: users in more cohorts than the workspace's array length; Braze keeps only the newest values", {
        attribute: group.attribute,
        limit: group.limit,
        users: over,
        syncIds: emitted.map((lane) => lane.id),
      });
    }
  }
}
