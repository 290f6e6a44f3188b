/**
 * `npm run status` and `npm run trace` against the local stack `npm start` runs
 * (fauxqs for SQS/S3, the real handlers, the local Mixpanel sandbox), found the
 * way an operator finds it: `--stage local` and the endpoints file npm start writes.
 * Also checks what the forwarder logs for tracing: insert ids hashed, never in clear.
 */
import { CloudWatchClient } from "@aws-sdk/client-cloudwatch";
import { CloudWatchLogsClient } from "@aws-sdk/client-cloudwatch-logs";
import { SendMessageCommand } from "@aws-sdk/client-sqs";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { type LocalStack, LOCAL_REGION, startLocalStack } from "../../infra/local/stack.js";
import { removeLocalStackFile, writeLocalStackFile } from "../../infra/local/stack-file.js";
import { collectStatus, main as status, renderStatus, type StatusReport } from "../../infra/status.js";
import { main as trace, renderTrace, traceRecord, type TraceReport } from "../../infra/trace.js";
import { logger } from "../../lib/observability/telemetry.js";
import { insertIdHash } from "../../lib/observability/trace-ids.js";
import { packEnvelopesV2 } from "../../lib/records/envelope-v2.js";
import { CloudWatchLogsServer, type StoredLogLine } from "../support/cloudwatch-logs-server.js";
import { CloudWatchServer } from "../support/cloudwatch-server.js";

let stack: LocalStack;
const scratch = mkdtempSync(join(tmpdir(), "relay-operator-"));
const stackFile = join(scratch, "stack.json");
const env = { RELAY_LOCAL_STACK_FILE: stackFile };
let correlationId = "";
let intakeLines: string[] = [];
let forwarderLines: string[] = [];

/** The JSON log lines `action` writes to stdout at level INFO (handlers run in this process). */
async function logLinesOf<T>(action: () => Promise<T>): Promise<{ result: T; lines: string[] }> {
  logger.setLogLevel("INFO");
  const chunks: string[] = [];
  const spy = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    chunks.push(typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8"));
    return true;
  });
  try {
    const result = await action();
    return { result, lines: chunks.join("").split("\n").filter((line) => line.startsWith("{")) };
  } finally {
    spy.mockRestore();
    logger.setLogLevel("WARN");
  }
}

const NOW_S = () => Math.floor(Date.now() / 1000);
const DELIVERED_INSERT_ID = "op-delivered-1";
const DLQ_INSERT_ID = "op-dead-letter-1";

beforeAll(async () => {
  stack = await startLocalStack({ startPollers: false, cohorts: { tickMs: 60_000 } });
  writeLocalStackFile(stackFile, { stage: "local", region: LOCAL_REGION, awsEndpoint: stack.awsEndpoint, intakeUrl: stack.intakeUrl, pid: process.pid });

  // One event that reaches Mixpanel and one that intake rejects (no event name).
  const posted = await logLinesOf(async () => {
    const response = await fetch(`${stack.intakeUrl}/v1/events`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${stack.intakeToken}` },
      body: JSON.stringify([
        { event: "Signed Up", properties: { distinct_id: "op-user-1", time: NOW_S(), $insert_id: DELIVERED_INSERT_ID } },
        { properties: { distinct_id: "op-user-2", time: NOW_S() } },
      ]),
    });
    return (await response.json()) as { correlationId: string; accepted: number; rejected: number };
  });
  intakeLines = posted.lines;
  const body = posted.result;
  expect(body).toMatchObject({ accepted: 1, rejected: 1 });
  correlationId = body.correlationId;

  // The forwarder's own log lines while it sends the accepted event.
  const polled = await logLinesOf(() => stack.forwarderPoller.pollOnce(2));
  expect(polled.result).toBe(1);
  forwarderLines = polled.lines;

  // A message that failed every try and sits in the events DLQ, in the envelope the enqueue step writes (v2).
  const line = JSON.stringify({ event: "Purchase", properties: { distinct_id: "op-user-3", time: NOW_S(), $insert_id: DLQ_INSERT_ID } });
  const [dlqBody] = packEnvelopesV2("event", "native", "op-dlq-correlation", [line], { maxMessageBytes: 262_144 }).bodies;
  await stack.sqs.send(new SendMessageCommand({ QueueUrl: stack.events.dlqUrl, MessageBody: dlqBody }));
}, 60_000);

afterAll(async () => {
  removeLocalStackFile(stackFile);
  await stack.stop();
  rmSync(scratch, { recursive: true, force: true });
});

describe("logs for trace", () => {
  const parsed = (lines: string[]) => lines.map((line) => JSON.parse(line) as Record<string, unknown>);

  it("intake's line for the request carries each queued event's hashed insert id and its correlation id, never the id or the distinct id", () => {
    expect(parsed(intakeLines).filter((line) => line.message === "intake batch")).toEqual([
      expect.objectContaining({ correlationId, source: "native", accepted: 1, rejected: 1, insertIdHashes: [insertIdHash(DELIVERED_INSERT_ID)] }),
    ]);
    const text = intakeLines.join("\n");
    expect(text).not.toContain(DELIVERED_INSERT_ID);
    expect(text).not.toContain("op-user-1");
  });

  it("the forwarder names the batch's correlation ids and lists no hash for an event Mixpanel took", () => {
    const lines = parsed(forwarderLines);
    expect(lines).toContainEqual(expect.objectContaining({ message: "forwarded batch", imported: 1, rejected: 0, correlationIds: [correlationId] }));
    expect(lines.filter((line) => line.message === "forwarded records")).toEqual([]);
    // Every line carries the Lambda context.
    for (const line of forwarderLines.map((text) => JSON.parse(text) as Record<string, unknown>).filter((l) => typeof l.message === "string")) {
      expect(line.function_name).toBe("forwarder");
      expect(typeof line.function_request_id).toBe("string");
    }
    const text = forwarderLines.join("\n");
    expect(text).not.toContain(DELIVERED_INSERT_ID);
    expect(text).not.toContain("op-user-1");
  });
});

describe("npm run status -- --stage local", () => {
  it("explains itself", async () => {
    const out: string[] = [];
    await status(["--help"], env, (text) => out.push(text));
    expect(out.join("\n")).toMatch(/usage: npm run status -- --stage <stage>.*--json/s);
  });

  it("reports queue depths, rejected counts by source/code/day, cohort syncs and alarms as JSON", async () => {
    const out: string[] = [];
    const report = (await status(["--stage", "local", "--json"], env, (text) => out.push(text))) as StatusReport;
    expect(JSON.parse(out.join("\n"))).toEqual(JSON.parse(JSON.stringify(report)));
    const queues = Object.fromEntries(report.queues.map((q) => [q.name, q]));
    expect(Object.keys(queues).sort()).toEqual([
      "mixpanel-relay-local-brevo",
      "mixpanel-relay-local-brevo-dlq",
      "mixpanel-relay-local-deliveries",
      "mixpanel-relay-local-deliveries-dlq",
      "mixpanel-relay-local-events",
      "mixpanel-relay-local-events-dlq",
    ]);
    expect(queues["mixpanel-relay-local-events-dlq"]).toMatchObject({ visible: 1, deadLetter: true });
    expect(queues["mixpanel-relay-local-events"]).toMatchObject({ visible: 0, deadLetter: false });
    const today = new Date().toISOString().slice(0, 10);
    expect(report.rejected.counts).toEqual([{ source: "native", code: "invalid_shape", day: today, items: 1 }]);
    // config/local.json's syncs (one per destination kind), never run in this stack.
    expect(report.cohorts).toEqual(
      [
        ["local-pro-users", "webhook"],
        ["local-email-brevo", "brevo"],
        ["local-pro-braze", "braze"],
      ].map(([id, destination]) => ({ id, destination, schedule: "rate(1 minute)", nextDue: "now", healthy: true, phase: "idle" })),
    );
    expect(report.alarms).toMatch(/local stack has no CloudWatch/);
  });

  it("prints readable tables, pointing at the dead letters", async () => {
    const out: string[] = [];
    await status(["--stage", "local"], env, (text) => out.push(text));
    const screen = out.join("\n");
    expect(screen).toMatch(/^queue +waiting +in flight +delayed +oldest/m);
    expect(screen).toMatch(/^mixpanel-relay-local-events-dlq +1 +0 +0 +- +<- dead letters/m);
    expect(screen).toMatch(/^\d{4}-\d{2}-\d{2} +native +invalid_shape +1$/m);
    expect(screen).toMatch(/^local-pro-users +webhook +rate\(1 minute\) +never +now +healthy +idle$/m);
    expect(screen).toMatch(/^local-pro-braze +braze +rate\(1 minute\) +never +now +healthy +idle$/m);
  });

  it("says how to reach the local stack when none is running", async () => {
    await expect(status(["--stage", "local"], { RELAY_LOCAL_STACK_FILE: join(scratch, "absent.json") }, () => undefined)).rejects.toThrow(/npm start/);
  });
});

describe("npm run trace -- --stage local", () => {
  const run = async (...args: string[]) => {
    const out: string[] = [];
    const report = (await trace(["--stage", "local", ...args], env, (text) => out.push(text))) as TraceReport;
    return { report, text: out.join("\n") };
  };

  it("explains itself and wants exactly one key", async () => {
    const out: string[] = [];
    await trace(["--help"], env, (text) => out.push(text));
    expect(out.join("\n")).toMatch(/--insert-id X.*--distinct-id Y.*--correlation-id Z/s);
    await expect(trace(["--stage", "local"], env, () => undefined)).rejects.toThrow(/exactly one of/);
    await expect(trace(["--stage", "local", "--insert-id", "a", "--distinct-id", "b"], env, () => undefined)).rejects.toThrow(/exactly one of/);
  });

  it("finds a dead-lettered event by insert id and prints the query by its hash", async () => {
    const { report, text } = await run("--insert-id", DLQ_INSERT_ID);
    expect(report.deadLetters).toEqual([expect.objectContaining({ correlationId: "op-dlq-correlation", positions: [0] })]);
    expect(report.rejected).toEqual([]);
    expect(report.queries[0]?.query).toContain(`@message like "${insertIdHash(DLQ_INSERT_ID)}"`);
    expect(report.queries[0]?.logGroups).toEqual([
      "/aws/lambda/mixpanel-relay-local-intake",
      "/aws/lambda/mixpanel-relay-local-forwarder",
      "/aws/lambda/mixpanel-relay-local-currents-reader",
    ]);
    // The DLQ message's correlation id leads to its intake and forwarder lines.
    expect(report.queries[1]?.query).toContain('@message like "op-dlq-correlation"');
    expect(report.logs).toMatch(/not run: the local stack/);
    expect(text).toContain("Events DLQ (1 message(s) read");
  });

  it("finds a rejected item by distinct id, with its code and reason, and queries by its correlation id", async () => {
    const { report } = await run("--distinct-id", "op-user-2");
    expect(report.rejected).toEqual([expect.objectContaining({ code: "invalid_shape", stageOfFailure: "intake", correlationId, index: 1, replayed: false })]);
    expect(report.rejected[0]?.reason).toMatch(/event/);
    expect(report.deadLetters).toEqual([]);
    expect(report.correlationIds).toEqual([correlationId]);
    expect(report.queries).toHaveLength(1);
    expect(report.queries[0]?.query).toContain(`@message like "${correlationId}"`);
  });

  it("finds everything of a request by correlation id, and nothing for an unknown one", async () => {
    const { report } = await run("--correlation-id", correlationId);
    expect(report.rejected.map((m) => m.code)).toEqual(["invalid_shape"]);
    expect(report.queries[0]?.logGroups).toEqual([
      "/aws/lambda/mixpanel-relay-local-intake",
      "/aws/lambda/mixpanel-relay-local-forwarder",
      "/aws/lambda/mixpanel-relay-local-currents-reader",
    ]);
    const none = await run("--distinct-id", "nobody-at-all");
    expect(none.report.rejected).toEqual([]);
    expect(none.report.deadLetters).toEqual([]);
    expect(none.text).toMatch(/distinct ids are never logged/);
  });

  it("reads a rejected payload refused as too deep (the rejected store keeps it as received)", async () => {
    // Past Mixpanel's nesting, within the intake's body limit (deeper bodies are refused whole, never stored).
    const depth = 40;
    const body = `[{"event":"Deep","properties":{"distinct_id":"op-deep-user","time":${NOW_S()},"p":${"[".repeat(depth)}${"]".repeat(depth)}}}]`;
    const response = await fetch(`${stack.intakeUrl}/v1/events`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${stack.intakeToken}` },
      body,
    });
    expect(await response.json()).toMatchObject({ accepted: 0, rejected: 1 });
    const { report } = await run("--distinct-id", "op-deep-user");
    expect(report.rejected).toEqual([expect.objectContaining({ stageOfFailure: "intake", index: 0, replayed: false })]);
  });
});

describe("trace runs its Logs Insights queries when it can", () => {
  const FORWARDER = "/aws/lambda/mixpanel-relay-local-forwarder";
  const INTAKE = "/aws/lambda/mixpanel-relay-local-intake";
  const READER = "/aws/lambda/mixpanel-relay-local-currents-reader";
  const LOGGED_INSERT_ID = "op-logs-only-1";
  const REQUEST = "op-request-from-logs";
  const at = "2026-11-27 10:00:00.000";
  const lines: StoredLogLine[] = [
    { logGroup: INTAKE, timestamp: at, message: { level: "INFO", message: "intake batch", correlationId: REQUEST, accepted: 1, insertIdHashes: [insertIdHash(LOGGED_INSERT_ID)] } },
    { logGroup: INTAKE, timestamp: at, message: { level: "INFO", message: "intake batch", correlationId: "someone-else", accepted: 1, insertIdHashes: [insertIdHash("another-event")] } },
    { logGroup: FORWARDER, timestamp: at, message: { level: "INFO", message: "forwarded batch", correlationIds: [REQUEST], imported: 1 } },
    { logGroup: FORWARDER, timestamp: at, message: { level: "INFO", message: "forwarded batch", correlationIds: ["someone-else"], imported: 1 } },
  ];
  const credentials = { accessKeyId: "local", secretAccessKey: "local" };

  it("finds the queued line by the hashed insert id, then follows its correlation id to the forwarder's batch", async () => {
    const server = new CloudWatchLogsServer(lines, [INTAKE, FORWARDER, READER]);
    const url = await server.start();
    const logs = new CloudWatchLogsClient({ region: LOCAL_REGION, endpoint: url, credentials });
    try {
      const report = await traceRecord(
        { target: { stage: "local", region: LOCAL_REGION }, sqs: stack.sqs, s3: stack.s3, logs, now: () => new Date(), pollMs: 10 },
        { kind: "insert-id", value: LOGGED_INSERT_ID },
      );
      expect(server.started.map((query) => query.logGroups)).toEqual([
        [INTAKE, FORWARDER, READER],
        [INTAKE, FORWARDER, READER],
      ]);
      if (typeof report.logs === "string") throw new Error(report.logs);
      expect(report.logs[0]?.rows).toEqual([expect.objectContaining({ "@log": `000000000000:${INTAKE}`, message: "intake batch", correlationId: REQUEST })]);
      expect(report.correlationIds).toEqual([REQUEST]);
      expect(report.logs[1]?.rows.map((row) => row.message).sort()).toEqual(["forwarded batch", "intake batch"]);
      expect(renderTrace(report, "local")).toMatch(/1 line\(s\) for: \| filter @message like "[\w-]{8}"/);
    } finally {
      logs.destroy();
      await server.stop();
    }
  });

  it("says why the queries did not run instead of failing the trace", async () => {
    const server = new CloudWatchLogsServer(lines, []);
    const url = await server.start();
    const logs = new CloudWatchLogsClient({ region: LOCAL_REGION, endpoint: url, credentials });
    try {
      const report = await traceRecord(
        { target: { stage: "local", region: LOCAL_REGION }, sqs: stack.sqs, s3: stack.s3, logs, now: () => new Date(), pollMs: 10 },
        { kind: "correlation-id", value: REQUEST },
      );
      expect(report.logs).toMatch(/^not run: ResourceNotFoundException: Log group does not exist/);
      expect(report.queries[0]?.query).toContain(`@message like "${REQUEST}"`);
    } finally {
      logs.destroy();
      await server.stop();
    }
  });
});

describe("status reads CloudWatch where the stage has it", () => {
  it("adds each queue's oldest-message age and the alarms in ALARM or changed in the last 24 h, ALARM first", async () => {
    const now = new Date();
    const hoursAgo = (hours: number) => new Date(now.getTime() - hours * 3_600_000);
    const server = new CloudWatchServer(
      [
        { AlarmName: "mixpanel-relay-local-events-queue-backlog", StateValue: "OK", StateReason: "Threshold Crossed: back to normal", StateUpdatedTimestamp: hoursAgo(2) },
        { AlarmName: "mixpanel-relay-local-events-dlq-not-empty", StateValue: "ALARM", StateReason: "Threshold Crossed: 1 datapoint [1.0]", StateUpdatedTimestamp: hoursAgo(50) },
        { AlarmName: "mixpanel-relay-local-forwarder-errors", StateValue: "OK", StateReason: "quiet for days", StateUpdatedTimestamp: hoursAgo(72) },
        { AlarmName: "mixpanel-relay-prod-events-dlq-not-empty", StateValue: "ALARM", StateReason: "another stage", StateUpdatedTimestamp: hoursAgo(1) },
      ],
      { "mixpanel-relay-local-events": 42, "mixpanel-relay-local-events-dlq": 5400 },
    );
    const url = await server.start();
    const cloudwatch = new CloudWatchClient({ region: LOCAL_REGION, endpoint: url, credentials: { accessKeyId: "local", secretAccessKey: "local" } });
    try {
      const report = await collectStatus({ target: { stage: "local", region: LOCAL_REGION }, sqs: stack.sqs, s3: stack.s3, cloudwatch, now: () => now });
      const ages = Object.fromEntries(report.queues.map((queue) => [queue.name, queue.oldestAgeSeconds]));
      expect(ages).toEqual({
        "mixpanel-relay-local-deliveries": undefined,
        "mixpanel-relay-local-deliveries-dlq": undefined,
        "mixpanel-relay-local-events": 42,
        "mixpanel-relay-local-events-dlq": 5400,
      });
      expect(report.alarms).toEqual([
        { name: "mixpanel-relay-local-events-dlq-not-empty", state: "ALARM", since: hoursAgo(50).toISOString(), reason: "Threshold Crossed: 1 datapoint [1.0]" },
        { name: "mixpanel-relay-local-events-queue-backlog", state: "OK", since: hoursAgo(2).toISOString(), reason: "Threshold Crossed: back to normal" },
      ]);
      expect(report.dashboardUrl).toBe(`https://${LOCAL_REGION}.console.aws.amazon.com/cloudwatch/home?region=${LOCAL_REGION}#dashboards/dashboard/mixpanel-relay-local`);
      const screen = renderStatus(report);
      expect(screen).toContain(`\nDashboard: ${report.dashboardUrl}\n`);
      expect(screen).toMatch(/^mixpanel-relay-local-events-dlq +\d+ +\d+ +\d+ +90 min/m);
      expect(screen).toMatch(/^mixpanel-relay-local-events-dlq-not-empty +ALARM /m);
      expect(server.calls.sort()).toEqual(["GraniteServiceVersion20100801.DescribeAlarms", "GraniteServiceVersion20100801.GetMetricData"]);
    } finally {
      cloudwatch.destroy();
      await server.stop();
    }
  });
});
