import { gunzipSync, gzipSync, constants } from "node:zlib";
import { MissingObjectError, ValidationError } from "../util/errors.js";
import { parseJsonOrThrow } from "../util/json.js";
import { type ExportState, type PageMember, type SyncState, parseMembers } from "./messages.js";
import { DEFAULT_INVOCATION_WORK_MS, isPartitionedRun, partitionOf, readPrevious, runPartitions, snapshotKeys } from "./partition-layout.js";
import { totalPages } from "./plan.js";
import { promote } from "./settle.js";
import { type DiffResult, diffStaged } from "./diff.js";
import { PROP_HASH_DEFAULT } from "./hash.js";
import { CorruptIdentityError, destinationKey, parseIdentity } from "./identity.js";
import { type MemberColumns, emptyColumns } from "./member-columns.js";
import { type PageLayout, type PartCounts, PageEmitter, pageLayout } from "./page-layout.js";
import { guardRun } from "./removal-guard.js";
import { PartitionSplitter } from "./partition-splitter.js";
import { encodeSnapshot } from "./snapshot-codec.js";
import { lineMember } from "./staged-line-reader.js";
import { StagedRows } from "./staged-rows.js";
import { type CohortStore, keys } from "./store.js";
import { type CohortSync, identityProperties } from "../config/cohort-syncs.js";
import { type ExportDeps, type SyncReport, type TickContext, iso } from "./tick.js";

/**
 * The emit step: diff the staged export against the last delivered snapshot,
 * apply the mass-removal guard over the run's totals, write the pending snapshot
 * and the delivery pages, enqueue one SQS message per page.
 *
 * A run is diffed in hash-range partitions of the id space (partition-layout.ts),
 * at most `partitionMembers` each, because a 10 M-member cohort would need ~10
 * minutes and 5 GB in one Lambda invocation. Every run goes through the same
 * steps, per partition: its staged rows, diffed against the previous snapshot's
 * same range (pending snapshot written), the guard over the totals, its pages
 * emitted, then the delivery recorded. A run of one partition is the small case:
 * its staged pages are the partition's rows as they are, its members to send and
 * remove stay in memory, and all steps run in one unit, resumed by the emitted
 * page count alone. A run of several is spread over invocations in resumable
 * units checkpointed in state.json (`run.partitioned`); an invocation starts no
 * unit after `invocationWorkMs`, and a killed one redoes at most its last unit
 * (every object key is deterministic):
 *
 *  1. spill: staged /engage pages, a chunk at a time, split into one object per
 *     partition (`parts/<p>/<chunk>`, the staged lines as they are, staged-rows.ts),
 *     so a partition is read without the rest;
 *  2. diff: per partition, the pending snapshot partition and an outbox (members
 *     to send and to remove) written, the counts recorded; then the guard;
 *  3. emit: per partition, its outbox as delivery pages numbered globally per
 *     action, so the ledger, the settle step and the destinations see one run.
 */
const SPILL_PAGES_PER_CHUNK = 200;
const GZIP_FAST = { level: constants.Z_BEST_SPEED };

/** What an invocation may still start: an emit needs `emitMarginMs` left, and a unit of a partitioned run also the work window. */
class InvocationTime {
  private units = 0;
  constructor(
    private readonly deps: ExportDeps,
    private readonly deadline: number,
  ) {}
  marginLeft(): boolean {
    return this.deps.remainingMs() >= this.deps.limits.emitMarginMs;
  }
  /** Every invocation with Lambda time left does at least one unit, so a run always progresses. */
  startUnit(): boolean {
    if (!this.marginLeft()) return false;
    if (this.units > 0 && this.deps.now() >= this.deadline) return false;
    this.units += 1;
    return true;
  }
}

export async function emitRuns(tick: TickContext, active: readonly CohortSync[]): Promise<void> {
  const { deps, states, report } = tick;
  const time = new InvocationTime(deps, tick.startedAt + (deps.limits.invocationWorkMs ?? DEFAULT_INVOCATION_WORK_MS));
  const emitting = active.filter((sync) => states.get(sync.id)?.export?.phase === "emit" && report[sync.id] !== undefined);
  // One-partition runs first: each finishes in one unit; partitioned runs take the window that is left.
  const partitioned = (sync: CohortSync) => {
    const state = states.get(sync.id);
    return state?.export !== undefined && isPartitionedRun(state.export, state, deps.limits);
  };
  for (const sync of [...emitting.filter((s) => !partitioned(s)), ...emitting.filter(partitioned)]) {
    const state = states.get(sync.id);
    const entry = report[sync.id];
    const run = state?.export;
    if (!state || !run || !entry) continue;
    if (isPartitionedRun(run, state, deps.limits)) await emitPartitioned(sync, state, run, deps, entry, time);
    else if (time.marginLeft()) await emitOnePartition(sync, state, run, deps, entry);
    else {
      entry.outcome = "fetching";
      entry.detail = "emit deferred to the next tick (time)";
    }
  }
}

/** Where a run's staged pages are: its own run, or the fan-out lane whose export it shares. */
function stagedSource(sync: CohortSync, run: ExportState): { sync: string; run: string } {
  return run.shared_from ? { sync: run.shared_from.sync, run: run.shared_from.run_id } : { sync: sync.id, run: run.run_id };
}

/**
 * Members still in the cohort whose destination key changed (a new email for
 * Brevo): the old key must be removed too, or the old contact stays on the list.
 * Returns snapshot rows (previous identities) to add to the removals.
 */
function movedRows(
  sync: CohortSync,
  current: MemberColumns,
  previous: MemberColumns,
  diff: Pick<DiffResult, "send" | "previousRow">,
  unreadable: UnreadableIdentities,
): number[] {
  if (sync.destination.type === "webhook" || previous.ids.length === 0) return [];
  const moved: number[] = [];
  for (let row = 0; row < current.ids.length; row++) {
    if (diff.send[row] !== 1) continue;
    const j = diff.previousRow[row] ?? -1;
    if (j < 0 || previous.identities[j] === current.identities[row]) continue;
    const before = unreadable.props(previous.identities[j] ?? "");
    // An unreadable old identity has no key to remove: counted, and the member is sent under its new one.
    if (before === undefined) continue;
    const beforeKey = destinationKey(sync, before);
    const afterKey = destinationKey(sync, parseIdentity(current.identities[row] ?? ""));
    if (beforeKey !== undefined && beforeKey !== "" && beforeKey !== afterKey) moved.push(j);
  }
  return moved;
}

/**
 * Stored identities of a partition that could not be read. A member who left is
 * still removed by its distinct id (the id is known, and holding the whole run for
 * one bad row would stop every other change until someone edits the snapshot), and
 * the count and reason are logged as an error and counted (`CohortIdentityUnreadable`):
 * a destination that finds members by an identity property (Brevo by email, Braze
 * by external id) cannot find those members, so an operator removes them there.
 */
class UnreadableIdentities {
  count = 0;
  reason = "";
  props(identity: string): Record<string, unknown> | undefined {
    try {
      return parseIdentity(identity);
    } catch (error) {
      if (!(error instanceof CorruptIdentityError)) throw error;
      this.count += 1;
      if (this.reason === "") this.reason = error.message;
      return undefined;
    }
  }
  report(sync: CohortSync, run: ExportState, deps: ExportDeps, part: number): void {
    if (this.count === 0) return;
    deps.metric("CohortIdentityUnreadable", this.count, sync.id);
    deps.log.error("cohort export: stored identities unreadable, those members are removed by distinct id only", {
      syncId: sync.id,
      runId: run.run_id,
      partition: part,
      members: this.count,
      reason: this.reason,
    });
  }
}

interface DiffedPartition {
  readonly counts: PartCounts & { readonly count: number };
  /** The partition's pending snapshot object (snapshot-codec.ts). */
  pendingSnapshot(): Promise<Uint8Array>;
  /** Its members to send and to remove, built once the snapshot is written (the two are not held at once). */
  members(): { send: PageMember[]; remove: PageMember[] };
}

/**
 * One partition diffed: its staged rows against the previous snapshot's rows of
 * the same range; its members to send and to remove, and its pending snapshot. Removals carry the identity kept in the snapshot (the profile is gone
 * from the export).
 */
async function diffPartition(
  sync: CohortSync,
  run: ExportState,
  deps: ExportDeps,
  rows: StagedRows,
  previous: MemberColumns,
  full: boolean,
  partition: { readonly part: number; readonly parts: number } | undefined,
): Promise<DiffedPartition> {
  const wanted = identityProperties(sync.destination);
  // Every partition of a snapshot is written with one algorithm: the previous one's on a diff run.
  const propHash = full ? PROP_HASH_DEFAULT : (previous.propHash ?? "sha1-48");
  const { current, diff } = diffStaged(rows, previous, full, propHash, wanted);
  const unreadable = new UnreadableIdentities();
  const moved = movedRows(sync, current, previous, diff, unreadable);
  const pendingSnapshot = () => {
    const header = {
      v: 2 as const,
      sync_id: sync.id,
      cohort_id: sync.cohort_id,
      run_id: run.run_id,
      created_at: iso(deps.now()),
      count: 0,
      ...(partition ? { partition: partition.part, partitions: partition.parts } : {}),
      prop_hash: propHash,
      identity_keys: wanted,
    };
    const previousRows = { ids: previous.ids, previousRow: diff.previousRow, ...(previous.plainIds ? { plainIds: true } : {}) };
    return encodeSnapshot(header, current, diff.nextSnapshotRows, previousRows);
  };
  const members = () => {
    // Only the members sent have their properties parsed.
    const send: PageMember[] = [];
    for (let row = 0; row < rows.count; row++) if (diff.send[row] === 1) send.push(lineMember(rows.ids[row] ?? "", rows.line(row)));
    const remove = [...diff.removedRows, ...moved].map(
      (j): PageMember => ({ id: previous.ids[j] ?? "", props: unreadable.props(previous.identities[j] ?? "") ?? {} }),
    );
    unreadable.report(sync, run, deps, partition?.part ?? 0);
    return { send, remove };
  };
  return {
    counts: { send: diff.sendCount, removed: diff.removedRows.length, moved: moved.length, count: diff.nextSnapshotRows.length },
    pendingSnapshot,
    members,
  };
}

/** The delivery is out: the ledger now decides (settle.ts); with nothing to deliver the snapshot advances now. */
async function finishRun(
  sync: CohortSync,
  state: SyncState,
  run: ExportState,
  deps: ExportDeps,
  entry: SyncReport,
  done: { readonly full: boolean; readonly layout: PageLayout; readonly count: number; readonly partitions?: number },
): Promise<void> {
  const { expected } = done.layout;
  const parts = done.partitions;
  state.delivery = { run_id: run.run_id, full: done.full, enqueued_at: iso(deps.now()), expected, count: done.count, ...(parts !== undefined ? { partitions: parts } : {}) };
  delete state.export;
  entry.outcome = "enqueued";
  entry.detail = `${expected.members} members, ${expected.add_members} add, ${expected.remove_members} remove pages${parts !== undefined ? ` (${parts} partitions)` : ""}`;
  deps.log.info("cohort export: pages enqueued", { syncId: sync.id, runId: run.run_id, ...(parts !== undefined ? { partitions: parts } : {}), ...expected });
  if (totalPages(expected) === 0) {
    // Nothing to deliver (Brevo/Braze with no change).
    await promote(sync, state, deps);
    entry.outcome = "advanced";
  }
  await deps.store.writeState(sync.id, state);
}

/** A run of one partition: its staged pages are its rows; diff, guard, pages and delivery in one unit. */
async function emitOnePartition(sync: CohortSync, state: SyncState, run: ExportState, deps: ExportDeps, entry: SyncReport): Promise<void> {
  const { store } = deps;
  const rows = new StagedRows();
  const source = stagedSource(sync, run);
  for (let n = 0; n < run.staged_pages; n++) await store.getStagedRows(source.sync, source.run, n, rows);
  // A partitioned snapshot read whole: its partitions in order are in member-key order.
  const stored = await readPrevious(store, sync.id, state.snapshot, 0, 1);
  const previous = stored ?? emptyColumns();
  // A full run with a lost snapshot object is still a full run; a diff run without one must become full.
  const full = run.full || stored === undefined;
  const diffed = await diffPartition(sync, run, deps, rows, previous, full, undefined);
  // The guard decided before the first page went out; a retried emit follows that decision.
  if (run.emitted_pages === 0) {
    const totals = { previous: previous.ids.length, removals: diffed.counts.removed };
    if (!(await guardRun(sync, state, deps, entry, totals))) return;
  }
  const pendingKey = keys.pendingSnapshot(sync.id, run.run_id);
  // A retried emit keeps the snapshot its first attempt wrote, unless it is gone.
  if (run.emitted_pages === 0 || !(await store.exists(pendingKey))) await store.putBytes(pendingKey, await diffed.pendingSnapshot());
  const layout = pageLayout(sync, full, [diffed.counts]);
  const { send, remove } = diffed.members();
  await new PageEmitter(sync, state, run, deps, entry, layout).emitPart(0, send, remove);
  await finishRun(sync, state, run, deps, entry, { full, layout, count: diffed.counts.count });
}

function deferred(entry: SyncReport, detail: string): void {
  entry.outcome = "fetching";
  entry.detail = `partitioned emit continues next tick (${detail})`;
}

async function putGzJson(store: CohortStore, key: string, value: unknown): Promise<void> {
  await store.putBytes(key, gzipSync(JSON.stringify(value), GZIP_FAST));
}

async function getGzJson(store: CohortStore, key: string): Promise<unknown> {
  const bytes = await store.getBytes(key);
  if (bytes === undefined) throw new MissingObjectError(key);
  const notGzippedJson = () => new ValidationError(`${key} is not gzipped JSON`);
  let text: string;
  try {
    text = gunzipSync(bytes).toString("utf8");
  } catch {
    throw notGzippedJson();
  }
  return parseJsonOrThrow(text, notGzippedJson);
}

/** A run of several partitions, unit by unit across invocations (the steps above). */
async function emitPartitioned(
  sync: CohortSync,
  state: SyncState,
  run: ExportState,
  deps: ExportDeps,
  entry: SyncReport,
  time: InvocationTime,
): Promise<void> {
  const { store } = deps;
  if (!run.partitioned) {
    // A diff run whose previous snapshot (any of its objects) is gone must become full.
    let full = run.full || !state.snapshot;
    if (!full && state.snapshot) {
      for (const key of snapshotKeys(sync.id, state.snapshot)) if (!(await store.exists(key))) full = true;
    }
    run.partitioned = { count: runPartitions(run, state, deps.limits), full, step: "spill", spilled_pages: 0, chunks: 0, parts: [], emitted_parts: 0 };
    await store.writeState(sync.id, state);
  }
  const plan = run.partitioned;
  const parts = plan.count;

  // 1. spill
  const source = stagedSource(sync, run);
  while (plan.step === "spill") {
    if (!time.startUnit()) return deferred(entry, `spilled ${plan.spilled_pages}/${run.staged_pages} staged pages`);
    const first = plan.spilled_pages;
    const last = Math.min(run.staged_pages, first + SPILL_PAGES_PER_CHUNK);
    // A member moves to its partition as its stored line's bytes: only its id is read.
    const splitter = new PartitionSplitter(parts, (keyHash) => partitionOf(keyHash, parts));
    for (let n = first; n < last; n += 10) {
      const pages = await Promise.all(
        Array.from({ length: Math.min(10, last - n) }, async (_, k) => {
          const key = keys.staged(source.sync, source.run, n + k);
          const bytes = await store.getBytes(key);
          if (!bytes) throw new MissingObjectError(`staged page ${key}`);
          return { key, bytes };
        }),
      );
      for (const { key, bytes } of pages) splitter.add(bytes, key);
    }
    await Promise.all(
      Array.from({ length: parts }, (_, part) => store.putBytes(keys.partChunk(sync.id, run.run_id, part, plan.chunks), splitter.object(part))),
    );
    plan.chunks += 1;
    plan.spilled_pages = last;
    if (last >= run.staged_pages) plan.step = "diff";
    await store.writeState(sync.id, state);
  }

  // 2. diff, partition by partition, then the guard over the totals
  while (plan.step === "diff") {
    const part = plan.parts.length;
    if (part >= parts) {
      const totals = { previous: state.snapshot?.count ?? 0, removals: plan.parts.reduce((sum, p) => sum + p.removed, 0) };
      if (!(await guardRun(sync, state, deps, entry, totals))) return;
      plan.step = "emit";
      await store.writeState(sync.id, state);
      break;
    }
    if (!time.startUnit()) return deferred(entry, `diffed ${part}/${parts} partitions`);
    const rows = new StagedRows();
    for (let c = 0; c < plan.chunks; c++) {
      const key = keys.partChunk(sync.id, run.run_id, part, c);
      const bytes = await store.getBytes(key);
      if (bytes === undefined) throw new MissingObjectError(key);
      rows.add(bytes, key);
    }
    const previous = (await readPrevious(store, sync.id, state.snapshot, part, parts)) ?? emptyColumns();
    const diffed = await diffPartition(sync, run, deps, rows, previous, plan.full, { part, parts });
    await store.putBytes(keys.pendingSnapshotPart(sync.id, run.run_id, part, parts), await diffed.pendingSnapshot());
    await putGzJson(store, keys.outbox(sync.id, run.run_id, part), diffed.members());
    plan.parts.push(diffed.counts);
    await store.writeState(sync.id, state);
  }

  // 3. emit
  const layout = pageLayout(sync, plan.full, plan.parts);
  const emitter = new PageEmitter(sync, state, run, deps, entry, layout);
  for (let part = 0; part < parts; part++) {
    if (emitter.skipIfEnqueued(part)) continue;
    if (!time.startUnit()) return deferred(entry, `emitted ${part}/${parts} partitions`);
    const raw = await getGzJson(store, keys.outbox(sync.id, run.run_id, part));
    const outbox = raw !== null && typeof raw === "object" ? raw : {};
    await emitter.emitPart(part, parseMembers(Reflect.get(outbox, "send"), `outbox ${part}`), parseMembers(Reflect.get(outbox, "remove"), `outbox ${part}`));
    plan.emitted_parts = part + 1;
    await store.writeState(sync.id, state);
  }

  const count = plan.parts.reduce((sum, p) => sum + p.count, 0);
  await finishRun(sync, state, run, deps, entry, { full: plan.full, layout, count, partitions: parts });
}
