/**
 * `npm run brevo:backfill -- --stage <stage> --from YYYY-MM-DD --to YYYY-MM-DD [--event NAME]…
 *   [--dry-run] [--resume] [--checkpoint FILE] [--batch-events N] [--requests-per-hour N]
 *   [--config FILE] [--region R] [--endpoint URL]`
 *
 * Sends the Brevo connector's past events from Mixpanel's raw export (lib/backfill/run.ts,
 * docs/brevo.md "History backfill"): one UTC day per export request, within the Export API's
 * limits, each event mapped by the Brevo forwarder's rules and put on the stage's Brevo queue, so
 * the brevo-forwarder sends it as it sends live events. A finished day is checkpointed; `--resume`
 * continues a stopped run from the first unfinished day. `--dry-run` maps and counts, queues nothing.
 *
 * Credentials: MIXPANEL_PROJECT_ID + MIXPANEL_SERVICE_ACCOUNT_USERNAME + MIXPANEL_SERVICE_ACCOUNT_SECRET,
 * else the stage's secret `mixpanel-relay/<stage>/mixpanel` (a service account is required).
 * MIXPANEL_EXPORT_URL overrides the residency's export host; `--stage local` uses the running
 * `npm start` sandbox. Exit status: 0 when every day was sent, 1 on a failure (finished days stay
 * checkpointed), 2 on a usage error.
 */
import { createHash } from "node:crypto";
import { resolve } from "node:path";
import { GetQueueUrlCommand } from "@aws-sdk/client-sqs";
import { type BackfillReport, daysBetween, formatBackfillReport, runBackfill } from "../lib/backfill/run.js";
import { readEnv } from "../lib/config/env.js";
import { loadStageConfig, stageConfigPath } from "../lib/config/stage.js";
import type { EnqueueDeps } from "../lib/enqueue/enqueue.js";
import { realRetryDeps } from "../lib/http/retry.js";
import { mixpanelCredentialsSource } from "../lib/mixpanel/credentials.js";
import { createExportClient, createExportPace } from "../lib/mixpanel/export.js";
import { exportBaseUrl } from "../lib/mixpanel/hosts.js";
import { piiPolicySource } from "../lib/pii/source.js";
import { cachedSuppression, readSuppressedDigests } from "../lib/privacy/suppression.js";
import { createRejectedStore } from "../lib/queue/rejected-store.js";
import { createQueueSender } from "../lib/queue/sqs-sender.js";
import { createSecretReader } from "../lib/secrets/secrets.js";
import { UsageError, awsTargetOptions, mixpanelOperatorEnv, parseArgs, parsePositiveInt, resolveAwsTarget, runWhenExecuted } from "./cli-args.js";
import { createS3Client, createSqsClient } from "./aws/sdk-clients.js";
import { findSnapshotBucket } from "./gdpr.js";
import { createProgress } from "./progress.js";
import { findRejectedBucket } from "./replay-rejected.js";
import { REJECTED_PREFIX, queueName } from "./stack-layout.js";

const USAGE =
  "usage: npm run brevo:backfill -- --stage <stage> --from YYYY-MM-DD --to YYYY-MM-DD [--event NAME]… [--dry-run] [--resume] [--checkpoint FILE] [--batch-events N] [--requests-per-hour N] [--config FILE] [--region R] [--endpoint URL]";

/**
 * Export API: 60 requests per hour and 3 per second per project
 * (https://docs.mixpanel.com/reference/rate-limits); by default a few of the hour's are left for
 * the project's other users.
 */
const DEFAULT_REQUESTS_PER_HOUR = 55;
const MAX_REQUESTS_PER_HOUR = 60;
const REQUESTS_PER_SECOND = 3;
const DEFAULT_BATCH_EVENTS = 2_000;
/** A day's answer can take minutes to start for a large project; silence mid-answer is shorter. */
const EXPORT_TIMEOUT_MS = 300_000;
const EXPORT_IDLE_TIMEOUT_MS = 120_000;
/** The erased-ids list is read again this often during a long run, as the functions do. */
const ERASED_LIST_TTL_MS = 300_000;

export async function main(argv: readonly string[], env: NodeJS.ProcessEnv = process.env, log: (line: string) => void = console.log): Promise<{ report: BackfillReport; exitCode: number } | undefined> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      ...awsTargetOptions,
      from: { type: "string" },
      to: { type: "string" },
      event: { type: "string", multiple: true },
      "dry-run": { type: "boolean" },
      resume: { type: "boolean" },
      checkpoint: { type: "string" },
      "batch-events": { type: "string" },
      "requests-per-hour": { type: "string" },
      config: { type: "string" },
      "progress-interval-ms": { type: "string" },
    },
    strict: true,
  });
  if (values.help) {
    log(USAGE);
    return undefined;
  }
  if (!values.from || !values.to) throw new UsageError("--from and --to are required (UTC days, YYYY-MM-DD)");
  const days = daysBetween(values.from, values.to);
  if (!Array.isArray(days)) throw new UsageError(days.error);
  const requestsPerHour = parsePositiveInt(values["requests-per-hour"], "--requests-per-hour") ?? DEFAULT_REQUESTS_PER_HOUR;
  if (requestsPerHour > MAX_REQUESTS_PER_HOUR) throw new UsageError(`--requests-per-hour is at most ${MAX_REQUESTS_PER_HOUR} (Mixpanel's Export API limit)`);
  const batchEvents = parsePositiveInt(values["batch-events"], "--batch-events") ?? DEFAULT_BATCH_EVENTS;
  const dryRun = values["dry-run"] ?? false;
  const events = values.event ? [...new Set(values.event)].sort() : undefined;

  const target = resolveAwsTarget(values, env);
  const config = loadStageConfig(values.config ?? stageConfigPath(target.stage), target.stage);
  const brevo = config.brevo;
  if (!brevo) throw new UsageError(`the ${target.stage} stage config has no brevo block: nothing to backfill`);
  if (!brevo.sync.events) throw new UsageError(`brevo.sync.events is off in the ${target.stage} stage config: the forwarder would send no event`);

  const operator = mixpanelOperatorEnv(target, env);
  const relayEnv = readEnv(operator.env);
  const exportUrl = env.MIXPANEL_EXPORT_URL ?? (operator.localMixpanelUrl ? `${operator.localMixpanelUrl}/api/2.0` : undefined);
  if (exportUrl !== undefined && !URL.canParse(exportUrl)) throw new UsageError(`MIXPANEL_EXPORT_URL is not a URL: "${exportUrl}"`);
  const secrets = createSecretReader({ region: target.region, ttlSeconds: 300, ...(env.SECRETS_ENDPOINT_URL ? { endpoint: env.SECRETS_ENDPOINT_URL } : {}) });
  const creds = await mixpanelCredentialsSource(relayEnv, secrets)();
  const { project_id: projectId, service_account_username: username, service_account_secret: secret } = creds;
  if (!projectId || !username || !secret) {
    throw new UsageError("the export needs a Mixpanel service account (project_id, service_account_username, service_account_secret)");
  }
  const policy = await piiPolicySource(config, { PII_HASH_KEY: env.PII_HASH_KEY }, secrets)();

  // The run's identity: the same stage, range and events resume the same checkpoint.
  const runKey = JSON.stringify({ stage: target.stage, from: values.from, to: values.to, events });
  const checkpointPath = values.checkpoint ?? resolve(".local", "backfill", `${target.stage}-${createHash("sha256").update(runKey).digest("hex").slice(0, 16)}.json`);

  const sqs = createSqsClient(target.region, target.endpoint);
  const s3 = createS3Client(target.region, target.endpoint);
  try {
    const snapshotBucket = await findSnapshotBucket(s3, target.stage);
    const erasedDigests = cachedSuppression(() => readSuppressedDigests(s3, snapshotBucket, Date.now()), ERASED_LIST_TTL_MS, Date.now);
    let enqueue: EnqueueDeps;
    if (dryRun) {
      const never = (what: string) => () => Promise.reject(new Error(`a dry run never uses the ${what}`));
      enqueue = { config, queue: { send: never("Brevo queue") }, brevoQueueUrl: "dry-run", rejected: { put: never("rejected store") }, maxMessageBytes: relayEnv.SQS_MAX_MESSAGE_BYTES, erasedDigests };
      log(`dry run: ${days.length} day(s) exported, mapped and counted, nothing queued`);
    } else {
      const queue = queueName(target.stage, "brevo");
      const brevoQueueUrl = (await sqs.send(new GetQueueUrlCommand({ QueueName: queue }))).QueueUrl;
      if (!brevoQueueUrl) throw new Error(`queue ${queue} not found`);
      const rejectedBucket = await findRejectedBucket(s3, target.stage);
      enqueue = {
        config,
        queue: createQueueSender(sqs, relayEnv.SQS_MAX_MESSAGE_BYTES),
        brevoQueueUrl,
        rejected: createRejectedStore({ s3, bucket: rejectedBucket, prefix: REJECTED_PREFIX, stage: target.stage, now: () => new Date() }),
        maxMessageBytes: relayEnv.SQS_MAX_MESSAGE_BYTES,
        erasedDigests,
      };
      log(`backfill ${values.from}..${values.to} (${days.length} day(s)${events ? `, events ${events.join(", ")}` : ""}) → ${queue}, rejections → s3://${rejectedBucket}/${REJECTED_PREFIX}; checkpoint ${checkpointPath}`);
    }

    const client = createExportClient({
      baseUrl: exportBaseUrl(config.residency, exportUrl),
      credentials: { projectId, username, secret },
      fetch: globalThis.fetch,
      timeoutMs: EXPORT_TIMEOUT_MS,
      idleTimeoutMs: EXPORT_IDLE_TIMEOUT_MS,
      pace: createExportPace({ perHour: requestsPerHour, perSecond: REQUESTS_PER_SECOND, now: Date.now, sleep: (ms) => new Promise((done) => setTimeout(done, ms)) }),
      retryDeps: realRetryDeps(),
      now: Date.now,
      onRetry: (error, delayMs) => log(`${error.message}: trying again in ${Math.round(delayMs / 1000)} s`),
    });

    let eventsRead = 0;
    let started = Date.now();
    let resumedDays = 0;
    // Made at the first day this run exports, so days an earlier run finished weigh on no rate or ETA.
    let progress: ReturnType<typeof createProgress> | undefined;
    const progressFor = () =>
      (progress ??= createProgress({
        unit: "days",
        total: days.length - resumedDays,
        eta: true,
        sink: { isTTY: process.stderr.isTTY === true, write: (text) => process.stderr.write(text) },
        ...(values["progress-interval-ms"] ? { intervalMs: parsePositiveInt(values["progress-interval-ms"], "--progress-interval-ms") } : {}),
        detail: () => `${eventsRead} events (${Math.round(eventsRead / Math.max((Date.now() - started) / 1000, 0.001))} events/s)`,
      }));
    let report: BackfillReport;
    try {
      report = await runBackfill(
        { days, events, dryRun, batchEvents, checkpointPath, resume: values.resume ?? false, runKey },
        {
          brevo,
          identityMode: config.identity_mode,
          policy,
          exportDay: (request) => client.day(request),
          enqueue,
          nowMs: Date.now,
          log,
          onProgress: (snapshot) => {
            if (snapshot.resumed) {
              resumedDays += 1;
              started = Date.now();
              return;
            }
            eventsRead = snapshot.eventsRead;
            progressFor().advance(snapshot.dayFinished ? 1 : 0);
          },
        },
      );
    } finally {
      progress?.finish();
    }
    for (const line of formatBackfillReport(report)) log(line);
    return { report, exitCode: 0 };
  } finally {
    sqs.destroy();
    s3.destroy();
  }
}

runWhenExecuted(import.meta.url, "brevo:backfill", USAGE, async () => (await main(process.argv.slice(2)))?.exitCode ?? 0);
