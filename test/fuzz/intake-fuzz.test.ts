import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { DeleteMessageBatchCommand, ReceiveMessageCommand } from "@aws-sdk/client-sqs";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalStack, startLocalStack } from "../../infra/local/stack.js";
import { rejectedBatchSchema, type RejectedBatch } from "../../lib/queue/rejected-store.js";
import { type QueuedRecords, parseQueuedRecords } from "../../lib/records/envelope-v2.js";
import {
  ROUTES,
  type CorpusOptions,
  type MixedBatch,
  type Route,
  accountingProblems,
  findGoodRecord,
  goodRecordMismatch,
  hostileBody,
  mixedBatch,
  nearCapBody,
  readAnswer,
} from "./corpus.js";

/**
 * Fuzz properties of the intake, per route, through the real handler (API Gateway v2
 * events from the local stack's HTTP front) and the real queue server (fauxqs on
 * 127.0.0.1): never a 5xx, never a crash, every good item of a mixed batch queued with
 * its values unchanged (read back from SQS), every bad item in `errors` or
 * `dropped_items` and in the rejected store. Fixed seed; bounded in runs and time.
 */
/** Fixed; FUZZ_SEED explores another corner (a failure prints the seed and path to replay it). */
const SEED = Number(process.env.FUZZ_SEED ?? 20_261_127);
const BODY_CAP = 2_000_000;
const options: CorpusOptions = { hugeMax: 1_000_010, nowMs: Date.now };
/** Bounded by run count (about 25 s for all routes on an idle 2-core machine), not by a clock, so a busy machine is slower, not flaky. */
const RUNS = { mixed: 60, hostile: 60, nearCap: 6 };

let stack: LocalStack;

beforeAll(async () => {
  stack = await startLocalStack({
    startPollers: false,
    env: { INTAKE_MAX_BODY_BYTES: String(BODY_CAP), POWERTOOLS_LOG_LEVEL: "ERROR" },
  });
});
afterAll(async () => {
  await stack.stop();
  console.log(`intake fuzz: ${tally.requests} requests, ${tally.good} good items read back from the queue and compared, ${tally.bad} bad items refused, ${tally.hostile} hostile items accounted for`);
});

const tally = { requests: 0, good: 0, bad: 0, hostile: 0 };

let requestCounter = 0;

async function post(route: Route, body: Buffer): Promise<{ status: number; json: unknown; correlationId: string; header: string | null }> {
  // Start clean: a run that failed part-way (and fast-check's shrinking replays) may have left records behind.
  await drainQueue();
  await takeRejected();
  requestCounter += 1;
  tally.requests += 1;
  const correlationId = `fuzz-${SEED}-${requestCounter}`;
  const response = await fetch(`${stack.intakeUrl}${route}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${stack.intakeToken}`, "x-correlation-id": correlationId },
    body: new Uint8Array(body),
  });
  const text = await response.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = { unparseable: text.slice(0, 300) };
  }
  return { status: response.status, json, correlationId, header: response.headers.get("x-correlation-id") };
}

/** Everything on the events queue, deleted once read: requests run one at a time, so it is all this request's. */
async function drainQueue(): Promise<QueuedRecords[]> {
  const envelopes: QueuedRecords[] = [];
  for (;;) {
    const received = await stack.sqs.send(new ReceiveMessageCommand({ QueueUrl: stack.events.url, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }));
    const messages = received.Messages ?? [];
    if (messages.length === 0) return envelopes;
    for (const message of messages) envelopes.push(parseQueuedRecords(message.Body ?? ""));
    await stack.sqs.send(
      new DeleteMessageBatchCommand({
        QueueUrl: stack.events.url,
        Entries: messages.map((message, i) => ({ Id: String(i), ReceiptHandle: message.ReceiptHandle ?? "" })),
      }),
    );
  }
}

/** Every rejected-store batch written so far, deleted once read. */
async function takeRejected(): Promise<RejectedBatch[]> {
  const listed = await stack.s3.send(new ListObjectsV2Command({ Bucket: stack.rejectedBucket, Prefix: "rejected/" }));
  const batches: RejectedBatch[] = [];
  for (const object of listed.Contents ?? []) {
    const got = await stack.s3.send(new GetObjectCommand({ Bucket: stack.rejectedBucket, Key: object.Key }));
    batches.push(rejectedBatchSchema.parse(JSON.parse((await got.Body?.transformToString()) ?? "")));
    await stack.s3.send(new DeleteObjectCommand({ Bucket: stack.rejectedBucket, Key: object.Key }));
  }
  return batches;
}

/** API Gateway refuses larger bodies itself (the local stack does the same), before the relay could add a correlation id. */
const API_GATEWAY_MAX_BYTES = 10 * 1024 * 1024;

/** The checks every answer must pass: a JSON body naming the correlation id, never a 5xx. */
function expectNoServerError(result: Awaited<ReturnType<typeof post>>, body: Buffer): void {
  const context = `status ${result.status} for body ${body.subarray(0, 300).toString("utf8")} → ${JSON.stringify(result.json).slice(0, 400)}`;
  expect(result.status, context).toBeLessThan(500);
  if (body.length > API_GATEWAY_MAX_BYTES) {
    expect(result.status, context).toBe(413);
    return;
  }
  expect(result.header, context).toBe(result.correlationId);
  expect(result.json, context).toMatchObject({ correlationId: result.correlationId });
}

/** For a 2xx: what was queued and stored agrees with the answer's counts. */
async function expectQueuedAsAnswered(result: Awaited<ReturnType<typeof post>>): Promise<{ records: unknown[]; refusedIndexes: number[] }> {
  const answer = readAnswer(result.json);
  if (typeof answer === "string") throw new Error(answer);
  expect(result.status).toBe(answer.accepted > 0 ? 202 : 200);
  const envelopes = await drainQueue();
  expect(envelopes.every((envelope) => envelope.correlationId === result.correlationId)).toBe(true);
  const records = envelopes.flatMap((envelope) => envelope.lines().map((line): unknown => JSON.parse(line)));
  expect(records.length, "records on the queue = accepted").toBe(answer.accepted);
  const stored = (await takeRejected()).filter((batch) => batch.correlationId === result.correlationId);
  const storedIndexes = stored.flatMap((batch) => batch.items.map((item) => item.index)).sort((a, b) => a - b);
  const refusedIndexes = [...answer.errorIndexes, ...answer.droppedIndexes].sort((a, b) => a - b);
  expect(storedIndexes, "the rejected store holds every refused item").toEqual(refusedIndexes);
  return { records, refusedIndexes };
}

async function checkMixedBatch(batch: MixedBatch): Promise<void> {
  const result = await post(batch.route, batch.body);
  expectNoServerError(result, batch.body);
  if (batch.body.length > BODY_CAP) {
    expect(result.status).toBe(413);
    return;
  }
  expect([200, 202], JSON.stringify(result.json).slice(0, 500)).toContain(result.status);
  const answer = readAnswer(result.json);
  if (typeof answer === "string") throw new Error(answer);
  expect(accountingProblems(batch.items, answer)).toEqual([]);
  const { records } = await expectQueuedAsAnswered(result);
  for (const item of batch.items) {
    tally[item.kind] += 1;
    if (item.kind !== "good") continue;
    const record = findGoodRecord(batch.route, item, records);
    expect(record, `good item not on the queue: ${item.text.slice(0, 300)}`).toBeDefined();
    expect(goodRecordMismatch(batch.route, JSON.parse(item.text), record), item.text.slice(0, 300)).toBeUndefined();
  }
}

const assertOptions = (numRuns: number) => ({ seed: SEED, numRuns });

describe.each(ROUTES)("fuzzing POST %s", (route) => {
  it("a mixed batch of good, bad and hostile items: good ones queued unchanged, bad ones refused, all accounted for", async () => {
    await fc.assert(fc.asyncProperty(mixedBatch(route, options), checkMixedBatch), assertOptions(RUNS.mixed));
  }, 300_000);

  it("any body at all (not JSON, invalid UTF-8, wrong envelope, deep nesting): a JSON 2xx/4xx, never a 5xx", async () => {
    await fc.assert(
      fc.asyncProperty(hostileBody(route, options), async ({ body }) => {
        const result = await post(route, body);
        expectNoServerError(result, body);
        expect([200, 202, 400, 413]).toContain(result.status);
        if (result.status < 300) await expectQueuedAsAnswered(result);
        else {
          // A refused body queues nothing.
          expect(await drainQueue()).toEqual([]);
        }
      }),
      assertOptions(RUNS.hostile),
    );
  }, 300_000);

  it("bodies within 64 bytes of the size cap: 413 above it, the good item queued below it", async () => {
    await fc.assert(fc.asyncProperty(nearCapBody(route, options, BODY_CAP), checkMixedBatch), assertOptions(RUNS.nearCap));
  }, 300_000);
});
