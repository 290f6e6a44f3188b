/**
 * `npm run replay -- --stage <stage> [--source S] [--since YYYY-MM-DD] [--until YYYY-MM-DD]
 *   [--code C] [--include-dropped] [--max-objects N] [--dry-run] [--bucket B] [--region R] [--endpoint URL]`
 *
 * Re-queues records from the rejected-events store (lib/queue/rejected-store.ts)
 * onto the events queue after the cause was fixed (a mapping bug, a wrong
 * project setting, a Mixpanel outage that answered 400). Each rejected item
 * that carries `line` (the Mixpanel record as it was, or would have been, sent)
 * is packed into envelopes exactly like intake does and sent to the events
 * queue, so the forwarder treats it like any other record. `$insert_id` and
 * `time` are unchanged: a record that did reach Mixpanel is deduplicated.
 *
 * Bookkeeping: replayed items move to replayed/<same key> (kept for
 * rejectedRetentionDays by lifecycle); items it did not replay (filtered out,
 * no `line`, expected drops, too large for one SQS message) stay in the
 * original object under rejected/. Running it twice is safe.
 *
 * Items without `line` never became a Mixpanel record (unparseable input): fix
 * the sender or mapper and have the sender resend; replay reports how many.
 *
 * Records Brevo refused (`destination: "brevo"`, lib/forwarder/brevo.ts) go back to the Brevo
 * queue instead, so fixing a Brevo attribute or a mapping never re-sends them to Mixpanel.
 * When the stage has no Brevo queue they stay in place (`left.noQueue`).
 */
import { createS3Client, createSqsClient } from "./aws/sdk-clients.js";
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListBucketsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { GetQueueUrlCommand, type SQSClient } from "@aws-sdk/client-sqs";
import type { SqsApi } from "../lib/aws/sqs.js";
import { packEnvelopesV2 } from "../lib/records/envelope-v2.js";
import { stringifyAnyDepth } from "../lib/util/deep-json.js";
import { type RejectedBatch, type RejectedItemRecord, rejectedBatchSchema } from "../lib/queue/rejected-store.js";
import { createQueueSender } from "../lib/queue/sqs-sender.js";
import { type Progress, type ProgressSink, createProgress } from "./progress.js";
import { UsageError, awsTargetOptions, parseArgs, parsePositiveInt, resolveAwsTarget, runWhenExecuted } from "./cli-args.js";
import { REJECTED_PREFIX, REPLAYED_PREFIX, queueName, rejectedBucketPrefix } from "./stack-layout.js";
import { parseJsonWith } from "../lib/util/json.js";

/** The queues' MaximumMessageSize (infra/resources/queues.yml). */
const SQS_MAX_MESSAGE_BYTES = 262_144;
const DATE = /^\d{4}-\d{2}-\d{2}$/;

export interface ReplayFilter {
  readonly source?: string;
  /** Inclusive bounds on the rejection date in the key (yyyy-mm-dd). */
  readonly since?: string;
  readonly until?: string;
  readonly code?: string;
  readonly includeDropped: boolean;
}

export interface ReplayOptions {
  readonly s3: S3Client;
  readonly sqs: SQSClient & SqsApi;
  readonly bucket: string;
  readonly queueUrl: string;
  /** The Brevo queue, for records Brevo refused; absent = leave them in place. */
  readonly brevoQueueUrl?: string | undefined;
  readonly filter: ReplayFilter;
  readonly maxObjects?: number;
  readonly dryRun: boolean;
  readonly now?: () => Date;
  readonly log?: (line: string) => void;
  /** Progress display over the matching objects (infra/progress.ts). */
  readonly progress?: (objects: number) => Progress;
}

export interface ReplaySummary {
  objectsScanned: number;
  objectsReplayed: number;
  itemsReplayed: number;
  messagesSent: number;
  /** Items left in rejected/, by why. */
  left: { filteredOut: number; noRecord: number; dropped: number; tooLarge: number; noQueue: number };
  /** Objects that are not a rejected batch (left alone, reported). */
  unreadable: string[];
  /** "N objects in T s (R/s)" when progress was shown. */
  timing?: string;
}

/** rejected/<source>/<yyyy-mm-dd>/<file>.json → its parts, or undefined for anything else. */
export function parseRejectedKey(key: string): { source: string; date: string } | undefined {
  if (!key.startsWith(REJECTED_PREFIX)) return undefined;
  const [source, date] = key.slice(REJECTED_PREFIX.length).split("/");
  if (!source || !date || !DATE.test(date)) return undefined;
  return { source, date };
}

function keyMatches(key: string, filter: ReplayFilter): boolean {
  const parts = parseRejectedKey(key);
  if (!parts) return false;
  if (filter.source && parts.source !== filter.source) return false;
  if (filter.since && parts.date < filter.since) return false;
  if (filter.until && parts.date > filter.until) return false;
  return true;
}

type ItemVerdict = "replay" | "filteredOut" | "noRecord" | "dropped";

/**
 * The Mixpanel record an item holds: `line`; or, for a record too large for the queue that an
 * intake before the shared enqueue step (lib/enqueue/enqueue.ts) stored as `payload`, that string.
 */
export function recordLine(item: RejectedItemRecord): string | undefined {
  if (item.line !== undefined) return item.line;
  return item.code === "record_too_large_for_queue" && typeof item.payload === "string" ? item.payload : undefined;
}

function judge(item: RejectedItemRecord, filter: ReplayFilter): ItemVerdict {
  if (filter.code && item.code !== filter.code) return "filteredOut";
  if (item.dropped && !filter.includeDropped) return "dropped";
  if (recordLine(item) === undefined) return "noRecord";
  return "replay";
}

export async function* listKeys(s3: S3Client, bucket: string, prefix: string): AsyncGenerator<string> {
  let token: string | undefined;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    for (const object of page.Contents ?? []) if (object.Key) yield object.Key;
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
}

export async function readBatch(s3: S3Client, bucket: string, key: string): Promise<RejectedBatch | undefined> {
  const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const text = (await object.Body?.transformToString("utf8")) ?? "";
  const parsed = parseJsonWith(rejectedBatchSchema, text);
  return parsed.success ? parsed.data : undefined;
}

async function putJson(s3: S3Client, bucket: string, key: string, body: unknown): Promise<void> {
  // Rejected payloads can nest deeper than JSON.stringify goes (lib/queue/rejected-store.ts serializeBatch).
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: stringifyAnyDepth(body), ContentType: "application/json" }));
}

export async function replayRejected(options: ReplayOptions): Promise<ReplaySummary> {
  const { s3, bucket, filter } = options;
  const log = options.log ?? (() => undefined);
  const now = options.now ?? (() => new Date());
  const sender = createQueueSender(options.sqs, SQS_MAX_MESSAGE_BYTES);
  const summary: ReplaySummary = {
    objectsScanned: 0,
    objectsReplayed: 0,
    itemsReplayed: 0,
    messagesSent: 0,
    left: { filteredOut: 0, noRecord: 0, dropped: 0, tooLarge: 0, noQueue: 0 },
    unreadable: [],
  };
  const prefix = filter.source ? `${REJECTED_PREFIX}${filter.source}/` : REJECTED_PREFIX;

  // Listed first (keys only) so progress has a total.
  const matching: string[] = [];
  for await (const key of listKeys(s3, bucket, prefix)) {
    if (options.maxObjects !== undefined && matching.length >= options.maxObjects) break;
    if (keyMatches(key, filter)) matching.push(key);
  }
  const progress = options.progress?.(matching.length);

  for (const key of matching) {
    progress?.advance(1);
    summary.objectsScanned++;
    const batch = await readBatch(s3, bucket, key);
    if (!batch) {
      summary.unreadable.push(key);
      continue;
    }

    const toReplay: RejectedItemRecord[] = [];
    const remaining: RejectedItemRecord[] = [];
    const targetQueue = batch.destination === "brevo" ? options.brevoQueueUrl : options.queueUrl;
    if (targetQueue === undefined) {
      summary.left.noQueue += batch.items.length;
      continue;
    }
    for (const item of batch.items) {
      const verdict = judge(item, filter);
      if (verdict === "replay") toReplay.push(item);
      else {
        summary.left[verdict]++;
        remaining.push(item);
      }
    }
    if (toReplay.length === 0) continue;

    const kind = batch.kind ?? "event";
    const correlationId = `${batch.correlationId}-replay`;
    const lines = toReplay.map((item) => recordLine(item) ?? "");
    const { bodies, oversizedIndexes } = packEnvelopesV2(kind, batch.source, correlationId, lines, { maxMessageBytes: SQS_MAX_MESSAGE_BYTES });
    const oversized = new Set(oversizedIndexes);
    const replayed = toReplay.filter((_, index) => !oversized.has(index));
    for (const index of oversizedIndexes) remaining.push(toReplay[index] as RejectedItemRecord);
    summary.left.tooLarge += oversizedIndexes.length;
    if (replayed.length === 0) continue;

    if (options.dryRun) {
      log(`would replay ${replayed.length} ${kind} record(s) from ${key} (${bodies.length} message(s))`);
    } else {
      await sender.send(targetQueue, bodies);
      // Record what was sent before touching the original, so a crash here means a
      // harmless second replay (Mixpanel dedupes on $insert_id), never a lost item.
      const replayedKey = `${REPLAYED_PREFIX}${key.slice(REJECTED_PREFIX.length)}`;
      await putJson(s3, bucket, replayedKey, { ...batch, items: replayed, replayedAt: now().toISOString(), replayCorrelationId: correlationId });
      if (remaining.length > 0) await putJson(s3, bucket, key, { ...batch, items: remaining });
      else await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
      log(`replayed ${replayed.length} ${kind} record(s) from ${key}${remaining.length > 0 ? `; ${remaining.length} left in place` : ""}`);
    }
    summary.objectsReplayed++;
    summary.itemsReplayed += replayed.length;
    summary.messagesSent += bodies.length;
  }
  const timing = progress?.finish();
  if (timing) summary.timing = timing;
  return summary;
}

/**
 * A stage bucket by its name prefix: `<prefix><account>` in AWS, the prefix
 * without its trailing dash in the local stack (mixpanel-relay-local-rejected).
 */
export async function findStageBucket(s3: S3Client, prefix: string): Promise<string> {
  const listed = await s3.send(new ListBucketsCommand({}));
  const names = (listed.Buckets ?? []).map((bucket) => bucket.Name ?? "").filter((name) => name === prefix.slice(0, -1) || name.startsWith(prefix));
  if (names.length !== 1) {
    throw new UsageError(`expected one bucket named ${prefix}<account>, found ${names.length === 0 ? "none" : names.join(", ")}: pass --bucket`);
  }
  return names[0] as string;
}

/** The stage's rejected bucket: mixpanel-relay-<stage>-rejected-<account> in AWS, -rejected in the local stack. */
export function findRejectedBucket(s3: S3Client, stage: string): Promise<string> {
  return findStageBucket(s3, rejectedBucketPrefix(stage));
}

const USAGE =
  "usage: npm run replay -- --stage <stage> [--source S] [--since YYYY-MM-DD] [--until YYYY-MM-DD] [--code C] [--include-dropped] [--max-objects N] [--dry-run] [--bucket B] [--region R] [--endpoint URL]";

export async function main(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
  log: (line: string) => void = console.log,
  progressSink?: ProgressSink,
): Promise<ReplaySummary | undefined> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      ...awsTargetOptions,
      source: { type: "string" },
      since: { type: "string" },
      until: { type: "string" },
      code: { type: "string" },
      "include-dropped": { type: "boolean" },
      "max-objects": { type: "string" },
      "dry-run": { type: "boolean" },
      bucket: { type: "string" },
    },
    strict: true,
  });
  if (values.help) {
    log(USAGE);
    return undefined;
  }
  const target = resolveAwsTarget(values, env);
  for (const flag of ["since", "until"] as const) {
    const value = values[flag];
    if (value !== undefined && !DATE.test(value)) throw new UsageError(`--${flag} must be YYYY-MM-DD, got "${value}"`);
  }
  const s3 = createS3Client(target.region, target.endpoint);
  const sqs = createSqsClient(target.region, target.endpoint);
  const bucket = values.bucket ?? (await findRejectedBucket(s3, target.stage));
  const queue = queueName(target.stage, "events");
  const queueUrl = (await sqs.send(new GetQueueUrlCommand({ QueueName: queue }))).QueueUrl;
  if (!queueUrl) throw new Error(`queue ${queue} not found`);
  // Optional: stages without the Brevo connector have no Brevo queue.
  const brevoQueueUrl = await sqs
    .send(new GetQueueUrlCommand({ QueueName: queueName(target.stage, "brevo") }))
    .then((found) => found.QueueUrl)
    .catch(() => undefined);
  const dryRun = values["dry-run"] ?? false;
  log(`${dryRun ? "dry run: " : ""}replay s3://${bucket}/${REJECTED_PREFIX} → ${queue} (${target.region}${target.endpoint ? ` via ${target.endpoint}` : ""})`);

  const summary = await replayRejected({
    s3,
    sqs,
    bucket,
    queueUrl,
    brevoQueueUrl,
    dryRun,
    maxObjects: parsePositiveInt(values["max-objects"], "--max-objects"),
    filter: {
      ...(values.source ? { source: values.source } : {}),
      ...(values.since ? { since: values.since } : {}),
      ...(values.until ? { until: values.until } : {}),
      ...(values.code ? { code: values.code } : {}),
      includeDropped: values["include-dropped"] ?? false,
    },
    log,
    progress: (objects) => createProgress({ unit: "objects", total: objects, ...(progressSink ? { sink: progressSink } : {}) }),
  });
  const { left } = summary;
  log(
    `${dryRun ? "would replay" : "replayed"} ${summary.itemsReplayed} record(s) from ${summary.objectsReplayed} of ${summary.objectsScanned} object(s) in ${summary.messagesSent} message(s); ` +
      `left in place: ${left.noRecord} never became a record (resend from the source), ${left.dropped} expected drops, ${left.filteredOut} filtered out, ${left.tooLarge} too large, ${left.noQueue} for a queue the stage does not have` +
      (summary.unreadable.length > 0 ? `; unreadable: ${summary.unreadable.join(", ")}` : "") +
      (summary.timing ? `; ${summary.timing}` : ""),
  );
  return summary;
}

runWhenExecuted(import.meta.url, "replay", USAGE, async () => void (await main(process.argv.slice(2))));
