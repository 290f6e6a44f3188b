import { randomUUID } from "node:crypto";
import type { BrevoConfig } from "../config/brevo.js";
import type { IdentityMode } from "../config/mapping.js";
import { type EnqueueDeps, enqueueMappedItems } from "../enqueue/enqueue.js";
import type { ExportDayRequest, ExportLine } from "../mixpanel/export.js";
import type { PiiPolicy } from "../pii/policy.js";
import type { MappedRecord } from "../sources/types.js";
import { type Checkpoint, type CheckpointStore, fileCheckpointStore } from "../import/checkpoint.js";
import { mapExportedLine } from "./map-export.js";

/**
 * The Brevo history backfill (docs/brevo.md "History backfill"): Mixpanel's raw export, one UTC day
 * per request, each event mapped by the Brevo forwarder's own rules (map-export.ts), then handed to
 * the one enqueue step with no events queue (the events are in Mixpanel already), so the erased-ids
 * list, the PII rules, the packing and the Brevo queue are those of live events, and the
 * brevo-forwarder sends them under the same limits and failure handling.
 *
 * Each finished day is written to a checkpoint (lib/import/checkpoint.ts, one entry per day) once
 * all its events are on the queue; `--resume` skips those days. A day cut off by a kill is sent
 * again whole: the export's order within a day is not documented, so a position in it cannot be
 * resumed; the forwarder skips `$insert_id`s it has already sent.
 */
export interface BackfillOptions {
  /** UTC days, YYYY-MM-DD, in order. */
  readonly days: readonly string[];
  /** Only these event names (the export's `event` filter); absent = all. */
  readonly events?: readonly string[] | undefined;
  readonly dryRun: boolean;
  /** Events handed to the enqueue step together. */
  readonly batchEvents: number;
  /** Absent = no checkpoint (dry runs write none either). */
  readonly checkpointPath?: string | undefined;
  readonly resume: boolean;
  /** The run's options as one string: a checkpoint of other options is not resumed. */
  readonly runKey: string;
  readonly examplesPerReason?: number;
}

export interface BackfillDeps {
  readonly brevo: BrevoConfig;
  readonly identityMode: IdentityMode;
  readonly policy: PiiPolicy | undefined;
  readonly exportDay: (request: ExportDayRequest) => AsyncIterable<ExportLine>;
  /** The enqueue step with `brevoQueueUrl` and no `queueUrl`; on a dry run its queue and store are never called. */
  readonly enqueue: EnqueueDeps;
  readonly nowMs: () => number;
  readonly log: (line: string) => void;
  readonly onProgress?: ((progress: BackfillProgress) => void) | undefined;
}

export interface BackfillProgress {
  readonly daysDone: number;
  readonly daysTotal: number;
  readonly eventsRead: number;
  /** A day finished with this update (the bar's count moves). */
  readonly dayFinished: boolean;
  /** That day was finished by the earlier run (skipped now, in no rate or ETA). */
  readonly resumed?: boolean;
}

export interface DayReport {
  readonly day: string;
  read: number;
  queued: number;
  /** Finished by an earlier run of the same options: not exported again. */
  readonly resumed: boolean;
}

export interface BackfillReport {
  readonly dryRun: boolean;
  read: number;
  /** Events the Brevo mapping sends (before the erased-ids list and the PII rules). */
  mapped: number;
  skippedUnmapped: number;
  /** On the Brevo queue (on a dry run: what would be). */
  queued: number;
  rejected: number;
  readonly byReason: Record<string, { count: number; examples: string[] }>;
  readonly days: DayReport[];
  wallMs: number;
}

const DAY = /^(\d{4})-(\d{2})-(\d{2})$/;
const DAY_MS = 86_400_000;
/** About ten years: a longer range is almost surely a typo, and costs 60 requests an hour. */
export const MAX_BACKFILL_DAYS = 3_700;

/** Every UTC day from `from` to `to`, both included, or the reason the range is not one. */
export function daysBetween(from: string, to: string): string[] | { error: string } {
  const ms = (day: string): number | undefined => {
    const match = DAY.exec(day);
    if (!match) return undefined;
    const at = Date.UTC(Number(match[1]), Number(match[2]) - 1, Number(match[3]));
    return new Date(at).toISOString().slice(0, 10) === day ? at : undefined;
  };
  const start = ms(from);
  const end = ms(to);
  if (start === undefined) return { error: `--from must be a date YYYY-MM-DD, got "${from}"` };
  if (end === undefined) return { error: `--to must be a date YYYY-MM-DD, got "${to}"` };
  if (end < start) return { error: `--to (${to}) is before --from (${from})` };
  const count = (end - start) / DAY_MS + 1;
  if (count > MAX_BACKFILL_DAYS) return { error: `${count} days asked; at most ${MAX_BACKFILL_DAYS} per run` };
  return Array.from({ length: count }, (_, i) => new Date(start + i * DAY_MS).toISOString().slice(0, 10));
}

const discardingQueue = { send: async () => undefined };
const discardingStore = { put: async () => "dry-run" };

export async function runBackfill(options: BackfillOptions, deps: BackfillDeps): Promise<BackfillReport> {
  const started = deps.nowMs();
  const examplesPerReason = options.examplesPerReason ?? 3;
  const store: CheckpointStore | undefined = options.dryRun || options.checkpointPath === undefined ? undefined : fileCheckpointStore(options.checkpointPath);
  const previous = options.resume && store ? await store.read() : undefined;
  if (options.resume && store && !previous) deps.log(`no checkpoint at ${store.where}: starting from the first day`);
  if (previous && previous.runKey !== options.runKey) {
    throw new Error(`${store?.where ?? "the checkpoint"} belongs to a run with other options; run again without --resume, or with the same options`);
  }
  const checkpoint: Checkpoint = previous ?? { v: 1, runKey: options.runKey, runId: randomUUID().slice(0, 8), files: {} };
  const enqueue: EnqueueDeps = options.dryRun ? { ...deps.enqueue, queue: discardingQueue, rejected: discardingStore } : deps.enqueue;
  if (enqueue.queueUrl !== undefined) throw new Error("the backfill queues for Brevo only: its events are in Mixpanel already");
  const report: BackfillReport = { dryRun: options.dryRun, read: 0, mapped: 0, skippedUnmapped: 0, queued: 0, rejected: 0, byReason: {}, days: [], wallMs: 0 };
  const refuse = (code: string, example: string) => {
    const entry = (report.byReason[code] ??= { count: 0, examples: [] });
    entry.count += 1;
    report.rejected += 1;
    if (entry.examples.length < examplesPerReason) entry.examples.push(example);
  };
  let daysDone = 0;

  for (const day of options.days) {
    const progress = (checkpoint.files[day] ??= { rowsDone: 0, finished: false });
    if (progress.finished) {
      report.days.push({ day, read: progress.rowsDone, queued: 0, resumed: true });
      daysDone += 1;
      deps.onProgress?.({ daysDone, daysTotal: options.days.length, eventsRead: report.read, dayFinished: true, resumed: true });
      continue;
    }
    const dayReport: DayReport = { day, read: 0, queued: 0, resumed: false };
    report.days.push(dayReport);
    let batch: MappedRecord[] = [];
    let batchNumber = 0;
    const flush = async () => {
      if (batch.length === 0) return;
      const items = batch;
      batch = [];
      batchNumber += 1;
      const correlationId = `backfill-${checkpoint.runId}-${day}-b${batchNumber}`;
      const { accepted, rejections } = await enqueueMappedItems(items, { source: "backfill", correlationId, stageOfFailure: "intake", policy: deps.policy }, enqueue);
      for (const rejection of rejections) refuse(rejection.code, `${day} event ${rejection.index}: ${rejection.reason}`);
      dayReport.queued += accepted;
      report.queued += accepted;
    };
    for await (const line of deps.exportDay({ day, events: options.events })) {
      const index = dayReport.read;
      dayReport.read += 1;
      report.read += 1;
      if (line.kind === "too_long") {
        refuse("line_too_long", `${day} event ${index}: ${line.chars} characters`);
        continue;
      }
      const outcome = mapExportedLine(line.text, index, deps.brevo, deps.identityMode);
      if (outcome.outcome === "unmapped") report.skippedUnmapped += 1;
      else if (outcome.outcome === "refused") refuse(outcome.code, `${day} event ${index}: ${outcome.reason}`);
      else {
        report.mapped += 1;
        batch.push(outcome.record);
        if (batch.length >= options.batchEvents) {
          await flush();
          deps.onProgress?.({ daysDone, daysTotal: options.days.length, eventsRead: report.read, dayFinished: false });
        }
      }
    }
    await flush();
    progress.rowsDone = dayReport.read;
    progress.finished = true;
    await store?.write(checkpoint);
    daysDone += 1;
    deps.onProgress?.({ daysDone, daysTotal: options.days.length, eventsRead: report.read, dayFinished: true });
  }
  report.wallMs = deps.nowMs() - started;
  return report;
}

/** The report as the lines an operator reads. */
export function formatBackfillReport(report: BackfillReport): string[] {
  const seconds = Math.max(report.wallMs, 1) / 1000;
  const resumed = report.days.filter((day) => day.resumed).length;
  const lines = [
    `${report.dryRun ? "dry run (nothing queued): " : ""}${report.days.length} day(s)${resumed > 0 ? ` (${resumed} finished by the earlier run, skipped)` : ""}: read ${report.read} events, mapped ${report.mapped}, skipped unmapped ${report.skippedUnmapped}, ${report.dryRun ? "would queue" : "queued for Brevo"} ${report.queued}, rejected ${report.rejected} in ${seconds.toFixed(1)} s (${Math.round(report.read / seconds)} events/s)`,
  ];
  for (const [code, entry] of Object.entries(report.byReason).sort((a, b) => b[1].count - a[1].count)) {
    lines.push(`  rejected ${code}: ${entry.count}`);
    for (const example of entry.examples) lines.push(`    ${example}`);
  }
  return lines;
}
