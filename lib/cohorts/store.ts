import { isMissingObject } from "../aws/aws-call.js";
import type { S3BucketApi } from "../aws/s3-bucket.js";
import { gunzipSync, gzipSync } from "node:zlib";
import { parseJsonOrThrow } from "../util/json.js";
import type * as z from "../util/zod.js";
import { formatZodIssues } from "../config/env.js";
import { MissingObjectError, RetryableError, ValidationError } from "../util/errors.js";
import {
  type DeliveryPage,
  type FailureRecord,
  type StagedPage,
  type SyncAction,
  type SyncState,
  budgetStateSchema,
  deliveryPageSchema,
  failureRecordSchema,
  initialSyncState,
  syncStateSchema,
} from "./messages.js";
import { lineMember } from "./staged-line-reader.js";
import { StagedPageWriter } from "./staged-page-writer.js";
import { StagedRows } from "./staged-rows.js";

/**
 * S3 layout of cohort state (bucket SNAPSHOT_BUCKET, prefixes `cohorts/` and `cohort-runs/`):
 *
 *   cohorts/_budget.json                                 Query API calls of the last hour
 *   cohorts/<sync>/state.json                            checkpoint + snapshot pointer + health
 *   cohorts/<sync>/snapshot.jsonl.gz                     last delivered snapshot
 *   cohorts/<sync>/snapshot/<p>-of-<P>.jsonl.gz           last delivered snapshot of a partitioned sync (partition-layout.ts)
 *   cohort-runs/<sync>/<run>/pages/<n>.json.gz          staged /engage pages (export checkpoint; staged-format.ts lines)
 *   cohort-runs/<sync>/<run>/parts/<p>/<c>.json.gz      partitioned run: staged lines split by id-hash range
 *   cohort-runs/<sync>/<run>/outbox/<p>.json.gz         partitioned run: members to send / remove, per partition
 *   cohort-runs/<sync>/<run>/snapshot/<p>-of-<P>.jsonl.gz  partitioned run: pending snapshot partitions
 *   cohort-runs/<sync>/<run>/snapshot.jsonl.gz          pending snapshot (promoted when the ledger is complete)
 *   cohort-runs/<sync>/<run>/out/<action>-<p>.json.gz   delivery page objects (SQS claim check)
 *   cohort-runs/<sync>/<run>/delivered/<action>-<p>     delivery ledger: page delivered
 *   cohort-runs/<sync>/<run>/failed/<action>-<p>.json   delivery ledger: permanent refusal + response body
 *   cohort-runs/<sync>/<run>/imports/<action>-<p>.json  Brevo import process ids awaiting their status check
 *
 * Everything of a run sits under the fixed top-level prefix `cohort-runs/` so an S3
 * lifecycle rule (prefix match only, no wildcards) expires it after a week; the live
 * snapshot is copied out of it into `cohorts/` when the run completes.
 */
export const COHORT_PREFIX = "cohorts/";
export const COHORT_RUNS_PREFIX = "cohort-runs/";

export const keys = {
  budget: () => `${COHORT_PREFIX}_budget.json`,
  state: (sync: string) => `${COHORT_PREFIX}${sync}/state.json`,
  snapshot: (sync: string) => `${COHORT_PREFIX}${sync}/snapshot.jsonl.gz`,
  run: (sync: string, run: string) => `${COHORT_RUNS_PREFIX}${sync}/${run}/`,
  staged: (sync: string, run: string, n: number) => `${keys.run(sync, run)}pages/${String(n).padStart(6, "0")}.json.gz`,
  pendingSnapshot: (sync: string, run: string) => `${keys.run(sync, run)}snapshot.jsonl.gz`,
  snapshotPart: (sync: string, part: number, parts: number) => `${COHORT_PREFIX}${sync}/snapshot/${part}-of-${parts}.jsonl.gz`,
  pendingSnapshotPart: (sync: string, run: string, part: number, parts: number) =>
    `${keys.run(sync, run)}snapshot/${part}-of-${parts}.jsonl.gz`,
  partChunk: (sync: string, run: string, part: number, chunk: number) =>
    `${keys.run(sync, run)}parts/${String(part).padStart(4, "0")}/${String(chunk).padStart(6, "0")}.json.gz`,
  outbox: (sync: string, run: string, part: number) => `${keys.run(sync, run)}outbox/${String(part).padStart(4, "0")}.json.gz`,
  page: (sync: string, run: string, action: SyncAction, page: number) =>
    `${keys.run(sync, run)}out/${action}-${String(page).padStart(6, "0")}.json.gz`,
  delivered: (sync: string, run: string, action: SyncAction, page: number) =>
    `${keys.run(sync, run)}delivered/${action}-${String(page).padStart(6, "0")}`,
  failed: (sync: string, run: string, action: SyncAction, page: number) =>
    `${keys.run(sync, run)}failed/${action}-${String(page).padStart(6, "0")}.json`,
  /** Brevo: the import process ids of a page accepted with 202, followed up before the page counts as delivered. */
  imports: (sync: string, run: string, action: SyncAction, page: number) =>
    `${keys.run(sync, run)}imports/${action}-${String(page).padStart(6, "0")}.json`,
};

export interface CohortStore {
  readState(sync: string): Promise<SyncState>;
  writeState(sync: string, state: SyncState): Promise<void>;
  readBudget(): Promise<number[]>;
  writeBudget(calls: number[]): Promise<void>;
  putStaged(sync: string, run: string, n: number, page: StagedPage): Promise<void>;
  getStaged(sync: string, run: string, n: number): Promise<StagedPage>;
  /** A staged page as stored lines (staged-format.ts), appended to `into` when given. */
  getStagedRows(sync: string, run: string, n: number, into?: StagedRows): Promise<StagedRows>;
  putBytes(key: string, body: Uint8Array): Promise<void>;
  /** undefined when absent. */
  getBytes(key: string): Promise<Uint8Array | undefined>;
  copy(from: string, to: string): Promise<void>;
  putPage(key: string, page: DeliveryPage): Promise<void>;
  getPage(key: string): Promise<DeliveryPage>;
  exists(key: string): Promise<boolean>;
  /** Count of keys under a prefix (ledger checks). */
  list(prefix: string): Promise<string[]>;
  markDelivered(sync: string, run: string, action: SyncAction, page: number): Promise<void>;
  isDelivered(sync: string, run: string, action: SyncAction, page: number): Promise<boolean>;
  markFailed(sync: string, run: string, action: SyncAction, page: number, record: FailureRecord): Promise<void>;
  readFailure(key: string): Promise<FailureRecord | undefined>;
}

function s3Error(what: string, error: unknown): RetryableError {
  return new RetryableError(`S3 ${what} failed: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`);
}

function parse<T>(schema: z.ZodType<T>, raw: unknown, what: string): T {
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new ValidationError(`${what} has the wrong shape: ${formatZodIssues(parsed.error)}`);
  return parsed.data;
}

export function createCohortStore(s3: S3BucketApi, bucket: string): CohortStore {
  // One per store: it keeps the key orders and key texts that repeat from page to page.
  const pageWriter = new StagedPageWriter();
  async function getBytes(key: string): Promise<Uint8Array | undefined> {
    try {
      return await s3.getObject(bucket, key);
    } catch (error) {
      if (isMissingObject(error)) return undefined;
      throw s3Error(`get ${key}`, error);
    }
  }
  async function putBytes(key: string, body: Uint8Array, contentType = "application/octet-stream"): Promise<void> {
    try {
      await s3.putObject(bucket, key, body, contentType);
    } catch (error) {
      throw s3Error(`put ${key}`, error);
    }
  }
  async function getJson<T>(key: string, schema: z.ZodType<T>, gz: boolean): Promise<T | undefined> {
    const bytes = await getBytes(key);
    if (bytes === undefined) return undefined;
    const text = (gz ? gunzipSync(bytes) : Buffer.from(bytes)).toString("utf8");
    const raw = parseJsonOrThrow(text, () => new ValidationError(`s3://${bucket}/${key} is not JSON`));
    return parse(schema, raw, `s3://${bucket}/${key}`);
  }
  const putJson = (key: string, value: unknown, gz: boolean) =>
    putBytes(key, gz ? gzipSync(JSON.stringify(value)) : Buffer.from(JSON.stringify(value)), "application/json");

  async function getStagedRows(sync: string, run: string, n: number, into?: StagedRows): Promise<StagedRows> {
    const key = keys.staged(sync, run, n);
    const bytes = await getBytes(key);
    if (!bytes) throw new MissingObjectError(`staged page ${key}`);
    const what = `s3://${bucket}/${key}`;
    return (into ?? new StagedRows()).add(bytes, what);
  }

  async function exists(key: string): Promise<boolean> {
    try {
      return await s3.objectExists(bucket, key);
    } catch (error) {
      throw s3Error(`head ${key}`, error);
    }
  }

  return {
    async readState(sync) {
      return (await getJson(keys.state(sync), syncStateSchema, false)) ?? initialSyncState();
    },
    writeState: (sync, state) => putJson(keys.state(sync), state, false),
    async readBudget() {
      return (await getJson(keys.budget(), budgetStateSchema, false))?.calls ?? [];
    },
    writeBudget: (calls) => putJson(keys.budget(), { calls }, false),
    // Plain text, not gzipped: staged-format.ts says why.
    putStaged: (sync, run, n, page) => putBytes(keys.staged(sync, run, n), pageWriter.pageBytes(page.members), "application/x-ndjson"),
    async getStaged(sync, run, n) {
      const rows = await getStagedRows(sync, run, n);
      return { members: rows.ids.map((id, row) => lineMember(id, rows.line(row))) };
    },
    getStagedRows,
    putBytes: (key, body) => putBytes(key, body),
    getBytes,
    async copy(from, to) {
      try {
        await s3.copyObject(bucket, from, to);
      } catch (error) {
        throw s3Error(`copy ${from}`, error);
      }
    },
    putPage: (key, page) => putJson(key, page, true),
    async getPage(key) {
      const page = await getJson(key, deliveryPageSchema, true);
      if (!page) throw new MissingObjectError(`delivery page s3://${bucket}/${key}`);
      return page;
    },
    exists,
    async list(prefix) {
      const found: string[] = [];
      let token: string | undefined;
      try {
        do {
          const page = await s3.listObjectsV2(bucket, prefix, token);
          found.push(...page.keys);
          token = page.nextContinuationToken;
        } while (token);
      } catch (error) {
        throw s3Error(`list ${prefix}`, error);
      }
      return found;
    },
    markDelivered: (sync, run, action, page) => putBytes(keys.delivered(sync, run, action, page), new Uint8Array()),
    isDelivered: (sync, run, action, page) => exists(keys.delivered(sync, run, action, page)),
    markFailed: (sync, run, action, page, record) => putJson(keys.failed(sync, run, action, page), record, false),
    readFailure: (key) => getJson(key, failureRecordSchema, false),
  };
}
