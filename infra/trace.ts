/**
 * `npm run trace -- --stage <stage> (--insert-id X | --distinct-id Y | --correlation-id Z)
 *   [--days N] [--max-objects N] [--max-messages N] [--hours H] [--no-logs] [--region R] [--endpoint URL]`
 *
 * Where is a record? Looks in the three places one can be:
 * 1. the rejected store (rejected/ and replayed/): the items that match, with code and reason;
 * 2. the events DLQ: messages whose envelope holds the record (read with a short
 *    visibility timeout; they reappear on the DLQ 30 s later, untouched);
 * 3. the logs: prints the CloudWatch Logs Insights query over the intake, forwarder
 *    and currents-reader log groups, and runs it when AWS credentials allow.
 *
 * The logs never hold insert ids, distinct ids or any property: the line intake writes per
 * request and the Currents reader per object carry a hash of each queued event's `$insert_id`
 * beside the correlation id, and the forwarder logs the hashes of the events Mixpanel refused or
 * that wait for a retry beside its batch's correlation ids (lib/observability/trace-ids.ts). An
 * insert id is found by its hash, then its correlation id leads to every intake and
 * forwarder line of the request. A distinct id is traced through the rejected store and
 * the DLQ, and from there by the correlation ids found.
 */
import {
  CloudWatchLogsClient,
  GetQueryResultsCommand,
  type ResultField,
  StartQueryCommand,
} from "@aws-sdk/client-cloudwatch-logs";
import type { S3Client } from "@aws-sdk/client-s3";
import { GetQueueUrlCommand, ReceiveMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";
import * as z from "zod";
import { insertIdHash } from "../lib/observability/trace-ids.js";
import type { RejectedItemRecord } from "../lib/queue/rejected-store.js";
import { type QueuedRecords, parseQueuedRecords } from "../lib/records/envelope-v2.js";
import { stringifyAnyDepth } from "../lib/util/deep-json.js";
import { parseJsonWith } from "../lib/util/json.js";
import { type AwsTarget, UsageError, awsTargetOptions, parseArgs, parsePositiveInt, resolveAwsTarget, scanLimits, runWhenExecuted, withStageClients } from "./cli-args.js";
import { findRejectedBucket, listKeys, readBatch } from "./replay-rejected.js";
import { type FunctionName, REJECTED_PREFIX, REPLAYED_PREFIX, deadLetterQueueName, logGroupName } from "./stack-layout.js";

export type TraceKey = { readonly kind: "insert-id" | "distinct-id" | "correlation-id"; readonly value: string };

export interface RejectedMatch {
  readonly key: string;
  readonly correlationId: string;
  readonly stageOfFailure: string;
  readonly index: number;
  readonly code: string;
  readonly reason: string;
  readonly replayed: boolean;
}

export interface DeadLetterMatch {
  readonly queue: string;
  readonly messageId: string;
  readonly correlationId: string;
  /** Positions of the matching records inside the envelope (empty when the whole message matched by correlation id). */
  readonly positions: number[];
  readonly receiveCount: number;
}

export interface LogsQuery {
  readonly logGroups: string[];
  readonly query: string;
}

export interface TraceReport {
  readonly key: TraceKey;
  readonly rejected: RejectedMatch[];
  readonly rejectedObjectsRead: number;
  readonly deadLetters: DeadLetterMatch[];
  readonly deadLettersRead: number;
  readonly correlationIds: string[];
  readonly queries: LogsQuery[];
  /** Rows per query when it ran; a string saying why it did not. */
  readonly logs: { query: string; rows: Record<string, string>[] }[] | string;
}

const DAY_MS = 86_400_000;
/** Ids that go into a Logs Insights string literal: nothing that could end it. */
const SAFE_ID = /^[\w.:@+=/-]{1,200}$/;
const TRACED_FUNCTIONS: FunctionName[] = ["intake", "forwarder", "currents-reader"];

const recordIdsSchema = z.looseObject({
  $distinct_id: z.string().optional(),
  properties: z.looseObject({ distinct_id: z.unknown().optional(), $insert_id: z.unknown().optional() }).optional(),
});

/** Whether one Mixpanel record line (event or profile/group update) is the one looked for. */
export function lineMatches(line: string, key: TraceKey): boolean {
  const parsed = parseJsonWith(recordIdsSchema, line);
  if (!parsed.success) return false;
  if (key.kind === "insert-id") return parsed.data.properties?.$insert_id === key.value;
  if (key.kind === "distinct-id") return parsed.data.properties?.distinct_id === key.value || parsed.data.$distinct_id === key.value;
  return false;
}

function itemMatches(item: RejectedItemRecord, key: TraceKey): boolean {
  if (item.line !== undefined) return lineMatches(item.line, key);
  // Never became a record: look for the id anywhere in what the sender sent.
  // The rejected store keeps too-deep payloads as received (lib/util/deep-json.ts): stringify at any depth.
  return key.kind !== "correlation-id" && stringifyAnyDepth(item.payload ?? null).includes(JSON.stringify(key.value));
}

/** The Logs Insights queries that show a record's lines. */
export function logsQueries(stage: string, key: TraceKey, correlationIds: readonly string[]): LogsQuery[] {
  const logGroups = TRACED_FUNCTIONS.map((fn) => logGroupName(stage, fn));
  const fields = "fields @timestamp, @log, level, message, correlationId, outcome, status, error";
  const queries: LogsQuery[] = [];
  if (key.kind === "insert-id") {
    queries.push({
      logGroups,
      query: `${fields}, correlationIds.0\n| filter @message like "${insertIdHash(key.value)}"\n| sort @timestamp asc\n| limit 100`,
    });
  }
  const ids = [...new Set([...(key.kind === "correlation-id" ? [key.value] : []), ...correlationIds])].filter((id) => SAFE_ID.test(id)).slice(0, 20);
  if (ids.length > 0) {
    // Intake lines carry `correlationId`; forwarder lines carry the batch's `correlationIds` array,
    // which Logs Insights flattens into correlationIds.0, .1, …: a substring match covers both.
    const filter = ids.map((id) => `@message like "${id}"`).join(" or ");
    queries.push({ logGroups, query: `${fields}\n| filter ${filter}\n| sort @timestamp asc\n| limit 200` });
  }
  return queries;
}

export interface TraceDeps {
  readonly target: AwsTarget;
  readonly sqs: SQSClient;
  readonly s3: S3Client;
  /** Absent: print the queries only (local stack, --no-logs). */
  readonly logs?: CloudWatchLogsClient;
  readonly now: () => Date;
  readonly days?: number;
  readonly maxObjects?: number;
  readonly maxMessages?: number;
  readonly hours?: number;
  /** Between GetQueryResults polls. */
  readonly pollMs?: number;
}

async function searchRejected(deps: TraceDeps, key: TraceKey): Promise<{ matches: RejectedMatch[]; objectsRead: number }> {
  const bucket = await findRejectedBucket(deps.s3, deps.target.stage);
  const since = new Date(deps.now().getTime() - (deps.days ?? 7) * DAY_MS).toISOString().slice(0, 10);
  const maxObjects = deps.maxObjects ?? 2000;
  const matches: RejectedMatch[] = [];
  let objectsRead = 0;
  for (const prefix of [REJECTED_PREFIX, REPLAYED_PREFIX]) {
    for await (const objectKey of listKeys(deps.s3, bucket, prefix)) {
      const date = objectKey.slice(prefix.length).split("/")[1] ?? "";
      if (date < since) continue;
      if (objectsRead >= maxObjects) break;
      objectsRead++;
      const batch = await readBatch(deps.s3, bucket, objectKey);
      if (!batch) continue;
      const byCorrelation = key.kind === "correlation-id" && (batch.correlationId === key.value || batch.correlationId === `${key.value}-replay`);
      for (const item of batch.items) {
        if (!byCorrelation && !itemMatches(item, key)) continue;
        matches.push({
          key: objectKey,
          correlationId: batch.correlationId,
          stageOfFailure: batch.stageOfFailure,
          index: item.index,
          code: item.code,
          reason: item.reason,
          replayed: prefix === REPLAYED_PREFIX,
        });
      }
    }
  }
  return { matches, objectsRead };
}

/** DLQ visibility while trace reads: long enough to read the queue once, short enough not to hold up a redrive. */
const PEEK_VISIBILITY_SECONDS = 30;

async function searchDeadLetters(deps: TraceDeps, key: TraceKey): Promise<{ matches: DeadLetterMatch[]; read: number }> {
  const queue = deadLetterQueueName(deps.target.stage, "events");
  const url = (await deps.sqs.send(new GetQueueUrlCommand({ QueueName: queue }))).QueueUrl;
  if (!url) throw new Error(`queue ${queue} not found`);
  const maxMessages = deps.maxMessages ?? 1000;
  const matches: DeadLetterMatch[] = [];
  const seen = new Set<string>();
  while (seen.size < maxMessages) {
    const received = await deps.sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: url,
        MaxNumberOfMessages: Math.min(10, maxMessages - seen.size),
        VisibilityTimeout: PEEK_VISIBILITY_SECONDS,
        WaitTimeSeconds: 0,
        MessageSystemAttributeNames: ["ApproximateReceiveCount"],
      }),
    );
    const messages = (received.Messages ?? []).filter((message) => !seen.has(message.MessageId ?? ""));
    if (messages.length === 0) break;
    for (const message of messages) {
      seen.add(message.MessageId ?? "");
      let envelope: QueuedRecords;
      let lines: readonly string[];
      try {
        envelope = parseQueuedRecords(message.Body ?? "");
        lines = envelope.lines();
      } catch {
        continue;
      }
      const positions = lines.flatMap((line, position) => (lineMatches(line, key) ? [position] : []));
      const byCorrelation = key.kind === "correlation-id" && envelope.correlationId === key.value;
      if (positions.length === 0 && !byCorrelation) continue;
      matches.push({
        queue,
        messageId: message.MessageId ?? "",
        correlationId: envelope.correlationId,
        positions,
        receiveCount: Number(message.Attributes?.ApproximateReceiveCount ?? 0),
      });
    }
  }
  return { matches, read: seen.size };
}

function rowsOf(results: ResultField[][]): Record<string, string>[] {
  return results.map((fields) => Object.fromEntries(fields.filter((f) => f.field && f.field !== "@ptr").map((f) => [f.field ?? "", f.value ?? ""])));
}

async function runQueries(deps: TraceDeps, queries: LogsQuery[]): Promise<TraceReport["logs"]> {
  const logs = deps.logs;
  if (!logs) return deps.target.local ? "not run: the local stack's handler logs are in the `npm start` terminal" : "not run (--no-logs)";
  const end = deps.now();
  const start = new Date(end.getTime() - (deps.hours ?? 24) * 3_600_000);
  const results: { query: string; rows: Record<string, string>[] }[] = [];
  try {
    for (const query of queries) {
      const started = await logs.send(
        new StartQueryCommand({
          logGroupNames: query.logGroups,
          queryString: query.query,
          startTime: Math.floor(start.getTime() / 1000),
          endTime: Math.ceil(end.getTime() / 1000),
        }),
      );
      // Logs Insights queries usually finish in seconds; give up after a minute.
      for (let attempt = 0; attempt < 60; attempt++) {
        const answer = await logs.send(new GetQueryResultsCommand({ queryId: started.queryId }));
        if (answer.status === "Complete") {
          results.push({ query: query.query, rows: rowsOf(answer.results ?? []) });
          break;
        }
        if (answer.status && answer.status !== "Running" && answer.status !== "Scheduled") throw new Error(`query ${answer.status}`);
        await new Promise((done) => setTimeout(done, deps.pollMs ?? 1_000));
      }
    }
  } catch (error) {
    return `not run: ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)} (the queries above work in the CloudWatch console)`;
  }
  return results;
}

export async function traceRecord(deps: TraceDeps, key: TraceKey): Promise<TraceReport> {
  const [rejected, deadLetters] = await Promise.all([searchRejected(deps, key), searchDeadLetters(deps, key)]);
  const correlationIds = [...new Set([...rejected.matches.map((m) => m.correlationId), ...deadLetters.matches.map((m) => m.correlationId)])];
  const queries = logsQueries(deps.target.stage, key, correlationIds);
  const logs = await runQueries(deps, queries);
  // An insert id's lines name its request's correlation id (intake, Currents reader) or its batch's (forwarder):
  // follow them to every line of the request.
  if (key.kind === "insert-id" && Array.isArray(logs)) {
    const found = new Set<string>();
    for (const row of logs[0]?.rows ?? []) {
      for (const id of [row.correlationId, row["correlationIds.0"]]) if (id) found.add(id);
    }
    const more = [...found].filter((id) => !correlationIds.includes(id));
    if (more.length > 0) {
      correlationIds.push(...more);
      const followUp = logsQueries(deps.target.stage, { kind: "correlation-id", value: more[0] ?? "" }, more);
      queries.push(...followUp);
      const followed = await runQueries(deps, followUp);
      if (Array.isArray(followed)) logs.push(...followed);
    }
  }
  return {
    key,
    rejected: rejected.matches,
    rejectedObjectsRead: rejected.objectsRead,
    deadLetters: deadLetters.matches,
    deadLettersRead: deadLetters.read,
    correlationIds,
    queries,
    logs,
  };
}

export function renderTrace(report: TraceReport, stage: string): string {
  const out: string[] = [`trace ${report.key.kind} ${report.key.value} in stage ${stage}`, ""];
  out.push(`Rejected store (${report.rejectedObjectsRead} object(s) read)`);
  if (report.rejected.length === 0) out.push("  no matching item");
  for (const m of report.rejected) {
    out.push(`  ${m.replayed ? "replayed" : "rejected"} s3 ${m.key} item ${m.index}: ${m.code}: ${m.reason} (by ${m.stageOfFailure}, correlation ${m.correlationId})`);
  }
  out.push("", `Events DLQ (${report.deadLettersRead} message(s) read; they reappear in ${PEEK_VISIBILITY_SECONDS} s)`);
  if (report.deadLetters.length === 0) out.push("  no matching message");
  for (const m of report.deadLetters) {
    out.push(`  message ${m.messageId} (correlation ${m.correlationId}, received ${m.receiveCount}×)${m.positions.length > 0 ? ` records ${m.positions.join(", ")}` : ""}`);
  }
  out.push("", "Logs Insights");
  if (report.queries.length === 0) out.push("  nothing to query: distinct ids are never logged, and no rejected item or DLQ message gave a correlation id");
  for (const query of report.queries) out.push(`  log groups: ${query.logGroups.join(" ")}`, ...query.query.split("\n").map((line) => `    ${line}`), "");
  if (typeof report.logs === "string") out.push(`  ${report.logs}`);
  else
    for (const result of report.logs) {
      out.push(`  ${result.rows.length} line(s) for: ${result.query.split("\n")[1] ?? ""}`);
      for (const row of result.rows) out.push(`    ${row["@timestamp"] ?? ""}  ${(row["@log"] ?? "").split(":").pop() ?? ""}  ${row.level ?? ""}  ${row.message ?? ""}${row.outcome ? ` (${row.outcome})` : ""}${row.correlationId ? ` correlation ${row.correlationId}` : ""}`);
    }
  return out.join("\n");
}

export const USAGE = `usage: npm run trace -- --stage <stage> (--insert-id X | --distinct-id Y | --correlation-id Z) [options]

  Finds a record in the rejected store (with the reasons), in the events DLQ, and in the
  logs (prints the Logs Insights query and runs it when AWS credentials allow).

  --stage S          the stack (local = the running \`npm start\`; no log queries there)
  --insert-id X      an event's $insert_id (the forwarder logs it hashed, never in clear)
  --distinct-id Y    a user's distinct id (never logged: found via the store and the DLQ)
  --correlation-id Z the id intake returned (x-correlation-id) for a request
  --days N           rejected-store window in days (default 7); --max-objects N (default 2000)
  --max-messages N   DLQ messages read at most (default 1000)
  --hours H          Logs Insights window (default 24); --no-logs: print the queries only
  --json             the report as JSON
  --region R, --endpoint URL`;

export async function main(argv: readonly string[], env: NodeJS.ProcessEnv = process.env, out: (text: string) => void = console.log): Promise<TraceReport | undefined> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      ...awsTargetOptions,
      "insert-id": { type: "string" },
      "distinct-id": { type: "string" },
      "correlation-id": { type: "string" },
      days: { type: "string" },
      "max-objects": { type: "string" },
      "max-messages": { type: "string" },
      hours: { type: "string" },
      "no-logs": { type: "boolean" },
      json: { type: "boolean" },
    },
    strict: true,
  });
  if (values.help) {
    out(USAGE);
    return undefined;
  }
  const keys: TraceKey[] = (["insert-id", "distinct-id", "correlation-id"] as const).flatMap((kind) => {
    const value = values[kind];
    return value === undefined ? [] : [{ kind, value }];
  });
  if (keys.length !== 1 || !keys[0]?.value) throw new UsageError("give exactly one of --insert-id, --distinct-id, --correlation-id");
  const key = keys[0];
  if (key.kind === "correlation-id" && !SAFE_ID.test(key.value)) throw new UsageError(`--correlation-id "${key.value}" has characters a correlation id never has`);
  const target = resolveAwsTarget(values, env);
  const logs = target.local || values["no-logs"] ? undefined : new CloudWatchLogsClient({ region: target.region });
  try {
    const report = await withStageClients(target, ({ sqs, s3 }) => traceRecord(
      {
        target,
        sqs,
        s3,
        ...(logs ? { logs } : {}),
        now: () => new Date(),
        ...scanLimits(values),
        ...(values["max-messages"] ? { maxMessages: parsePositiveInt(values["max-messages"], "--max-messages") } : {}),
        ...(values.hours ? { hours: parsePositiveInt(values.hours, "--hours") } : {}),
      },
      key,
    ));
    out(values.json ? JSON.stringify(report, null, 2) : renderTrace(report, target.stage));
    return report;
  } finally {
    logs?.destroy();
  }
}

runWhenExecuted(import.meta.url, "trace", USAGE, async () => void (await main(process.argv.slice(2))));
