import { promisify } from "node:util";
import { gzip as gzipCallback, constants as zlibConstants } from "node:zlib";
import * as z from "../util/zod.js";
import { ConfigError, RetryableError, describeError } from "../util/errors.js";
import { type FetchLike, type HttpResult, fetchText, throwForStatus } from "../http/fetch.js";
import { DEFAULT_RETRY_POLICY, type RetryDeps, type RetryPolicy, withRetry } from "../http/retry.js";
import { groupByCaps } from "../util/batching.js";
import { parseJsonWith } from "../util/json.js";
import { mapWithConcurrency } from "../util/concurrency.js";
import { type CredentialsSource, authorizationFor } from "./credentials.js";

const gzip = promisify(gzipCallback);

/**
 * Writers for Mixpanel's ingestion endpoints (docs/vendors/mixpanel-api.md §3, §6).
 * They never throw for a per-record problem: every input line gets an outcome,
 * and the caller turns outcomes into rejected-store writes and SQS batchItemFailures.
 */
export type LineOutcome =
  | { readonly status: "imported" }
  /** Mixpanel refused the record for good; never resend it. */
  | { readonly status: "rejected"; readonly reason: string }
  /** Transient failure that outlived the retries we could afford; SQS should redeliver. */
  | { readonly status: "retry"; readonly reason: string }
  /** Credentials or settings are wrong; kept for redelivery and the DLQ, never dropped. */
  | { readonly status: "config"; readonly reason: string };

/** /import: at most 2000 events per request (§3). */
export const IMPORT_MAX_RECORDS = 2000;
/** /engage and /groups: at most 2000 updates per request (§6). */
export const ENGAGE_MAX_RECORDS = 2000;

export interface IngestionClientOptions {
  readonly fetch: FetchLike;
  readonly baseUrl: string;
  readonly credentials: CredentialsSource;
  /** Byte cap per /import request, uncompressed (the caps count uncompressed bytes). */
  readonly importMaxBytes: number;
  readonly concurrency: number;
  readonly timeoutMs: number;
  readonly retryDeps: RetryDeps;
  readonly retryPolicy?: RetryPolicy;
  readonly nowMs: () => number;
  readonly onRetry?: (endpoint: string, error: RetryableError, delayMs: number) => void;
}

/**
 * An /import request built at the edge (envelope v2, lib/records/envelope-v2.ts): the
 * gzip of its NDJSON lines. Sent as is; `lines()` is read only when Mixpanel's answer
 * needs the records themselves (400 failed_records, 413 split).
 */
export interface PreparedImport {
  readonly gzipped: Buffer<ArrayBuffer>;
  readonly count: number;
  readonly rawBytes: number;
  lines(): readonly string[];
}

export interface IngestionClient {
  importEvents(lines: readonly string[]): Promise<LineOutcome[]>;
  /** One request per prepared body (several in flight); outcomes per body, per line. */
  importPrepared(batches: readonly PreparedImport[]): Promise<LineOutcome[][]>;
  updateProfiles(lines: readonly string[]): Promise<LineOutcome[]>;
  updateGroups(lines: readonly string[]): Promise<LineOutcome[]>;
}

const importFailureSchema = z.object({
  failed_records: z.array(
    z.object({
      index: z.number().check(z.int(), z.nonnegative()),
      insert_id: z.optional(z.string()),
      $insert_id: z.optional(z.string()),
      field: z.optional(z.string()),
      message: z.optional(z.string()),
    }),
  ),
});

/** The count every /import answer carries (docs/vendors/mixpanel-api.md §3); checked against ours. */
const importCountSchema = z.object({ num_records_imported: z.number().check(z.int(), z.nonnegative()) });

/**
 * Mixpanel's `num_records_imported`, or undefined when the answer has none. A 200 or 400 whose
 * count disagrees with ours must not be counted as imported (docs/vendors/mixpanel-api.md §3).
 */
export function reportedImportCount(body: string): number | undefined {
  const parsed = parseJsonWith(importCountSchema, body);
  return parsed.success ? parsed.data.num_records_imported : undefined;
}

const engageVerboseSchema = z.object({
  status: z.union([z.number(), z.string()]),
  error: z.optional(z.nullable(z.string())),
});

/** Splits line indexes into requests under both caps; the caps are independent (§3). */
export function chunkByCaps(lines: readonly string[], maxRecords: number, maxBytes: number): number[][] {
  return groupByCaps(lines.keys(), (index) => Buffer.byteLength(lines[index] ?? "") + 1, maxRecords, maxBytes);
}

const insertIdOfLine = z.object({ properties: z.object({ $insert_id: z.string() }) });

/** An event line's `properties.$insert_id`; undefined for profiles, groups and unreadable lines. */
export function insertIdOf(line: string): string | undefined {
  const parsed = parseJsonWith(insertIdOfLine, line);
  return parsed.success ? parsed.data.properties.$insert_id : undefined;
}

type FailedRecord = z.infer<typeof importFailureSchema>["failed_records"][number];

/**
 * Maps /import's failed_records back to our lines (docs/vendors/mixpanel-api.md §3): by
 * `index`, checked against `insert_id ?? $insert_id` when Mixpanel names one, and by
 * insert id when the index does not match. Answers undefined when a failure matches no line.
 */
export function matchFailedRecords(
  lines: readonly string[],
  indexes: readonly number[],
  failures: readonly FailedRecord[],
): Map<number, LineOutcome> | undefined {
  const insertIdAt = (lineIndex: number): string | undefined => insertIdOf(lines[lineIndex] ?? "");
  let byInsertId: Map<string, number> | undefined;
  const rejections = new Map<number, LineOutcome>();
  for (const failure of failures) {
    const insertId = failure.insert_id ?? failure.$insert_id;
    let lineIndex = indexes[failure.index];
    if (insertId && (lineIndex === undefined || insertIdAt(lineIndex) !== insertId)) {
      byInsertId ??= new Map(indexes.map((index) => [insertIdAt(index) ?? "", index]));
      lineIndex = byInsertId.get(insertId);
    }
    if (lineIndex === undefined) return undefined;
    const field = failure.field ? `${failure.field}: ` : "";
    rejections.set(lineIndex, { status: "rejected", reason: `${field}${failure.message ?? "failed validation"}` });
  }
  return rejections;
}

/** Adds `$token` to an already-serialized update object without re-parsing it. */
export function withToken(line: string, token: string): string {
  const rest = line.slice(1).trimStart();
  return `{"$token":${JSON.stringify(token)}${rest.startsWith("}") ? "" : ","}${rest}`;
}

/**
 * Why records Mixpanel's answer does not account for are kept instead of counted as imported.
 * They go to the rejected store, not back to the queue: /import's 400 is never retried (§3), and
 * replaying them is safe because Mixpanel dedupes events on `$insert_id` (§5).
 */
function countMismatch(answer: string, expected: number, body: string): string {
  return `Mixpanel /import answered ${answer}, but ${expected} record(s) should have been imported; kept for replay (deduped on $insert_id): ${body.slice(0, 300)}`;
}

function halves(indexes: number[]): [number[], number[]] {
  const middle = Math.ceil(indexes.length / 2);
  return [indexes.slice(0, middle), indexes.slice(middle)];
}

function outcomeForError(error: unknown): LineOutcome {
  if (error instanceof RetryableError) return { status: "retry", reason: error.message };
  // Any other non-2xx from an ingestion endpoint (401/403, 404 from a wrong host, …)
  // is a setup problem, not the records' fault: keep them for redelivery and the DLQ.
  if (error instanceof ConfigError) return { status: "config", reason: error.message };
  return { status: "config", reason: describeError(error) };
}

export function createIngestionClient(options: IngestionClientOptions): IngestionClient {
  const policy = options.retryPolicy ?? DEFAULT_RETRY_POLICY;

  async function post(path: string, query: Record<string, string>, init: RequestInit, accept: number[]): Promise<HttpResult> {
    const credentials = await options.credentials();
    const auth = authorizationFor(credentials);
    const url = new URL(`${options.baseUrl}${path}`);
    for (const [key, value] of Object.entries({ ...query, ...auth.query })) url.searchParams.set(key, value);
    const headers = new Headers(init.headers);
    headers.set("Authorization", auth.authorization);
    headers.set("Accept", "application/json");
    return withRetry(
      async () => {
        const result = await fetchText(options.fetch, url, { ...init, method: "POST", headers }, options.timeoutMs);
        if (!accept.includes(result.status)) throwForStatus(result, `Mixpanel ${path}`, options.nowMs());
        return result;
      },
      options.retryDeps,
      policy,
      (error, delayMs) => options.onRetry?.(path, error, delayMs),
    );
  }

  /** No time left to start a request: leave the records to SQS redelivery. */
  function outOfTime(indexes: readonly number[], outcomes: LineOutcome[]): boolean {
    if (options.retryDeps.remainingMs() > 0) return false;
    for (const index of indexes) outcomes[index] = { status: "retry", reason: "no time left in this invocation" };
    return true;
  }

  async function importChunk(
    linesOf: () => readonly string[],
    indexes: number[],
    outcomes: LineOutcome[],
    precompressed?: Buffer<ArrayBuffer>,
  ): Promise<void> {
    if (outOfTime(indexes, outcomes)) return;
    let result: HttpResult;
    try {
      const compressed =
        precompressed ?? (await gzip(`${indexes.map((i) => linesOf()[i]).join("\n")}\n`, { level: zlibConstants.Z_BEST_SPEED }));
      result = await post(
        "/import",
        { strict: "1" },
        { body: compressed, headers: { "Content-Type": "application/x-ndjson", "Content-Encoding": "gzip" } },
        [200, 400, 413],
      );
    } catch (error) {
      const outcome = outcomeForError(error);
      for (const index of indexes) outcomes[index] = outcome;
      return;
    }
    if (result.status === 200) {
      const reported = reportedImportCount(result.body);
      const imported: LineOutcome =
        reported === undefined || reported === indexes.length
          ? { status: "imported" }
          : { status: "rejected", reason: countMismatch(`200 with num_records_imported ${reported}`, indexes.length, result.body) };
      for (const index of indexes) outcomes[index] = imported;
      return;
    }
    if (result.status === 413) {
      // The documented byte cap disagrees between pages (10 MB vs 2 MB): halve and resend.
      const [only] = indexes;
      if (indexes.length === 1 && only !== undefined) {
        outcomes[only] = { status: "rejected", reason: "Mixpanel answered 413: a single event is too large" };
        return;
      }
      const [left, right] = halves(indexes);
      await importChunk(linesOf, left, outcomes);
      await importChunk(linesOf, right, outcomes);
      return;
    }
    // 400 with strict=1: the valid events were ingested; only failed_records are bad (§3).
    const failures = parseJsonWith(importFailureSchema, result.body);
    if (!failures.success) {
      const reason = `Mixpanel /import answered 400 without failed_records: ${result.body.slice(0, 300)}`;
      for (const index of indexes) outcomes[index] = { status: "rejected", reason };
      return;
    }
    const rejections = matchFailedRecords(linesOf(), indexes, failures.data.failed_records);
    if (rejections === undefined) {
      // A failure we cannot tie to a record: keep the whole chunk, with Mixpanel's answer, rather
      // than count a refused record as imported.
      const reason = `Mixpanel /import answered 400 with failed_records that do not match the request: ${result.body.slice(0, 300)}`;
      for (const index of indexes) outcomes[index] = { status: "rejected", reason };
      return;
    }
    // Mixpanel said some records failed, named these, and counted the rest as imported: the
    // counts must agree. A 400 that names no failed record (`failed_records: []`) never does.
    const expected = indexes.length - rejections.size;
    const reported = reportedImportCount(result.body);
    const unaccounted: LineOutcome =
      rejections.size > 0 && (reported === undefined || reported === expected)
        ? { status: "imported" }
        : {
            status: "rejected",
            reason: countMismatch(`400 naming ${rejections.size} failed record(s) with num_records_imported ${reported ?? "missing"}`, expected, result.body),
          };
    for (const index of indexes) outcomes[index] = rejections.get(index) ?? unaccounted;
  }

  async function engageChunk(
    path: "/engage" | "/groups",
    lines: readonly string[],
    indexes: number[],
    outcomes: LineOutcome[],
  ): Promise<void> {
    if (outOfTime(indexes, outcomes)) return;
    let result: HttpResult;
    try {
      const credentials = await options.credentials();
      const token = credentials.project_token;
      if (!token) throw new ConfigError(`Mixpanel ${path} needs the project token ($token) in the credentials`);
      const body = `[${indexes.map((i) => withToken(lines[i] ?? "{}", token)).join(",")}]`;
      // No gzip on /engage and /groups (§6); verbose=1 because they answer 200 even on failure.
      result = await post(path, { verbose: "1" }, { body, headers: { "Content-Type": "application/json" } }, [200, 400, 413]);
    } catch (error) {
      const outcome = outcomeForError(error);
      for (const index of indexes) outcomes[index] = outcome;
      return;
    }
    let verdict: { ok: boolean; error: string } = { ok: false, error: result.body.slice(0, 300) };
    if (result.status === 200) {
      const verbose = parseJsonWith(engageVerboseSchema, result.body);
      if (verbose.success) verdict = { ok: Number(verbose.data.status) === 1, error: verbose.data.error ?? "status 0" };
      else verdict = { ok: result.body.trim() === "1", error: result.body.slice(0, 300) };
    }
    if (verdict.ok) {
      for (const index of indexes) outcomes[index] = { status: "imported" };
      return;
    }
    // The answer is per request, not per update: bisect to find the bad ones.
    const [only] = indexes;
    if (indexes.length === 1 && only !== undefined) {
      outcomes[only] = { status: "rejected", reason: `Mixpanel ${path}: ${verdict.error}` };
      return;
    }
    const [left, right] = halves(indexes);
    await engageChunk(path, lines, left, outcomes);
    await engageChunk(path, lines, right, outcomes);
  }

  async function run(
    lines: readonly string[],
    maxRecords: number,
    send: (indexes: number[], outcomes: LineOutcome[]) => Promise<void>,
  ): Promise<LineOutcome[]> {
    const outcomes = new Array<LineOutcome>(lines.length);
    const chunks = chunkByCaps(lines, maxRecords, options.importMaxBytes);
    await mapWithConcurrency(chunks, options.concurrency, (chunk) => send(chunk, outcomes));
    return outcomes;
  }

  return {
    importEvents: (lines) => run(lines, IMPORT_MAX_RECORDS, (chunk, outcomes) => importChunk(() => lines, chunk, outcomes)),
    importPrepared: (batches) =>
      mapWithConcurrency(batches, options.concurrency, async (batch) => {
        const indexes = Array.from({ length: batch.count }, (_, i) => i);
        if (batch.count > IMPORT_MAX_RECORDS || batch.rawBytes > options.importMaxBytes) {
          // Not shaped for this stage's caps: split it like any other set of lines.
          const outcomes = new Array<LineOutcome>(batch.count);
          const lines = batch.lines();
          for (const chunk of chunkByCaps(lines, IMPORT_MAX_RECORDS, options.importMaxBytes)) {
            await importChunk(() => lines, chunk, outcomes);
          }
          return outcomes;
        }
        const outcomes = new Array<LineOutcome>(batch.count);
        await importChunk(() => batch.lines(), indexes, outcomes, batch.gzipped);
        return outcomes;
      }),
    updateProfiles: (lines) =>
      run(lines, ENGAGE_MAX_RECORDS, (chunk, outcomes) => engageChunk("/engage", lines, chunk, outcomes)),
    updateGroups: (lines) =>
      run(lines, ENGAGE_MAX_RECORDS, (chunk, outcomes) => engageChunk("/groups", lines, chunk, outcomes)),
  };
}
