import { gunzipSync, gzipSync, constants } from "node:zlib";
import { RetryableError, ValidationError } from "../errors.js";
import { applyGuardVerdict, movedRows, parseIdentity, removalGuard, stagedSource } from "./emit.js";
import { type DeliveryMessage, type DeliveryPage, type ExpectedPages, type PageMember, type SyncAction, type SyncState, parseMembers } from "./messages.js";
import { DEFAULT_INVOCATION_WORK_MS, isPartitionedRun, runPartitions, partitionOf, readPrevious, snapshotKeys } from "./partition-layout.js";
import { chunk, pagesFor, planPages, totalPages } from "./plan.js";
import { promote } from "./settle.js";
import { diffStaged } from "./diff.js";
import { PROP_HASH_DEFAULT } from "./hash.js";
import { emptyColumns } from "./member-columns.js";
import { PartitionSplitter } from "./partition-splitter.js";
import { encodeSnapshot } from "./snapshot-codec.js";
import { lineMember } from "./staged-line-reader.js";
import { StagedRows } from "./staged-rows.js";
import { type CohortStore, keys } from "./store.js";
import { type CohortSync, identityProperties } from "../config/cohort-syncs.js";
import { type ExportDeps, type SyncReport, type TickContext, iso } from "./tick.js";

/**
 * The emit step of a large export, split across invocations (a 10 M-member
 * cohort would need ~10 minutes and 5 GB in one). Partitions are hash ranges of
 * the id space (partition-layout.ts), at most `partitionMembers` each. The run
 * moves through three resumable steps, each a series of small units checkpointed
 * in state.json; an invocation starts no unit after `invocationWorkMs`, and a
 * killed one redoes at most its last unit (every object key is deterministic):
 *
 *  1. spill: staged /engage pages, a chunk at a time, split into one object per
 *     partition (`parts/<p>/<chunk>`, the staged lines as they are, staged-rows.ts),
 *     so a partition is read without the rest;
 *  2. diff: per partition, diff against the previous snapshot's same hash range,
 *     write the pending snapshot partition and an outbox (members to send and to
 *     remove), record the counts. Nothing is sent yet;
 *  3. the mass-removal guard over the totals of every partition (same rule and
 *     hold as a single-invocation run), then emit: per partition, its outbox as
 *     delivery pages numbered globally per action, so the ledger, the settle step
 *     and the destinations see one run exactly as before.
 */
const SPILL_PAGES_PER_CHUNK = 200;
const GZIP_FAST = { level: constants.Z_BEST_SPEED };

export async function emitPartitionedRuns(tick: TickContext, active: readonly CohortSync[]): Promise<void> {
  const { deps, states, report } = tick;
  const deadline = tick.startedAt + (deps.limits.invocationWorkMs ?? DEFAULT_INVOCATION_WORK_MS);
  // Every invocation with Lambda time left does at least one unit, so a run always progresses.
  let units = 0;
  const hasTime = () => {
    if (deps.remainingMs() < deps.limits.emitMarginMs) return false;
    if (units > 0 && deps.now() >= deadline) return false;
    units += 1;
    return true;
  };
  for (const sync of active) {
    const state = states.get(sync.id);
    const entry = report[sync.id];
    const run = state?.export;
    if (!state || !run || run.phase !== "emit" || !entry || !isPartitionedRun(run, state, deps.limits)) continue;
    await emitPartitioned(sync, state, deps, entry, hasTime);
  }
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
  if (bytes === undefined) throw new ValidationError(`${key} is missing`);
  try {
    return JSON.parse(gunzipSync(bytes).toString("utf8"));
  } catch {
    throw new ValidationError(`${key} is not gzipped JSON`);
  }
}

async function emitPartitioned(
  sync: CohortSync,
  state: SyncState,
  deps: ExportDeps,
  entry: SyncReport,
  hasTime: () => boolean,
): Promise<void> {
  const run = state.export;
  if (!run) return;
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
    if (!hasTime()) return deferred(entry, `spilled ${plan.spilled_pages}/${run.staged_pages} staged pages`);
    const first = plan.spilled_pages;
    const last = Math.min(run.staged_pages, first + SPILL_PAGES_PER_CHUNK);
    // A member moves to its partition as its stored line's bytes: only its id is read.
    const splitter = new PartitionSplitter(parts, (keyHash) => partitionOf(keyHash, parts));
    for (let n = first; n < last; n += 10) {
      const pages = await Promise.all(
        Array.from({ length: Math.min(10, last - n) }, async (_, k) => {
          const key = keys.staged(source.sync, source.run, n + k);
          const bytes = await store.getBytes(key);
          if (!bytes) throw new RetryableError(`staged page ${key} is missing`);
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
  const wanted = identityProperties(sync.destination);
  while (plan.step === "diff") {
    const part = plan.parts.length;
    if (part >= parts) {
      const removals = plan.parts.reduce((sum, p) => sum + p.removed, 0);
      const previousCount = state.snapshot?.count ?? 0;
      const verdict = removalGuard({
        previous: previousCount,
        removals,
        exported: run.staged_members,
        ...(run.total !== undefined ? { total: run.total } : {}),
        maxRemoveFraction: sync.max_remove_fraction,
        operatorFull: run.operator_full,
        held: state.removal_hold !== undefined,
      });
      if (!(await applyGuardVerdict(verdict, sync, state, deps, entry, removals, previousCount))) return;
      plan.step = "emit";
      await store.writeState(sync.id, state);
      break;
    }
    if (!hasTime()) return deferred(entry, `diffed ${part}/${parts} partitions`);
    const rows = new StagedRows();
    for (let c = 0; c < plan.chunks; c++) {
      const key = keys.partChunk(sync.id, run.run_id, part, c);
      const bytes = await store.getBytes(key);
      if (bytes === undefined) throw new ValidationError(`${key} is missing`);
      rows.add(bytes, key);
    }
    const previous = (await readPrevious(store, sync.id, state.snapshot, part, parts)) ?? emptyColumns();
    // Every partition of a snapshot is written with one algorithm: the previous one's on a diff run.
    const propHash = plan.full ? PROP_HASH_DEFAULT : (previous.propHash ?? "sha1-48");
    const { current, diff } = diffStaged(rows, previous, plan.full, propHash, wanted);
    const moved = movedRows(sync, current, previous, diff);
    const snapshot = await encodeSnapshot(
      { v: 2, sync_id: sync.id, cohort_id: sync.cohort_id, run_id: run.run_id, created_at: iso(deps.now()), count: 0, partition: part, partitions: parts, prop_hash: propHash, identity_keys: wanted },
      current,
      diff.nextSnapshotRows,
      { ids: previous.ids, previousRow: diff.previousRow, ...(previous.plainIds ? { plainIds: true } : {}) },
    );
    await store.putBytes(keys.pendingSnapshotPart(sync.id, run.run_id, part, parts), snapshot);
    const send: PageMember[] = [];
    for (let row = 0; row < rows.count; row++) if (diff.send[row] === 1) send.push(lineMember(rows.ids[row] ?? "", rows.line(row)));
    const remove = [...diff.removedRows, ...moved].map(
      (j): PageMember => ({ id: previous.ids[j] ?? "", props: parseIdentity(previous.identities[j] ?? "") }),
    );
    await putGzJson(store, keys.outbox(sync.id, run.run_id, part), { send, remove });
    plan.parts.push({ send: diff.sendCount, removed: diff.removedRows.length, moved: moved.length, count: diff.nextSnapshotRows.length });
    await store.writeState(sync.id, state);
  }

  // 3. emit
  const layout = pageLayout(sync, plan.full, plan.parts);
  const base = { v: 1 as const, sync_id: sync.id, run_id: run.run_id, project_id: run.project_id || deps.projectId, cohort: run.cohort };
  let ordinal = 0;
  for (let part = 0; part < parts; part++) {
    const mine = layout.perPart[part];
    if (!mine) continue;
    const pagesHere = mine.primary.count + mine.remove.count;
    if (ordinal + pagesHere <= run.emitted_pages) {
      ordinal += pagesHere; // enqueued by an earlier invocation
      continue;
    }
    if (!hasTime()) return deferred(entry, `emitted ${part}/${parts} partitions`);
    const raw = await getGzJson(store, keys.outbox(sync.id, run.run_id, part));
    const outbox = raw !== null && typeof raw === "object" ? raw : {};
    const groups: [SyncAction, { first: number; count: number }, PageMember[]][] = [
      [layout.primary, mine.primary, parseMembers(Reflect.get(outbox, "send"), `outbox ${part}`)],
      ["remove_members", mine.remove, parseMembers(Reflect.get(outbox, "remove"), `outbox ${part}`)],
    ];
    let batch: { message: DeliveryMessage; body: DeliveryPage }[] = [];
    const flush = async () => {
      if (batch.length === 0) return;
      await Promise.all(batch.map(({ message, body }) => store.putPage(message.key, body)));
      await deps.enqueue(batch.map(({ message }) => message));
      run.emitted_pages += batch.length;
      entry.pagesEnqueued += batch.length;
      batch = [];
      await store.writeState(sync.id, state);
    };
    for (const [action, range, members] of groups) {
      if (range.count === 0) continue;
      const total = layout.expected[action];
      const pages = [...chunk(members)];
      for (let k = 0; k < range.count; k++) {
        ordinal += 1;
        if (ordinal <= run.emitted_pages) continue;
        const page = range.first + k;
        const key = keys.page(sync.id, run.run_id, action, page);
        batch.push({
          message: { v: 1, sync_id: sync.id, run_id: run.run_id, action, page, total_pages: total, key },
          body: { ...base, action, page, total_pages: total, members: pages[k] ?? [] },
        });
        if (batch.length === 10) await flush();
      }
    }
    await flush();
    plan.emitted_parts = part + 1;
    await store.writeState(sync.id, state);
  }

  const count = plan.parts.reduce((sum, p) => sum + p.count, 0);
  state.delivery = { run_id: run.run_id, full: plan.full, enqueued_at: iso(deps.now()), expected: layout.expected, count, partitions: parts };
  delete state.export;
  entry.outcome = "enqueued";
  entry.detail = `${layout.expected.members} members, ${layout.expected.add_members} add, ${layout.expected.remove_members} remove pages (${parts} partitions)`;
  deps.log.info("cohort export: pages enqueued", { syncId: sync.id, runId: run.run_id, partitions: parts, ...layout.expected });
  if (totalPages(layout.expected) === 0) {
    await promote(sync, state, deps);
    entry.outcome = "advanced";
  }
  await store.writeState(sync.id, state);
}

interface PartPages {
  primary: { first: number; count: number };
  remove: { first: number; count: number };
}

/**
 * Page numbers per partition (pure): each partition's members fill their own
 * pages (≤ 1000, messages.ts PAGE_SIZE), numbered on from the previous partition's, so a run of
 * P partitions may send up to P−1 more pages than one that packs across them.
 * Which actions are sent, and the one empty page a webhook gets when there is
 * nothing to send, follow planPages (plan.ts) over the totals.
 */
export function pageLayout(
  sync: CohortSync,
  full: boolean,
  parts: readonly { send: number; removed: number; moved: number }[],
): { primary: "members" | "add_members"; expected: ExpectedPages; perPart: PartPages[] } {
  const sendTotal = parts.reduce((sum, p) => sum + p.send, 0);
  const removeTotal = parts.reduce((sum, p) => sum + p.removed + p.moved, 0);
  const plan = planPages(sync.destination, full, sendTotal, removeTotal);
  const sendsRemovals = plan.expected.remove_members > 0;
  const perPart: PartPages[] = [];
  let nextPrimary = 1;
  let nextRemove = 1;
  for (const p of parts) {
    const primary = pagesFor(p.send);
    const remove = sendsRemovals ? pagesFor(p.removed + p.moved) : 0;
    perPart.push({ primary: { first: nextPrimary, count: primary }, remove: { first: nextRemove, count: remove } });
    nextPrimary += primary;
    nextRemove += remove;
  }
  // The floor of one (empty) page when the plan asks for it and no partition has any.
  const first = perPart[0];
  if (first && plan.expected[plan.primary] > 0 && nextPrimary === 1) {
    first.primary.count = 1;
    nextPrimary = 2;
    for (const later of perPart.slice(1)) later.primary.first = 2;
  }
  if (first && sendsRemovals && nextRemove === 1) {
    first.remove.count = 1;
    nextRemove = 2;
    for (const later of perPart.slice(1)) later.remove.first = 2;
  }
  const expected: ExpectedPages = { members: 0, add_members: 0, remove_members: nextRemove - 1 };
  expected[plan.primary] = nextPrimary - 1;
  return { primary: plan.primary, expected, perPart };
}

