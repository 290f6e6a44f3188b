/**
 * `npm run status -- --stage <stage> [--json] [--days N] [--max-objects N] [--region R] [--endpoint URL]`
 *
 * One screen on a stage's health: every queue's depth and oldest message (events,
 * deliveries, any other queue of the stage such as Brevo's, and their DLQs), the
 * rejected store counted by source, code and day, every cohort sync's state (last
 * run, next due, health and why), and the alarms that fired recently. `--json`
 * prints the same report for scripts. `--stage local` reads the running `npm start`.
 *
 * Read-only: it lists and reads, never receives from a queue or writes.
 */
import { CloudWatchClient, DescribeAlarmsCommand, GetMetricDataCommand } from "@aws-sdk/client-cloudwatch";
import type { S3Client } from "@aws-sdk/client-s3";
import type { S3BucketApi } from "../lib/aws/s3-bucket.js";
import { GetQueueAttributesCommand, ListQueuesCommand, type SQSClient } from "@aws-sdk/client-sqs";
import { createCohortStore } from "../lib/cohorts/store.js";
import { rateToMs } from "../lib/config/cohort-syncs.js";
import { createQueryStore } from "../lib/queries/store.js";
import { createLookupStore } from "../lib/lookup/store.js";
import { loadStageConfig, stageConfigPath } from "../lib/config/stage.js";
import { type AwsTarget, awsTargetOptions, parseArgs, resolveAwsTarget, scanLimits, runWhenExecuted, withStageClients } from "./cli-args.js";
import { findRejectedBucket, findStageBucket, listKeys, parseRejectedKey, readBatch } from "./replay-rejected.js";
import { REJECTED_PREFIX, SERVICE_NAME, dashboardUrl, queueNamePrefix, snapshotBucketPrefix } from "./stack-layout.js";

export interface QueueStatus {
  readonly name: string;
  /** Messages waiting, being processed, and delayed (re-queued records wait here). */
  readonly visible: number;
  readonly inFlight: number;
  readonly delayed: number;
  /** ApproximateAgeOfOldestMessage from CloudWatch (AWS only; absent locally or without data). */
  readonly oldestAgeSeconds?: number;
  readonly deadLetter: boolean;
}

export interface RejectedCount {
  readonly source: string;
  readonly code: string;
  readonly day: string;
  readonly items: number;
}

export interface CohortSyncStatus {
  readonly id: string;
  readonly destination: string;
  readonly schedule: string;
  readonly lastRun?: string;
  readonly nextDue: string;
  readonly healthy: boolean;
  readonly reason?: string;
  /** exporting (fetching pages), delivering (pages queued), or idle. */
  readonly phase: "idle" | "exporting" | "delivering";
  readonly error?: string;
}

export interface AlarmStatus {
  readonly name: string;
  readonly state: string;
  readonly since: string;
  readonly reason: string;
}

export interface QuerySyncStatus {
  readonly id: string;
  readonly destination: string;
  readonly schedule: string;
  readonly enabled: boolean;
  readonly lastStarted?: string;
  /** The last run's outcome and counts (rows read / sent / unchanged / rejected / not delivered). */
  readonly lastRun?: { outcome: string; rows_read: number; sent: number; unchanged: number; rejected: number; not_delivered: number; detail?: string };
  readonly error?: string;
}

export interface LookupTableStatus {
  readonly id: string;
  readonly tableId: string;
  readonly schedule: string;
  /** When the file was last looked at, and what came of it (replaced, unchanged, refused…). */
  readonly checkedAt?: string;
  readonly lastOutcome?: string;
  readonly lastDetail?: string;
  readonly replacedAt?: string;
  readonly replacedRows?: number;
  readonly error?: string;
}

export interface StatusReport {
  readonly stage: string;
  readonly region: string;
  readonly endpoint?: string;
  /** The stage's CloudWatch dashboard; absent for the local stack, which has none. */
  readonly dashboardUrl?: string;
  readonly generatedAt: string;
  readonly queues: QueueStatus[];
  readonly rejected: { readonly since: string; readonly counts: RejectedCount[]; readonly objectsRead: number; readonly truncated: boolean; readonly error?: string };
  readonly cohorts: CohortSyncStatus[];
  /** Query extracts: the last run of each (absent when the stage has none). */
  readonly querySyncs?: QuerySyncStatus[];
  /** Lookup tables: each one's last check (absent when the stage has none). */
  readonly lookupTables?: LookupTableStatus[];
  /** Alarms in ALARM now or changed state in the last 24 h; a string when they could not be read. */
  readonly alarms: AlarmStatus[] | string;
}

export interface StatusDeps {
  readonly target: AwsTarget;
  readonly sqs: SQSClient;
  readonly s3: S3Client & S3BucketApi;
  /** Absent for the local stack (no CloudWatch there). */
  readonly cloudwatch?: CloudWatchClient;
  readonly now: () => Date;
  /** Rejected-store window in days (default 7) and read cap (default 500 objects). */
  readonly days?: number;
  readonly maxObjects?: number;
  readonly configPath?: string;
}

const DAY_MS = 86_400_000;
const errorText = (error: unknown) => (error instanceof Error ? `${error.name}: ${error.message}` : String(error));

async function queueStatuses(deps: StatusDeps): Promise<QueueStatus[]> {
  const { sqs, target } = deps;
  const urls: string[] = [];
  let token: string | undefined;
  do {
    const page = await sqs.send(new ListQueuesCommand({ QueueNamePrefix: queueNamePrefix(target.stage), NextToken: token, MaxResults: 100 }));
    urls.push(...(page.QueueUrls ?? []));
    token = page.NextToken;
  } while (token);
  const queues = await Promise.all(
    urls.map(async (url) => {
      const { Attributes: a = {} } = await sqs.send(
        new GetQueueAttributesCommand({
          QueueUrl: url,
          AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"],
        }),
      );
      const name = url.slice(url.lastIndexOf("/") + 1);
      return {
        name,
        visible: Number(a.ApproximateNumberOfMessages ?? 0),
        inFlight: Number(a.ApproximateNumberOfMessagesNotVisible ?? 0),
        delayed: Number(a.ApproximateNumberOfMessagesDelayed ?? 0),
        deadLetter: name.endsWith("-dlq") || name.endsWith("-failures"),
      };
    }),
  );
  queues.sort((a, b) => a.name.localeCompare(b.name));
  if (!deps.cloudwatch || queues.length === 0) return queues;
  // SQS has no "oldest message" attribute; CloudWatch's per-queue metric is the source.
  const end = deps.now();
  const data = await deps.cloudwatch.send(
    new GetMetricDataCommand({
      StartTime: new Date(end.getTime() - 15 * 60_000),
      EndTime: end,
      MetricDataQueries: queues.map((queue, index) => ({
        Id: `q${index}`,
        MetricStat: {
          Metric: { Namespace: "AWS/SQS", MetricName: "ApproximateAgeOfOldestMessage", Dimensions: [{ Name: "QueueName", Value: queue.name }] },
          Period: 300,
          Stat: "Maximum",
        },
      })),
    }),
  );
  const ages = new Map((data.MetricDataResults ?? []).map((result) => [result.Id, result.Values?.[0]]));
  return queues.map((queue, index) => {
    const age = ages.get(`q${index}`);
    return age === undefined ? queue : { ...queue, oldestAgeSeconds: age };
  });
}

async function rejectedCounts(deps: StatusDeps): Promise<StatusReport["rejected"]> {
  const since = new Date(deps.now().getTime() - (deps.days ?? 7) * DAY_MS).toISOString().slice(0, 10);
  const maxObjects = deps.maxObjects ?? 500;
  let bucket: string;
  try {
    bucket = await findRejectedBucket(deps.s3, deps.target.stage);
  } catch (error) {
    return { since, counts: [], objectsRead: 0, truncated: false, error: errorText(error) };
  }
  const counts = new Map<string, RejectedCount>();
  let objectsRead = 0;
  let truncated = false;
  for await (const key of listKeys(deps.s3, bucket, REJECTED_PREFIX)) {
    const parts = parseRejectedKey(key);
    if (!parts || parts.date < since) continue;
    if (objectsRead >= maxObjects) {
      truncated = true;
      break;
    }
    objectsRead++;
    const batch = await readBatch(deps.s3, bucket, key);
    const items = batch?.items ?? [];
    const byCode = new Map<string, number>();
    for (const item of items) byCode.set(item.code, (byCode.get(item.code) ?? 0) + 1);
    if (!batch) byCode.set("(unreadable object)", 1);
    for (const [code, n] of byCode) {
      const id = `${parts.source}\u0000${code}\u0000${parts.date}`;
      const entry = counts.get(id) ?? { source: parts.source, code, day: parts.date, items: 0 };
      counts.set(id, { ...entry, items: entry.items + n });
    }
  }
  const sorted = [...counts.values()].sort((a, b) => b.day.localeCompare(a.day) || a.source.localeCompare(b.source) || a.code.localeCompare(b.code));
  return { since, counts: sorted, objectsRead, truncated };
}

async function cohortStatuses(deps: StatusDeps): Promise<CohortSyncStatus[]> {
  const config = loadStageConfig(deps.configPath ?? stageConfigPath(deps.target.stage), deps.target.stage);
  if (config.cohort_syncs.length === 0) return [];
  let store: ReturnType<typeof createCohortStore> | undefined;
  let storeError: string | undefined;
  try {
    store = createCohortStore(deps.s3, await findStageBucket(deps.s3, snapshotBucketPrefix(deps.target.stage)));
  } catch (error) {
    storeError = errorText(error);
  }
  const nowMs = deps.now().getTime();
  return Promise.all(
    config.cohort_syncs.map(async (sync): Promise<CohortSyncStatus> => {
      const base = { id: sync.id, destination: sync.destination.type, schedule: sync.schedule };
      if (!store) return { ...base, nextDue: "?", healthy: false, phase: "idle", error: storeError ?? "no snapshot bucket" };
      try {
        const state = await store.readState(sync.id);
        // The same rule as the export's isDue (lib/cohorts/export.ts): due one interval after the last start.
        const interval = rateToMs(sync.schedule) ?? 1_800_000;
        const last = state.last_started_at ? Date.parse(state.last_started_at) : undefined;
        const nextDue = last === undefined || last + interval <= nowMs ? "now" : new Date(last + interval).toISOString();
        return {
          ...base,
          ...(state.last_started_at ? { lastRun: state.last_started_at } : {}),
          nextDue,
          healthy: state.healthy,
          ...(state.unhealthy_reason ? { reason: state.unhealthy_reason } : {}),
          phase: state.export ? "exporting" : state.delivery ? "delivering" : "idle",
        };
      } catch (error) {
        return { ...base, nextDue: "?", healthy: false, phase: "idle", error: errorText(error) };
      }
    }),
  );
}

/**
 * Each configured item's status from its state in the snapshot bucket: `base` always, `read`'s
 * fields when its state could be read, an `error` (the bucket's or the item's) otherwise.
 */
async function statesOf<Item, Store, Base extends object, Status>(
  deps: StatusDeps,
  items: readonly Item[],
  openStore: (bucket: string) => Store,
  base: (item: Item) => Base,
  read: (store: Store, item: Item) => Promise<Omit<Status, keyof Base>>,
): Promise<(Base & (Omit<Status, keyof Base> | { error: string }))[]> {
  if (items.length === 0) return [];
  let store: Store | undefined;
  let storeError = "no snapshot bucket";
  try {
    store = openStore(await findStageBucket(deps.s3, snapshotBucketPrefix(deps.target.stage)));
  } catch (error) {
    storeError = errorText(error);
  }
  return Promise.all(
    items.map(async (item) => {
      if (store === undefined) return { ...base(item), error: storeError };
      try {
        return { ...base(item), ...(await read(store, item)) };
      } catch (error) {
        return { ...base(item), error: errorText(error) };
      }
    }),
  );
}

async function querySyncStatuses(deps: StatusDeps): Promise<QuerySyncStatus[]> {
  const config = loadStageConfig(deps.configPath ?? stageConfigPath(deps.target.stage), deps.target.stage);
  return statesOf(
    deps,
    config.query_syncs,
    (bucket) => createQueryStore(createCohortStore(deps.s3, bucket)),
    (sync) => ({ id: sync.id, destination: sync.destination.type, schedule: sync.schedule, enabled: sync.enabled }),
    async (store, sync): Promise<Pick<QuerySyncStatus, "lastStarted" | "lastRun">> => {
      const state = await store.readState(sync.id);
      const run = state.last_run;
      return {
        ...(state.last_started_at ? { lastStarted: state.last_started_at } : {}),
        ...(run
          ? {
              lastRun: {
                outcome: run.outcome,
                rows_read: run.rows_read,
                sent: run.sent,
                unchanged: run.unchanged,
                rejected: run.rejected,
                not_delivered: run.not_delivered,
                ...(run.detail ? { detail: run.detail } : {}),
              },
            }
          : {}),
      };
    },
  );
}

async function lookupTableStatuses(deps: StatusDeps): Promise<LookupTableStatus[]> {
  const config = loadStageConfig(deps.configPath ?? stageConfigPath(deps.target.stage), deps.target.stage);
  return statesOf(
    deps,
    config.lookup_tables,
    (bucket) => createLookupStore(deps.s3, bucket),
    (table) => ({ id: table.id, tableId: table.table_id, schedule: table.schedule }),
    async (store, table): Promise<Omit<LookupTableStatus, "id" | "tableId" | "schedule" | "error">> => {
      const state = await store.readState(table.id);
      return {
        ...(state.checked_at ? { checkedAt: state.checked_at } : {}),
        ...(state.last_outcome ? { lastOutcome: state.last_outcome } : {}),
        ...(state.last_detail ? { lastDetail: state.last_detail } : {}),
        ...(state.replaced_at ? { replacedAt: state.replaced_at } : {}),
        ...(state.replaced_rows !== undefined ? { replacedRows: state.replaced_rows } : {}),
      };
    },
  );
}

async function recentAlarms(deps: StatusDeps): Promise<StatusReport["alarms"]> {
  if (!deps.cloudwatch) return "the local stack has no CloudWatch alarms";
  const cutoff = deps.now().getTime() - DAY_MS;
  const alarms: AlarmStatus[] = [];
  let token: string | undefined;
  try {
    do {
      const page = await deps.cloudwatch.send(new DescribeAlarmsCommand({ AlarmNamePrefix: `${SERVICE_NAME}-${deps.target.stage}-`, NextToken: token }));
      for (const alarm of [...(page.MetricAlarms ?? []), ...(page.CompositeAlarms ?? [])]) {
        const since = alarm.StateUpdatedTimestamp?.getTime() ?? 0;
        if (alarm.StateValue === "ALARM" || since >= cutoff) {
          alarms.push({
            name: alarm.AlarmName ?? "",
            state: alarm.StateValue ?? "",
            since: since ? new Date(since).toISOString() : "",
            reason: alarm.StateReason ?? "",
          });
        }
      }
      token = page.NextToken;
    } while (token);
  } catch (error) {
    return `could not read alarms: ${errorText(error)}`;
  }
  return alarms.sort((a, b) => (a.state === b.state ? b.since.localeCompare(a.since) : a.state === "ALARM" ? -1 : 1));
}

export async function collectStatus(deps: StatusDeps): Promise<StatusReport> {
  const [queues, rejected, cohorts, querySyncs, lookupTables, alarms] = await Promise.all([
    queueStatuses(deps),
    rejectedCounts(deps),
    cohortStatuses(deps),
    querySyncStatuses(deps),
    lookupTableStatuses(deps),
    recentAlarms(deps),
  ]);
  return {
    stage: deps.target.stage,
    region: deps.target.region,
    ...(deps.target.endpoint ? { endpoint: deps.target.endpoint } : {}),
    ...(deps.target.local ? {} : { dashboardUrl: dashboardUrl(deps.target.stage, deps.target.region) }),
    generatedAt: deps.now().toISOString(),
    queues,
    rejected,
    cohorts,
    ...(querySyncs.length > 0 ? { querySyncs } : {}),
    ...(lookupTables.length > 0 ? { lookupTables } : {}),
    alarms,
  };
}

/** Left-aligned columns separated by two spaces. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((header, column) => Math.max(header.length, ...rows.map((row) => (row[column] ?? "").length)));
  const line = (cells: readonly string[]) => cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join("  ").trimEnd();
  return [line(headers), line(widths.map((width) => "-".repeat(width))), ...rows.map(line)].join("\n");
}

function age(seconds: number | undefined): string {
  if (seconds === undefined) return "-";
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

export function renderStatus(report: StatusReport): string {
  const out: string[] = [];
  out.push(`mixpanel-relay ${report.stage} (${report.region}${report.endpoint ? ` via ${report.endpoint}` : ""}) at ${report.generatedAt}`);
  if (report.dashboardUrl) out.push(`Dashboard: ${report.dashboardUrl}`);
  out.push("", "Queues");
  out.push(
    report.queues.length === 0
      ? `  no queues named ${queueNamePrefix(report.stage)}* (is the stage deployed in this region?)`
      : table(
          ["queue", "waiting", "in flight", "delayed", "oldest", ""],
          report.queues.map((q) => [
            q.name,
            String(q.visible),
            String(q.inFlight),
            String(q.delayed),
            age(q.oldestAgeSeconds),
            q.deadLetter && q.visible + q.inFlight > 0 ? "<- dead letters: fix the cause, then npm run redrive" : "",
          ]),
        ),
  );
  const { rejected } = report;
  out.push("", `Rejected store since ${rejected.since} (${rejected.objectsRead} object(s) read${rejected.truncated ? ", more not read: raise --max-objects" : ""})`);
  if (rejected.error) out.push(`  could not read: ${rejected.error}`);
  else if (rejected.counts.length === 0) out.push("  nothing rejected");
  else out.push(table(["day", "source", "code", "items"], rejected.counts.map((c) => [c.day, c.source, c.code, String(c.items)])));
  out.push("", "Cohort syncs");
  if (report.cohorts.length === 0) out.push("  none configured");
  else
    out.push(
      table(
        ["sync", "destination", "schedule", "last run", "next due", "health", "phase"],
        report.cohorts.map((c) => [
          c.id,
          c.destination,
          c.schedule,
          c.lastRun ?? "never",
          c.nextDue,
          c.error ? `? ${c.error}` : c.healthy ? "healthy" : `UNHEALTHY: ${c.reason ?? "no reason recorded"}`,
          c.phase,
        ]),
      ),
    );
  if (report.querySyncs && report.querySyncs.length > 0) {
    out.push("", "Query syncs (last run: rows read / sent / unchanged / rejected / not delivered)");
    out.push(
      table(
        ["sync", "destination", "schedule", "last started", "outcome", "read", "sent", "unchanged", "rejected", "not delivered"],
        report.querySyncs.map((q) => [
          q.enabled ? q.id : `${q.id} (disabled)`,
          q.destination,
          q.schedule,
          q.lastStarted ?? "never",
          q.error ? `? ${q.error}` : (q.lastRun?.outcome ?? "-") + (q.lastRun?.detail ? `: ${q.lastRun.detail.slice(0, 80)}` : ""),
          String(q.lastRun?.rows_read ?? "-"),
          String(q.lastRun?.sent ?? "-"),
          String(q.lastRun?.unchanged ?? "-"),
          String(q.lastRun?.rejected ?? "-"),
          String(q.lastRun?.not_delivered ?? "-"),
        ]),
      ),
    );
  }
  if (report.lookupTables && report.lookupTables.length > 0) {
    out.push("", "Lookup tables (last check)");
    out.push(
      table(
        ["table", "Mixpanel id", "schedule", "last checked", "outcome", "last replaced", "rows"],
        report.lookupTables.map((t) => [
          t.id,
          t.tableId,
          t.schedule,
          t.checkedAt ?? "never",
          t.error ? `? ${t.error}` : (t.lastOutcome ?? "-") + (t.lastDetail ? `: ${t.lastDetail.slice(0, 80)}` : ""),
          t.replacedAt ?? "never",
          t.replacedRows === undefined ? "-" : String(t.replacedRows),
        ]),
      ),
    );
  }
  out.push("", "Alarms (in ALARM, or changed in the last 24 h)");
  if (typeof report.alarms === "string") out.push(`  ${report.alarms}`);
  else if (report.alarms.length === 0) out.push("  none");
  else out.push(table(["alarm", "state", "since", "reason"], report.alarms.map((a) => [a.name, a.state, a.since, a.reason.slice(0, 100)])));
  return out.join("\n");
}

export const USAGE = `usage: npm run status -- --stage <stage> [--json] [--days N] [--max-objects N] [--region R] [--endpoint URL]

  Queue depths and oldest-message age (events, deliveries, Brevo, DLQs), rejected-store
  counts by source, code and day, every cohort sync's state, and recent alarms.

  --stage S         the stack (local = the running \`npm start\`)
  --json            the same report as JSON, for scripts
  --days N          rejected-store window (default 7)
  --max-objects N   rejected objects read at most (default 500)
  --region R        default AWS_REGION; --endpoint URL: an SQS/S3-compatible endpoint`;

export async function main(argv: readonly string[], env: NodeJS.ProcessEnv = process.env, out: (text: string) => void = console.log): Promise<StatusReport | undefined> {
  const { values } = parseArgs({
    args: [...argv],
    options: { ...awsTargetOptions, json: { type: "boolean" }, days: { type: "string" }, "max-objects": { type: "string" } },
    strict: true,
  });
  if (values.help) {
    out(USAGE);
    return undefined;
  }
  const target = resolveAwsTarget(values, env);
  const cloudwatch = target.local ? undefined : new CloudWatchClient({ region: target.region, ...(target.endpoint ? { endpoint: target.endpoint } : {}) });
  try {
    const report = await withStageClients(target, ({ sqs, s3 }) => collectStatus({
      target,
      sqs,
      s3,
      ...(cloudwatch ? { cloudwatch } : {}),
      now: () => new Date(),
      ...scanLimits(values),
    }));
    out(values.json ? JSON.stringify(report, null, 2) : renderStatus(report));
    return report;
  } finally {
    cloudwatch?.destroy();
  }
}

runWhenExecuted(import.meta.url, "status", USAGE, async () => void (await main(process.argv.slice(2))));
