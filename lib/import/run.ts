import { randomUUID } from "node:crypto";
import type { StageConfig } from "../config/stage.js";
import { type EnqueueDeps, enqueueMappedItems } from "../enqueue/enqueue.js";
import { protectItems } from "../pii/items.js";
import type { PiiPolicy } from "../pii/policy.js";
import type { MappedItem, RejectedItem } from "../sources/types.js";
import type { Checkpoint, CheckpointStore } from "./checkpoint.js";
import { type EventFilter, type EventSource, type ImportKind, filteredOut, hasEventFilter, mapRow, rejectedSourceName } from "./map-rows.js";
import { type FileRef, type ImportFormat, ImportFileError, readRows, type SourceRow } from "./read-rows.js";

/**
 * One history import: every file's rows through the live mappers, the run's filters, and then
 * either the one enqueue step (the events queue, the Brevo fan-out, the rejected store — what
 * the intake does with a request) or, for a dry run, only the PII rules and the counting.
 * A file that cannot be read further is reported with its position and the run goes on with
 * the next file; the report says which files failed.
 */
export interface ImportFile {
  readonly ref: FileRef;
  readonly format: ImportFormat;
}

/** Sends a batch another way than the events queue (`--via direct`); answers what was taken and refused. */
export type BatchSender = (items: readonly MappedItem[], batch: { readonly source: string; readonly correlationId: string; readonly policy: PiiPolicy | undefined }) => Promise<{ accepted: number; rejections: readonly RejectedItem[] }>;

export interface ImportRunOptions {
  readonly files: readonly ImportFile[];
  readonly kind: ImportKind;
  readonly source: EventSource;
  readonly columns: Readonly<Record<string, string>>;
  readonly filter: EventFilter;
  readonly dryRun: boolean;
  /** Rows mapped and sent together; also how often the checkpoint is written. */
  readonly batchRows: number;
  /** Where the checkpoint lives; absent = no checkpoint (stdin, dry runs). */
  readonly checkpoint?: CheckpointStore | undefined;
  readonly resume: boolean;
  /** The run's options as one string: a checkpoint of other options is not resumed. */
  readonly runKey: string;
  /** Batches sent at once (default 1: one batch sent while the next is read and mapped). */
  readonly inFlightBatches?: number;
  /** How many examples to keep per rejection reason. */
  readonly examplesPerReason?: number;
}

export interface ImportRunDeps {
  readonly config: StageConfig;
  readonly policy: PiiPolicy | undefined;
  /** The enqueue step's dependencies (`--via queue`); unused on a dry run. */
  readonly enqueue?: EnqueueDeps | undefined;
  /** `--via direct`: replaces the enqueue step. */
  readonly sendBatch?: BatchSender | undefined;
  readonly nowMs: () => number;
  readonly log: (line: string) => void;
  readonly onProgress?: ((progress: ImportProgress) => void) | undefined;
}

export interface ImportProgress {
  readonly filesDone: number;
  readonly filesTotal: number;
  readonly rowsRead: number;
  readonly bytesRead: number;
}

export interface RejectionExample {
  readonly file: string;
  readonly position: number;
  readonly reason: string;
}

export interface FileReport {
  readonly file: string;
  readonly format: ImportFormat;
  rows: number;
  accepted: number;
  rejected: number;
  skipped: number;
  /** Rows skipped because an earlier (killed) run already sent them. */
  resumedPast: number;
  failed?: string;
}

export interface ImportReport {
  readonly dryRun: boolean;
  read: number;
  accepted: number;
  rejected: number;
  /** Rejections (and expected drops) by code, with the first few examples. */
  readonly byReason: Record<string, { count: number; examples: RejectionExample[] }>;
  /** Rows left out by `--from` / `--to` / `--event`, by why. */
  readonly skipped: Record<string, number>;
  /** Records handed to the queue (or Mixpanel); 0 on a dry run. */
  sent: number;
  bytes: number;
  wallMs: number;
  readonly files: FileReport[];
  readonly failedFiles: string[];
}

export async function runImport(options: ImportRunOptions, deps: ImportRunDeps): Promise<ImportReport> {
  const started = deps.nowMs();
  const examplesPerReason = options.examplesPerReason ?? 3;
  const store = options.checkpoint;
  const previous = options.resume && store ? await store.read() : undefined;
  if (options.resume && store && !previous) deps.log(`no checkpoint at ${store.where}: starting from the top`);
  if (previous && previous.runKey !== options.runKey) {
    throw new Error(`${store?.where} belongs to a run with other sources or options; run again without --resume, or with the same options`);
  }
  const checkpoint: Checkpoint = previous ?? { v: 1, runKey: options.runKey, runId: randomUUID().slice(0, 8), files: {} };
  const report: ImportReport = { dryRun: options.dryRun, read: 0, accepted: 0, rejected: 0, byReason: {}, skipped: {}, sent: 0, bytes: 0, wallMs: 0, files: [], failedFiles: [] };
  const saver = coalescedWrites(() => (store && !options.dryRun ? store.write(checkpoint) : Promise.resolve()));
  const inFlightBatches = options.inFlightBatches ?? 1;
  const filtering = hasEventFilter(options.filter);
  let filesDone = 0;
  let bytesBefore = 0;

  const noteRejection = (file: string, item: RejectedItem) => {
    const entry = (report.byReason[item.code] ??= { count: 0, examples: [] });
    entry.count += 1;
    if (entry.examples.length < examplesPerReason) entry.examples.push({ file, position: item.index, reason: item.reason });
  };

  for (const [fileIndex, file] of options.files.entries()) {
    const name = file.ref.path;
    const fileReport: FileReport = { file: name, format: file.format, rows: 0, accepted: 0, rejected: 0, skipped: 0, resumedPast: 0 };
    report.files.push(fileReport);
    const progress = (checkpoint.files[name] ??= { rowsDone: 0, finished: false });
    if (progress.finished) {
      deps.log(`${name}: finished by the earlier run, skipped`);
      filesDone += 1;
      continue;
    }
    const source = rejectedSourceName({ format: file.format, kind: options.kind, source: options.source });
    const mapping = { format: file.format, kind: options.kind, source: options.source, columns: options.columns };
    const counter = { bytes: 0, gzip: false };

    /** The rows as mapped items, the run's filters applied (CPU only: it overlaps the batches in flight). */
    const mapBatch = (rows: readonly SourceRow[]): MappedItem[] => {
      const ctx = { nowMs: deps.nowMs(), config: deps.config };
      const items: MappedItem[] = [];
      for (const row of rows) {
        const item = mapRow(row, mapping, ctx);
        if (filtering && item.ok && item.kind === "event") {
          const why = filteredOut(item.line, options.filter);
          if (why) {
            report.skipped[why] = (report.skipped[why] ?? 0) + 1;
            fileReport.skipped += 1;
            continue;
          }
        }
        items.push(item);
      }
      return items;
    };

    const send = async (items: MappedItem[], correlationId: string): Promise<{ accepted: number; rejections: readonly RejectedItem[] }> => {
      if (options.dryRun) {
        const protectedItems = protectItems(items, deps.policy);
        return { accepted: protectedItems.filter((item) => item.ok).length, rejections: protectedItems.filter((item): item is RejectedItem => !item.ok) };
      }
      if (deps.sendBatch) return deps.sendBatch(items, { source, correlationId, policy: deps.policy });
      if (!deps.enqueue) throw new Error("no enqueue dependencies for a run that sends");
      return enqueueMappedItems(items, { source, correlationId, stageOfFailure: "intake", policy: deps.policy }, deps.enqueue);
    };

    // Up to `inFlightBatches` batches are sent at once while the next is read and mapped; each is
    // counted and checkpointed only after every batch before it, so the checkpoint never passes a
    // batch that was not taken (a failed batch stops the chain: `--resume` sends it again).
    const inFlight: Promise<void>[] = [];
    /** The sends themselves: a commit can fail (a batch before it failed) while its send is still out. */
    const sending = new Set<Promise<unknown>>();
    let lastCommit: Promise<void> = Promise.resolve();
    const flush = async (rows: readonly SourceRow[]) => {
      if (rows.length === 0) return;
      const items = mapBatch(rows);
      while (inFlight.length >= inFlightBatches) await inFlight.shift();
      const correlationId = `import-${checkpoint.runId}-f${fileIndex + 1}-r${rows[0]?.position ?? 0}`;
      const sent = send(items, correlationId);
      sending.add(sent);
      void sent.then(
        () => sending.delete(sent),
        () => sending.delete(sent),
      );
      const previous = lastCommit;
      const commit = (async () => {
        const [{ accepted, rejections }] = await Promise.all([sent, previous]);
        for (const rejection of rejections) noteRejection(name, rejection);
        fileReport.accepted += accepted;
        fileReport.rejected += rejections.length;
        report.accepted += accepted;
        report.rejected += rejections.length;
        if (!options.dryRun) report.sent += accepted;
        progress.rowsDone = rows[rows.length - 1]?.position ?? progress.rowsDone;
        saver.request();
      })();
      // Awaited through the window or at the end of the file; marked handled so a failure is reported once.
      commit.catch(() => undefined);
      lastCommit = commit;
      inFlight.push(commit);
    };
    const drain = async () => {
      while (inFlight.length > 0) await inFlight.shift();
      await saver.idle();
    };

    let batch: SourceRow[] = [];
    try {
      for await (const row of readRows(file.ref, { format: file.format }, counter)) {
        if (row.position <= progress.rowsDone) {
          fileReport.resumedPast += 1;
          continue;
        }
        batch.push(row);
        fileReport.rows += 1;
        report.read += 1;
        if (batch.length >= options.batchRows) {
          const full = batch;
          batch = [];
          await flush(full);
          deps.onProgress?.({ filesDone, filesTotal: options.files.length, rowsRead: report.read, bytesRead: bytesBefore + counter.bytes });
        }
      }
      await flush(batch);
      await drain();
      progress.finished = true;
      saver.request();
      await saver.idle();
    } catch (error) {
      if (!(error instanceof ImportFileError)) {
        // Whatever else was in flight ends before the run stops, so no send outlives it.
        await Promise.allSettled([...inFlight, ...sending]);
        await saver.idle().catch(() => undefined);
        throw error;
      }
      // The rows before the failure are sent; the file is reported and the run moves on.
      await flush(batch);
      await drain();
      fileReport.failed = error.message;
      progress.failed = error.message;
      saver.request();
      await saver.idle();
      report.failedFiles.push(name);
      deps.log(`failed: ${error.message}; going on with the next file`);
    }
    bytesBefore += counter.bytes;
    report.bytes = bytesBefore;
    filesDone += 1;
    deps.onProgress?.({ filesDone, filesTotal: options.files.length, rowsRead: report.read, bytesRead: bytesBefore });
  }
  report.wallMs = deps.nowMs() - started;
  return report;
}

/**
 * Checkpoint writes one at a time: a request while a write is running is folded into one more
 * write of the then-current state, so a slow store (an S3 PutObject) never holds the batches
 * back, and each write still holds only what was committed when it started.
 */
function coalescedWrites(write: () => Promise<void>): { request(): void; idle(): Promise<void> } {
  let running: Promise<void> | undefined;
  let again = false;
  let failure: unknown;
  const start = (): Promise<void> =>
    write()
      .catch((error: unknown) => {
        failure ??= error;
      })
      .then(() => {
        if (!again) {
          running = undefined;
          return;
        }
        again = false;
        running = start();
        return running;
      });
  return {
    request() {
      if (running) again = true;
      else running = start();
    },
    async idle() {
      // Each pass awaits the write running at the time; a write requested meanwhile runs next.
      while (running) await running;
      if (failure !== undefined) {
        const error = failure;
        failure = undefined;
        throw error;
      }
    },
  };
}

/** The report as the lines an operator reads. */
export function formatReport(report: ImportReport): string[] {
  const lines: string[] = [];
  const seconds = Math.max(report.wallMs, 1) / 1000;
  lines.push(`${report.dryRun ? "dry run (nothing sent): " : ""}read ${report.read} rows, accepted ${report.accepted}, rejected ${report.rejected}, ${report.dryRun ? `would send ${report.accepted}` : `sent ${report.sent}`}, ${report.bytes} bytes in ${seconds.toFixed(1)} s (${Math.round(report.read / seconds)} rows/s)`);
  for (const [code, entry] of Object.entries(report.byReason).sort((a, b) => b[1].count - a[1].count)) {
    lines.push(`  rejected ${code}: ${entry.count}`);
    for (const example of entry.examples) lines.push(`    ${example.file} row ${example.position}: ${example.reason}`);
  }
  for (const [why, count] of Object.entries(report.skipped)) lines.push(`  skipped ${why}: ${count}`);
  for (const file of report.files) if (file.failed) lines.push(`  FAILED ${file.failed}`);
  if (report.failedFiles.length > 0) lines.push(`${report.failedFiles.length} of ${report.files.length} file(s) failed`);
  return lines;
}
