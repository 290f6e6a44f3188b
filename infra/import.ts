/**
 * `npm run import -- --stage <stage> <source>… [--format F] [--kind events|profiles|groups]
 *   [--source native|braze|adobe] [--map column=property]… [--via queue|direct] [--concurrency N] [--dry-run]
 *   [--from T] [--to T] [--event NAME]… [--exclude-event NAME]… [--resume] [--checkpoint FILE]
 *   [--batch-rows N] [--config FILE] [--region R] [--endpoint URL]`
 *
 * Imports history files (NDJSON, JSON, CSV, Parquet, Braze Currents Avro; gzipped or not;
 * local, `s3://bucket/prefix` or standard input) through the relay's own mappers and enqueue
 * step, so they meet the same rules as live traffic (lib/import/run.ts). Exit status: 0 when every file was read to the end, 3 when
 * some files failed (each named with its position in the report), 2 on a usage error.
 */
import { createHash } from "node:crypto";
import { resolve } from "node:path";
import { GetQueueUrlCommand } from "@aws-sdk/client-sqs";
import { SingleBar } from "cli-progress";
import { loadStageConfig, stageConfigPath } from "../lib/config/stage.js";
import { createRejectedStore } from "../lib/queue/rejected-store.js";
import { createQueueSender } from "../lib/queue/sqs-sender.js";
import { piiPolicySource } from "../lib/pii/source.js";
import { createSecretReader } from "../lib/secrets/secrets.js";
import { realRetryDeps } from "../lib/http/retry.js";
import { mixpanelCredentialsSource } from "../lib/mixpanel/credentials.js";
import { ingestionBaseUrl } from "../lib/mixpanel/hosts.js";
import { IMPORT_MAX_RECORDS, createIngestionClient } from "../lib/mixpanel/ingestion.js";
import { MIXPANEL_IMPORT_BYTES_PER_MINUTE, ROLLING_WINDOW_MS, rollingByteBudget } from "../lib/import/byte-budget.js";
import { directSender } from "../lib/import/direct.js";
import { EVENT_SOURCES, type EventSource, IMPORT_KINDS, type ImportKind } from "../lib/import/map-rows.js";
import { IMPORT_FORMATS, type ImportFormat } from "../lib/import/read-rows.js";
import { type ImportProgress, type ImportReport, formatReport, runImport } from "../lib/import/run.js";
import { S3ListingError, isS3Source, resolveSources, type S3SourceApi } from "../lib/import/sources.js";
import { type CheckpointStore, fileCheckpointStore, s3CheckpointStore } from "../lib/import/checkpoint.js";
import { createS3, createS3ObjectStreams } from "../lib/aws/s3.js";
import { createS3Bucket } from "../lib/aws/s3-bucket.js";
import { createS3Client, createSqsClient } from "./aws/sdk-clients.js";
import { UsageError, awsTargetOptions, parseArgs, parsePositiveInt, resolveAwsTarget, runWhenExecuted } from "./cli-args.js";
import { findRejectedBucket } from "./replay-rejected.js";
import { REJECTED_PREFIX, queueName } from "./stack-layout.js";

/** The queues' MaximumMessageSize (infra/resources/queues.yml). */
const SQS_MAX_MESSAGE_BYTES = 262_144;
const DEFAULT_BATCH_ROWS = 2_000;
/** `--via direct`: requests in flight (the forwarder's IMPORT_CONCURRENCY allows at most 10). */
const DEFAULT_DIRECT_CONCURRENCY = 10;
const MAX_DIRECT_CONCURRENCY = 10;
/** /import takes 10 MB uncompressed per request (docs/vendors/mixpanel-api.md §3). */
const DIRECT_MAX_BYTES = 10_000_000;
const DIRECT_TIMEOUT_MS = 15_000;
/** Checkpoints of runs that read S3 sources, in the stage's rejected bucket (outside its expiring `rejected/` and `replayed/` prefixes). */
export const IMPORT_CHECKPOINT_PREFIX = "import-checkpoints/";
/** Exit status when the run finished but some files could not be read to the end. */
export const SOME_FILES_FAILED = 3;

const USAGE =
  "usage: npm run import -- --stage <stage> <file|glob|folder|s3://bucket/prefix|->… [--format ndjson|json|csv|parquet|braze-avro] [--kind events|profiles|groups] [--source native|braze|adobe] [--map column=property]… [--via queue|direct] [--concurrency N] [--dry-run] [--from TIME] [--to TIME] [--event NAME]… [--exclude-event NAME]… [--resume] [--checkpoint FILE] [--batch-rows N] [--config FILE] [--region R] [--endpoint URL]";

function oneOf<T extends string>(value: string | undefined, allowed: readonly T[], flag: string, fallback: T): T {
  if (value === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(value)) throw new UsageError(`${flag} must be one of ${allowed.join(", ")}, got "${value}"`);
  return value as T;
}

/** `--from` / `--to`: ISO 8601, or seconds / ms since the epoch. */
export function parseTime(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  if (/^\d+$/.test(value)) {
    const number = Number(value);
    return number < 1e11 ? number * 1000 : number;
  }
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw new UsageError(`${flag} must be an ISO 8601 date or seconds since the epoch, got "${value}"`);
  return ms;
}

function parseColumnMap(values: readonly string[] | undefined): Record<string, string> {
  const map: Record<string, string> = {};
  for (const entry of values ?? []) {
    const at = entry.indexOf("=");
    if (at <= 0 || at === entry.length - 1) throw new UsageError(`--map takes column=property, got "${entry}"`);
    Object.defineProperty(map, entry.slice(0, at), { value: entry.slice(at + 1), enumerable: true, writable: true, configurable: true });
  }
  return map;
}

/** A bar on a terminal; a plain line every `intervalMs` otherwise (CI logs, `| tee`). */
function progressReporter(tty: boolean, totalFiles: number, log: (line: string) => void, intervalMs = 5_000) {
  const started = Date.now();
  if (tty) {
    const bar = new SingleBar({
      format: "files {filesDone}/{filesTotal} | {value} rows | {rate} rows/s | {mb} MB read",
      stream: process.stderr,
      hideCursor: true,
      noTTYOutput: false,
    });
    bar.start(Number.MAX_SAFE_INTEGER, 0, { filesDone: 0, filesTotal: totalFiles, rate: 0, mb: "0.0" });
    return {
      update(progress: ImportProgress) {
        const rate = Math.round(progress.rowsRead / Math.max((Date.now() - started) / 1000, 0.001));
        bar.update(progress.rowsRead, { filesDone: progress.filesDone, filesTotal: progress.filesTotal, rate, mb: (progress.bytesRead / 1e6).toFixed(1) });
      },
      stop: () => bar.stop(),
    };
  }
  let last = started;
  return {
    update(progress: ImportProgress) {
      const now = Date.now();
      if (now - last < intervalMs && progress.filesDone < progress.filesTotal) return;
      last = now;
      const rate = Math.round(progress.rowsRead / Math.max((now - started) / 1000, 0.001));
      log(`progress: files ${progress.filesDone}/${progress.filesTotal}, ${progress.rowsRead} rows, ${rate} rows/s, ${(progress.bytesRead / 1e6).toFixed(1)} MB read`);
    },
    stop: () => undefined,
  };
}

export async function main(argv: readonly string[], env: NodeJS.ProcessEnv = process.env, log: (line: string) => void = console.log): Promise<{ report: ImportReport; exitCode: number } | undefined> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    options: {
      ...awsTargetOptions,
      format: { type: "string" },
      kind: { type: "string" },
      source: { type: "string" },
      map: { type: "string", multiple: true },
      via: { type: "string" },
      "dry-run": { type: "boolean" },
      from: { type: "string" },
      to: { type: "string" },
      event: { type: "string", multiple: true },
      "exclude-event": { type: "string", multiple: true },
      resume: { type: "boolean" },
      checkpoint: { type: "string" },
      "batch-rows": { type: "string" },
      config: { type: "string" },
      "progress-interval-ms": { type: "string" },
      concurrency: { type: "string" },
    },
    allowPositionals: true,
    strict: true,
  });
  if (values.help) {
    log(USAGE);
    return undefined;
  }
  if (positionals.length === 0) throw new UsageError("name at least one source: a file, a glob, a folder or - for standard input");
  const via = oneOf(values.via, ["queue", "direct"] as const, "--via", "queue");
  const concurrency = parsePositiveInt(values.concurrency, "--concurrency") ?? DEFAULT_DIRECT_CONCURRENCY;
  if (concurrency > MAX_DIRECT_CONCURRENCY) throw new UsageError(`--concurrency is at most ${MAX_DIRECT_CONCURRENCY}`);
  const format = values.format === undefined ? undefined : oneOf<ImportFormat>(values.format, IMPORT_FORMATS, "--format", "ndjson");
  const kind = oneOf<ImportKind>(values.kind, IMPORT_KINDS, "--kind", "events");
  const source = oneOf<EventSource>(values.source, EVENT_SOURCES, "--source", "native");
  const columns = parseColumnMap(values.map);
  const fromMs = parseTime(values.from, "--from");
  const toMs = parseTime(values.to, "--to");
  const dryRun = values["dry-run"] ?? false;
  // Direct: one /import request per batch and `concurrency` batches in flight, so a request that
  // ends is replaced at once (not when the slowest of a group ends); each batch's own requests go
  // one at a time, so no more than `concurrency` are ever in flight.
  const batchRows = parsePositiveInt(values["batch-rows"], "--batch-rows") ?? (via === "direct" ? IMPORT_MAX_RECORDS : DEFAULT_BATCH_ROWS);
  const inFlightBatches = via === "direct" ? concurrency : 1;

  const target = resolveAwsTarget(values, env);
  const config = loadStageConfig(stageConfigPath(target.stage, values.config), target.stage);
  const readsS3 = positionals.some(isS3Source);
  // S3 sources are read with the stage's AWS credentials through the functions' own S3 client.
  const s3Sources: S3SourceApi | undefined = readsS3
    ? { listObjectsV2: createS3Bucket(target, createS3(target)).listObjectsV2, openObject: createS3ObjectStreams(target).openObject }
    : undefined;
  const files = await resolveSources(positionals, format, s3Sources).catch((error: unknown) => {
    if (error instanceof S3ListingError) throw error;
    throw new UsageError(error instanceof Error ? error.message : String(error));
  });

  // The run's identity: the same sources and options resume the same checkpoint.
  const runKey = JSON.stringify({
    stage: target.stage,
    files: files.map((file) => (file.ref.kind === "local" ? resolve(file.ref.path) : file.ref.path)),
    format,
    kind,
    source,
    columns,
    fromMs,
    toMs,
    event: values.event,
    exclude: values["exclude-event"],
    via,
  });
  const runHash = createHash("sha256").update(runKey).digest("hex").slice(0, 16);
  const resumable = !files.some((file) => file.ref.kind === "stdin") || values.checkpoint !== undefined;
  if (values.resume && !resumable) throw new UsageError("--resume needs a checkpoint: standard input cannot be resumed");

  const secrets = createSecretReader({ region: target.region, ttlSeconds: 300, ...(env.SECRETS_ENDPOINT_URL ? { endpoint: env.SECRETS_ENDPOINT_URL } : {}) });
  const policy = await piiPolicySource(config, { PII_HASH_KEY: env.PII_HASH_KEY }, secrets)();

  const sqs = createSqsClient(target.region, target.endpoint);
  const s3 = createS3Client(target.region, target.endpoint);
  try {
    // Beside the run for local files; in the stage's bucket when a source is in S3 (a dry run writes none).
    let checkpoint: CheckpointStore | undefined;
    if (values.checkpoint !== undefined) checkpoint = fileCheckpointStore(values.checkpoint);
    else if (!resumable) checkpoint = undefined;
    else if (readsS3 && !dryRun) checkpoint = s3CheckpointStore(s3, await findRejectedBucket(s3, target.stage), `${IMPORT_CHECKPOINT_PREFIX}${target.stage}-${runHash}.json`);
    else if (!readsS3) checkpoint = fileCheckpointStore(resolve(".import", `${target.stage}-${runHash}.json`));
    const checkpointPath = checkpoint?.where;
    let enqueue;
    let sendBatch;
    if (!dryRun && via === "direct") {
      const bucket = await findRejectedBucket(s3, target.stage);
      const client = createIngestionClient({
        fetch: globalThis.fetch,
        baseUrl: ingestionBaseUrl(config.residency, env.MIXPANEL_API_URL),
        credentials: mixpanelCredentialsSource(env, secrets),
        importMaxBytes: DIRECT_MAX_BYTES,
        concurrency: 1,
        timeoutMs: DIRECT_TIMEOUT_MS,
        retryDeps: realRetryDeps(),
        nowMs: Date.now,
        onRetry: (endpoint, error, delayMs) => log(`Mixpanel ${endpoint} answered ${error.status}: retrying in ${Math.round(delayMs)} ms`),
      });
      const importBudget = rollingByteBudget(MIXPANEL_IMPORT_BYTES_PER_MINUTE, ROLLING_WINDOW_MS, {
        nowMs: Date.now,
        sleep: (ms) => new Promise((done) => setTimeout(done, ms)),
        onWait: (waitMs, spentBytes) => log(`Mixpanel's /import limit: ${(spentBytes / 1e9).toFixed(2)} GB sent in the last minute, waiting ${Math.ceil(waitMs / 1000)} s`),
      });
      sendBatch = directSender({ client, importBudget, rejected: createRejectedStore({ s3, bucket, prefix: REJECTED_PREFIX, stage: target.stage, now: () => new Date() }) });
      log(`import ${files.length} file(s) → Mixpanel /import (strict, ${concurrency} requests in flight), rejections → s3://${bucket}/${REJECTED_PREFIX}; checkpoint ${checkpointPath ?? "none"}`);
    } else if (!dryRun) {
      const queue = queueName(target.stage, "events");
      const queueUrl = (await sqs.send(new GetQueueUrlCommand({ QueueName: queue }))).QueueUrl;
      if (!queueUrl) throw new Error(`queue ${queue} not found`);
      const sync = config.brevo?.sync;
      const brevoQueueUrl =
        sync && (sync.events || sync.profiles || sync.groups) ? (await sqs.send(new GetQueueUrlCommand({ QueueName: queueName(target.stage, "brevo") }))).QueueUrl : undefined;
      const bucket = await findRejectedBucket(s3, target.stage);
      enqueue = {
        config,
        queue: createQueueSender(sqs, SQS_MAX_MESSAGE_BYTES),
        queueUrl,
        brevoQueueUrl,
        rejected: createRejectedStore({ s3, bucket, prefix: REJECTED_PREFIX, stage: target.stage, now: () => new Date() }),
        maxMessageBytes: SQS_MAX_MESSAGE_BYTES,
      };
      log(`import ${files.length} file(s) → ${queue}${brevoQueueUrl ? " (+ Brevo fan-out)" : ""}, rejections → s3://${bucket}/${REJECTED_PREFIX}; checkpoint ${checkpointPath ?? "none"}`);
    } else {
      log(`dry run: ${files.length} file(s) validated and mapped, nothing sent`);
    }
    const progress = progressReporter(process.stderr.isTTY === true, files.length, log, parsePositiveInt(values["progress-interval-ms"], "--progress-interval-ms"));
    let report: ImportReport;
    try {
      report = await runImport(
        {
          files,
          kind,
          source,
          columns,
          filter: {
            ...(fromMs !== undefined ? { fromMs } : {}),
            ...(toMs !== undefined ? { toMs } : {}),
            ...(values.event ? { include: new Set(values.event) } : {}),
            ...(values["exclude-event"] ? { exclude: new Set(values["exclude-event"]) } : {}),
          },
          dryRun,
          batchRows,
          inFlightBatches,
          checkpoint,
          resume: values.resume ?? false,
          runKey,
        },
        { config, policy, enqueue, sendBatch, nowMs: Date.now, log, onProgress: (snapshot) => progress.update(snapshot) },
      );
    } finally {
      progress.stop();
    }
    for (const line of formatReport(report)) log(line);
    return { report, exitCode: report.failedFiles.length > 0 ? SOME_FILES_FAILED : 0 };
  } finally {
    sqs.destroy();
    s3.destroy();
  }
}

runWhenExecuted(import.meta.url, "import", USAGE, async () => (await main(process.argv.slice(2)))?.exitCode ?? 0);
