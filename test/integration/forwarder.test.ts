import { createS3Client, createSqsClient } from "../../infra/aws/sdk-clients.js";
import { createS3 } from "../../lib/aws/s3.js";
import { createSqs } from "../../lib/aws/sqs.js";
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { buildApp } from "fauxqs";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { forwardMessages, type ForwarderDeps } from "../../lib/forwarder/mixpanel.js";
import { createIngestionClient } from "../../lib/mixpanel/ingestion.js";
import { insertIdHash } from "../../lib/observability/trace-ids.js";
import { createRejectedStore, rejectedBatchSchema } from "../../lib/queue/rejected-store.js";
import { serializeEnvelope } from "../../lib/records/envelope.js";
import { packEnvelopesV2, parseQueuedRecords } from "../../lib/records/envelope-v2.js";
import { sqsRequeue } from "../../lib/runtime/forwarder.js";
import { CreateQueueCommand } from "@aws-sdk/client-sqs";
import { MixpanelSandbox } from "../../infra/local/peers/mixpanel-server.js";

/** The forwarder's decisions per SQS message, against the strict sandbox and a real S3 protocol server. */
const credentials = { projectId: "9", projectToken: "tok-9", serviceAccountUsername: "sa", serviceAccountSecret: "sa-secret" };
const sandbox = new MixpanelSandbox({ credentials });
const s3Server = buildApp({ logger: false });
let endpoint = "";
let eventsUrl = "";
let deadLetterUrl = "";
const NOW_MS = Date.now();

beforeAll(async () => {
  process.env.AWS_ACCESS_KEY_ID ??= "test";
  process.env.AWS_SECRET_ACCESS_KEY ??= "test";
  endpoint = await s3Server.listen({ port: 0, host: "127.0.0.1" });
  await createS3Client("us-east-1", endpoint).send(new CreateBucketCommand({ Bucket: "rejected" }));
  const sqs = createSqsClient("us-east-1", endpoint);
  eventsUrl = (await sqs.send(new CreateQueueCommand({ QueueName: "fwd-events" }))).QueueUrl ?? "";
  deadLetterUrl = (await sqs.send(new CreateQueueCommand({ QueueName: "fwd-events-dlq" }))).QueueUrl ?? "";
  await sandbox.start();
});
afterAll(async () => {
  await sandbox.stop();
  await s3Server.close();
});
afterEach(() => sandbox.reset());

function deps(bucket = "rejected", clientOptions: { importMaxBytes?: number; concurrency?: number } = {}): ForwarderDeps {
  return {
    client: createIngestionClient({
      fetch: globalThis.fetch,
      baseUrl: sandbox.url,
      credentials: async () => ({ project_id: "9", project_token: "tok-9", service_account_username: "sa", service_account_secret: "sa-secret" }),
      importMaxBytes: clientOptions.importMaxBytes ?? 10_000_000,
      concurrency: clientOptions.concurrency ?? 2,
      timeoutMs: 5_000,
      retryDeps: { sleep: async () => undefined, random: () => 0, remainingMs: () => 60_000 },
      retryPolicy: { baseDelayMs: 1, maxDelayMs: 1, jitterMinMs: 0, jitterMaxMs: 0, maxAttempts: 1 },
      nowMs: Date.now,
    }),
    rejected: createRejectedStore({ s3: createS3({ region: "us-east-1", endpoint }), bucket, prefix: "rejected/", stage: "test", now: () => new Date() }),
  };
}

const eventLine = (id: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ event: "E", properties: { distinct_id: "u", time: NOW_MS, $insert_id: id, ...extra } });
const message = (messageId: string, kind: "event" | "profile" | "group", records: string[]) => ({
  messageId,
  body: serializeEnvelope({ v: 1, kind, source: "test", correlationId: `corr-${messageId}`, records }),
});

async function storedBatches() {
  const s3 = createS3Client("us-east-1", endpoint);
  const listed = await s3.send(new ListObjectsV2Command({ Bucket: "rejected", Prefix: "rejected/" }));
  return Promise.all(
    (listed.Contents ?? []).map(async (object) => {
      const got = await s3.send(new GetObjectCommand({ Bucket: "rejected", Key: object.Key }));
      return rejectedBatchSchema.parse(JSON.parse((await got.Body?.transformToString()) ?? "{}"));
    }),
  );
}

describe("forwardMessages", () => {
  it("sends every kind to its endpoint and acknowledges all messages", async () => {
    const summary = await forwardMessages(
      [
        message("m1", "event", [eventLine("a1"), eventLine("a2")]),
        message("m2", "profile", [JSON.stringify({ $distinct_id: "u", $set: { plan: "pro" } })]),
        message("m3", "group", [JSON.stringify({ $group_key: "company", $group_id: "c1", $set: { tier: 1 } })]),
      ],
      deps(),
    );
    expect(summary).toMatchObject({ failedMessageIds: [], sent: 4, rejected: 0, retried: 0 });
    expect(summary.correlationIds.sort()).toEqual(["corr-m1", "corr-m2", "corr-m3"]);
    expect(sandbox.events.map((e) => e.properties.$insert_id)).toEqual(["a1", "a2"]);
    expect(sandbox.profiles.get("u")).toEqual({ plan: "pro" });
    expect(sandbox.groups.get("company:c1")).toEqual({ tier: 1 });
  });

  it("hands back only the messages with records still owed a retry", async () => {
    // Two messages share one /import request; it fails transiently: both come back.
    sandbox.failNext({ path: "/import", status: 503 });
    const summary = await forwardMessages(
      [message("m1", "event", [eventLine("b1")]), message("m2", "event", [eventLine("b2")]), message("m3", "profile", [JSON.stringify({ $distinct_id: "v", $set: { a: 1 } })])],
      deps(),
    );
    expect(summary.failedMessageIds).toEqual(["m1", "m2"]);
    expect(summary.retried).toBe(2);
    expect(sandbox.profiles.get("v")).toEqual({ a: 1 });
  });

  it("stores an unreadable message in the rejected store and acknowledges it", async () => {
    const summary = await forwardMessages([{ messageId: "junk", body: "{\"v\":2}" }], deps());
    expect(summary.failedMessageIds).toEqual([]);
    expect(summary.invalidMessages).toBe(1);
    const stored = (await storedBatches()).find((batch) => batch.items[0]?.code === "invalid_envelope");
    expect(stored?.items[0]?.payload).toBe("{\"v\":2}");
    // The reason an operator reads: the schema error by name, with the fields it found missing.
    expect(stored?.items[0]?.reason).toMatch(/^ZodError: \[/);
    expect(stored?.items[0]?.reason).toContain('"kind"');
  });

  it("keeps a message whose refused records cannot be stored, so nothing is lost", async () => {
    const refused = eventLine("bad-1", { time: 5 });
    const summary = await forwardMessages([message("m1", "event", [eventLine("c1"), refused])], deps("no-such-bucket"));
    expect(summary.failedMessageIds).toEqual(["m1"]);
    expect(summary.rejected).toBe(0);
  });

  it("stores refused records with Mixpanel's reason and the line to replay", async () => {
    const refused = eventLine("bad-2", { time: 5 });
    const summary = await forwardMessages([message("m9", "event", [eventLine("d1"), refused])], deps());
    expect(summary).toMatchObject({ failedMessageIds: [], sent: 1, rejected: 1 });
    const stored = (await storedBatches()).find((batch) => batch.correlationId === "corr-m9");
    expect(stored?.stageOfFailure).toBe("forwarder");
    expect(stored?.items).toEqual([{ index: 1, code: "mixpanel_rejected", reason: expect.stringContaining("properties.time"), line: refused }]);
  });
});

/** Messages fauxqs holds for a queue, delayed ones included (its inspection endpoint). */
async function queuedBodies(name: string): Promise<string[]> {
  const response = await fetch(`${endpoint}/_fauxqs/queues/${name}`);
  const inspected: unknown = await response.json();
  const bodies: string[] = [];
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) node.forEach(visit);
    else if (node && typeof node === "object") {
      for (const [key, value] of Object.entries(node)) {
        if (key === "body" && typeof value === "string") bodies.push(value);
        else visit(value);
      }
    }
  };
  visit(inspected);
  return bodies;
}

describe("partly sent messages", () => {
  const withRequeue = (maxRequeues: number): ForwarderDeps => ({
    ...deps("rejected", { importMaxBytes: 100, concurrency: 1 }),
    requeue: sqsRequeue(createSqs({ region: "us-east-1", endpoint }), eventsUrl, deadLetterUrl, maxRequeues),
  });

  it("re-queue only the unsent records (delayed, attempt + 1) and acknowledge the message, so nothing is sent twice", async () => {
    // 100-byte cap: each event (~80 bytes) is its own /import request; the first one fails transiently.
    sandbox.failNext({ path: "/import", status: 503 });
    const summary = await forwardMessages([message("p1", "event", [eventLine("e1"), eventLine("e2"), eventLine("e3")])], withRequeue(6));
    expect(summary).toMatchObject({ failedMessageIds: [], sent: 2, retried: 1, requeued: 1, deadLettered: 0 });
    expect(sandbox.events.map((e) => e.properties.$insert_id)).toEqual(["e2", "e3"]);
    // Re-queued as envelope v2 (compressed), whatever version it came as.
    const requeued = (await queuedBodies("fwd-events")).map(parseQueuedRecords);
    expect(requeued.map((e) => ({ v: e.version, kind: e.kind, source: e.source, correlationId: e.correlationId, records: e.lines(), attempt: e.attempt }))).toEqual([
      { v: 2, kind: "event", source: "test", correlationId: "corr-p1", records: [eventLine("e1")], attempt: 1 },
    ]);
  });

  it("dead-letters the unsent records once the re-queues are used up", async () => {
    sandbox.failNext({ path: "/import", status: 503 });
    const body = serializeEnvelope({ v: 1, kind: "event", source: "test", correlationId: "corr-p2", records: [eventLine("f1"), eventLine("f2")], attempt: 2 });
    const summary = await forwardMessages([{ messageId: "p2", body }], withRequeue(2));
    expect(summary).toMatchObject({ failedMessageIds: [], requeued: 0, deadLettered: 1 });
    const dead = (await queuedBodies("fwd-events-dlq")).map(parseQueuedRecords);
    expect(dead.find((e) => e.correlationId === "corr-p2")?.lines()).toEqual([eventLine("f1")]);
  });

  it("hands a message with nothing sent back to SQS whole", async () => {
    sandbox.failNext({ path: "/import", status: 503 }, { path: "/import", status: 503 });
    const summary = await forwardMessages([message("p3", "event", [eventLine("g1"), eventLine("g2")])], withRequeue(6));
    expect(summary).toMatchObject({ failedMessageIds: ["p3"], requeued: 0 });
  });
});

describe("envelope v2", () => {
  const v2Message = (messageId: string, records: string[]) => {
    const { bodies } = packEnvelopesV2("event", "test", `corr-${messageId}`, records, { maxMessageBytes: 262_144 });
    expect(bodies).toHaveLength(1);
    return { messageId, body: bodies[0] ?? "" };
  };

  it("sends each v2 event message as one /import request whose body is the envelope's gzip as built", async () => {
    const records = Array.from({ length: 1500 }, (_, i) => eventLine(`v2-${i}`, { note: "\uFFFE😀 é" }));
    const sent = v2Message("v2a", records);
    const summary = await forwardMessages([sent], deps());
    expect(summary).toMatchObject({ failedMessageIds: [], sent: 1500, rejected: 0 });
    const imports = sandbox.requests.filter((r) => r.path === "/import");
    expect(imports).toHaveLength(1);
    expect(imports[0]?.records).toBe(1500);
    const envelope = parseQueuedRecords(sent.body);
    expect(imports[0]?.rawBytes).toBe(envelope.gzipped?.body.length);
    expect(sandbox.events.map((e) => e.properties.$insert_id)).toEqual(records.map((_, i) => `v2-${i}`));
    expect(sandbox.events[0]?.properties.note).toBe("\uFFFE😀 é");
  });

  it("reads v1 and v2 messages in the same batch (a queue draining across the deploy)", async () => {
    const summary = await forwardMessages(
      [message("old-1", "event", [eventLine("o1"), eventLine("o2")]), v2Message("new-1", [eventLine("n1"), eventLine("n2"), eventLine("n3")])],
      deps(),
    );
    expect(summary).toMatchObject({ failedMessageIds: [], sent: 5, invalidMessages: 0 });
    expect(summary.correlationIds.sort()).toEqual(["corr-new-1", "corr-old-1"]);
    expect(sandbox.events.map((e) => e.properties.$insert_id).sort()).toEqual(["n1", "n2", "n3", "o1", "o2"]);
  });

  it("keeps per-record outcomes for a v2 message: refused records go to the rejected store with their line", async () => {
    // 1000 records: large enough to be sent as built (PREPARED_MIN_RECORDS), so the 400's
    // failed_records are matched against the lines decoded from the message afterwards.
    const refused = eventLine("v2-bad", { time: 5 });
    const records = [eventLine("v2-ok"), refused, ...Array.from({ length: 998 }, (_, i) => eventLine(`v2-more-${i}`))];
    const summary = await forwardMessages([v2Message("v2b", records)], deps());
    expect(summary).toMatchObject({ failedMessageIds: [], sent: 999, rejected: 1 });
    expect(sandbox.requests.filter((r) => r.path === "/import")).toHaveLength(1);
    const stored = (await storedBatches()).find((batch) => batch.correlationId === "corr-v2b");
    expect(stored?.items).toEqual([{ index: 1, code: "mixpanel_rejected", reason: expect.stringContaining("properties.time"), line: refused }]);
    // For `npm run trace`: the refused record's hashed insert id; the 999 imported ones were logged when queued.
    expect(summary.traceHashes).toEqual({ rejected: [insertIdHash("v2-bad")], pending: [] });
  });

  it("splits a v2 message above this stage's byte cap instead of sending it whole", async () => {
    const summary = await forwardMessages([v2Message("v2c", [eventLine("c1"), eventLine("c2"), eventLine("c3")])], deps("rejected", { importMaxBytes: 100 }));
    expect(summary).toMatchObject({ failedMessageIds: [], sent: 3 });
    expect(sandbox.requests.filter((r) => r.path === "/import")).toHaveLength(3);
  });

  it("re-queues only the unsent records of a partly sent v2 message", async () => {
    sandbox.failNext({ path: "/import", status: 503 });
    const withRequeue: ForwarderDeps = {
      ...deps("rejected", { importMaxBytes: 100, concurrency: 1 }),
      requeue: sqsRequeue(createSqs({ region: "us-east-1", endpoint }), eventsUrl, deadLetterUrl, 6),
    };
    const summary = await forwardMessages([v2Message("v2d", [eventLine("r1"), eventLine("r2")])], withRequeue);
    expect(summary).toMatchObject({ failedMessageIds: [], sent: 1, retried: 1, requeued: 1 });
    const requeued = (await queuedBodies("fwd-events")).map(parseQueuedRecords).find((e) => e.correlationId === "corr-v2d");
    expect(requeued?.lines()).toEqual([eventLine("r1")]);
    expect(requeued?.attempt).toBe(1);
  });

  it("stores a v2 message whose body does not match its header as an invalid envelope, sending nothing", async () => {
    const good = JSON.parse(v2Message("v2e", [eventLine("x1")]).body) as Record<string, unknown>;
    const tampered = JSON.stringify({ ...good, bytes: Number(good.bytes) + 1 });
    const summary = await forwardMessages([{ messageId: "v2e", body: tampered }], deps());
    expect(summary).toMatchObject({ failedMessageIds: [], sent: 0, invalidMessages: 1 });
    expect(sandbox.requests).toHaveLength(0);
  });
});

describe("small v2 messages", () => {
  it("joins small v2 event messages (e.g. 100-event Braze batches) into full /import requests", async () => {
    const messages = Array.from({ length: 5 }, (_, m) => {
      const records = Array.from({ length: 100 }, (_, i) => eventLine(`s${m}-${i}`));
      const { bodies } = packEnvelopesV2("event", "braze", `corr-s${m}`, records, { maxMessageBytes: 262_144 });
      return { messageId: `s${m}`, body: bodies[0] ?? "" };
    });
    const summary = await forwardMessages(messages, deps());
    expect(summary).toMatchObject({ failedMessageIds: [], sent: 500 });
    expect(sandbox.requests.filter((r) => r.path === "/import").map((r) => r.records)).toEqual([500]);
  });
});

describe("v2 profile and group messages", () => {
  it("decodes v2 /engage and /groups updates and sends them like v1 (no gzip on those endpoints)", async () => {
    const pack = (kind: "profile" | "group", id: string, lines: string[]) => ({
      messageId: id,
      body: packEnvelopesV2(kind, kind === "profile" ? "profiles" : "groups", `corr-${id}`, lines, { maxMessageBytes: 262_144 }).bodies[0] ?? "",
    });
    const summary = await forwardMessages(
      [
        pack("profile", "pv2", [JSON.stringify({ $distinct_id: "u-v2", $set: { plan: "team", name: "Zoë 😀" } })]),
        pack("group", "gv2", [JSON.stringify({ $group_key: "company", $group_id: "c-v2", $set: { tier: 2 } })]),
      ],
      deps(),
    );
    expect(summary).toMatchObject({ failedMessageIds: [], sent: 2, rejected: 0 });
    expect(sandbox.profiles.get("u-v2")).toEqual({ plan: "team", name: "Zoë 😀" });
    expect(sandbox.groups.get("company:c-v2")).toEqual({ tier: 2 });
    expect(sandbox.requests.map((r) => [r.path, r.headers["content-encoding"]])).toEqual([
      ["/engage", undefined],
      ["/groups", undefined],
    ]);
  });
});
