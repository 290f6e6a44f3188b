/**
 * `npm run redrive` against a real SQS-protocol server (fauxqs): messages that
 * SQS itself dead-lettered go back to the source queue with body and attributes
 * intact, and nothing is lost or left behind.
 */
import { createSqsClient } from "../../infra/aws/sdk-clients.js";
import {
  CreateQueueCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  type Message,
  ReceiveMessageCommand,
  SQSClient,
  SendMessageBatchCommand,
} from "@aws-sdk/client-sqs";
import { startLocalAws } from "../support/fauxqs.js";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { freshAttempts, main } from "../../infra/redrive.js";
import { serializeEnvelope } from "../../lib/records/envelope.js";

type Server = Awaited<ReturnType<typeof startLocalAws>>;

const REGION = "us-east-1";
let server: Server;
let sqs: SQSClient;
let stageCounter = 0;

// The SDK wants credentials even for a local endpoint; they never leave the machine.
process.env.AWS_ACCESS_KEY_ID ??= "test";
process.env.AWS_SECRET_ACCESS_KEY ??= "test";

beforeAll(async () => {
  server = await startLocalAws();
  sqs = createSqsClient(REGION, server.address);
});

afterAll(async () => {
  await server.stop();
});

interface StageQueues {
  stage: string;
  sourceUrl: string;
  deadLetterUrl: string;
}

/** The events queue pair as infra/resources/queues.yml names it, with a low maxReceiveCount. */
async function createStageQueues(queue: "events" | "deliveries"): Promise<StageQueues> {
  const stage = `t${++stageCounter}`;
  const dlq = await sqs.send(new CreateQueueCommand({ QueueName: `mixpanel-relay-${stage}-${queue}-dlq` }));
  const deadLetterUrl = dlq.QueueUrl ?? "";
  const dlqArn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: deadLetterUrl, AttributeNames: ["QueueArn"] }))).Attributes?.QueueArn;
  const source = await sqs.send(
    new CreateQueueCommand({
      QueueName: `mixpanel-relay-${stage}-${queue}`,
      Attributes: { VisibilityTimeout: "1", RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: 1 }) },
    }),
  );
  return { stage, sourceUrl: source.QueueUrl ?? "", deadLetterUrl };
}

async function drain(queueUrl: string, deleteThem: boolean, visibilityTimeout = 30): Promise<Message[]> {
  const all: Message[] = [];
  for (;;) {
    const result = await sqs.send(
      new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, MessageAttributeNames: ["All"], VisibilityTimeout: visibilityTimeout, WaitTimeSeconds: 0 }),
    );
    const messages = result.Messages ?? [];
    if (messages.length === 0) return all;
    all.push(...messages);
    if (deleteThem) for (const m of messages) await sqs.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: m.ReceiptHandle }));
  }
}

async function depth(queueUrl: string): Promise<number> {
  const result = await sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"] }),
  );
  return Number(result.Attributes?.ApproximateNumberOfMessages ?? 0) + Number(result.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0);
}

function envelope(i: number): string {
  return JSON.stringify({ v: 1, kind: "event", source: "native", correlationId: `c-${i}`, records: [JSON.stringify({ event: "e", properties: { $insert_id: `id-${i}` } })] });
}

/** Puts `count` messages on the source queue and lets SQS dead-letter them (maxReceiveCount 1). */
async function deadLetter(queues: StageQueues, count: number): Promise<string[]> {
  const bodies = Array.from({ length: count }, (_, i) => envelope(i));
  for (let i = 0; i < bodies.length; i += 10) {
    await sqs.send(
      new SendMessageBatchCommand({
        QueueUrl: queues.sourceUrl,
        Entries: bodies.slice(i, i + 10).map((body, j) => ({
          Id: String(j),
          MessageBody: body,
          MessageAttributes: { correlationId: { DataType: "String", StringValue: `c-${i + j}` } },
        })),
      }),
    );
  }
  // Receiving without deleting (visibility 0, so they come straight back) uses up the
  // one allowed receive; the next receive moves each message to the DLQ instead.
  await drain(queues.sourceUrl, false, 0);
  expect(await depth(queues.sourceUrl)).toBe(0);
  return bodies;
}

describe("npm run redrive", () => {
  let lines: string[];
  const log = (line: string) => lines.push(line);
  beforeEach(() => {
    lines = [];
  });
  const args = (stage: string, ...extra: string[]) => ["--stage", stage, "--queue", "events", "--region", REGION, "--endpoint", server.address, ...extra];

  it("moves every dead-lettered message back with its body and attributes", async () => {
    const queues = await createStageQueues("events");
    const bodies = await deadLetter(queues, 23);
    expect(await depth(queues.deadLetterUrl)).toBe(23);

    // Not a terminal: periodic plain lines with the count, the total and the rate.
    const progress: string[] = [];
    const result = await main(args(queues.stage), {}, log, { write: (text: string) => progress.push(text), isTTY: false });

    expect(result).toMatchObject({ moved: 23, failed: 0, waitingBefore: 23 });
    expect(progress[0]).toMatch(/^progress: \d+\/23 messages \(\d+%\), [\d.]+\/s\n$/);
    expect(result.timing).toMatch(/^23 messages in [\d.]+ s \([\d.]+\/s\)$/);
    expect(await depth(queues.deadLetterUrl)).toBe(0);
    const back = await drain(queues.sourceUrl, true);
    expect(back.map((m) => m.Body).sort()).toEqual([...bodies].sort());
    for (const message of back) {
      const body = JSON.parse(message.Body ?? "{}") as { correlationId: string };
      expect(message.MessageAttributes?.correlationId?.StringValue).toBe(body.correlationId);
    }
    expect(lines.at(-1)).toMatch(/23 moved.*; 23 messages in [\d.]+ s/);
  });

  it("stops after --max and leaves the rest on the DLQ", async () => {
    const queues = await createStageQueues("events");
    await deadLetter(queues, 12);
    const result = await main(args(queues.stage, "--max", "5"), {}, log);
    expect(result.moved).toBe(5);
    expect(await depth(queues.deadLetterUrl)).toBe(7);
    expect(await drain(queues.sourceUrl, true)).toHaveLength(5);
  });

  it("only counts with --dry-run", async () => {
    const queues = await createStageQueues("events");
    await deadLetter(queues, 3);
    const result = await main(args(queues.stage, "--dry-run"), {}, log);
    expect(result).toEqual({ moved: 0, failed: 0, waitingBefore: 3 });
    expect(await depth(queues.deadLetterUrl)).toBe(3);
  });

  it("redrives the deliveries queue by name and names a missing stage clearly", async () => {
    const queues = await createStageQueues("deliveries");
    await deadLetter(queues, 2);
    const result = await main(["--stage", queues.stage, "--queue", "deliveries", "--region", REGION, "--endpoint", server.address], {}, log);
    expect(result.moved).toBe(2);
    await expect(main(args("nosuchstage"), {}, log)).rejects.toThrow(/mixpanel-relay-nosuchstage-events not found/);
  });

  it("rejects a bad queue name and a missing region", async () => {
    await expect(main(["--stage", "dev", "--queue", "rejected", "--region", REGION], {}, log)).rejects.toThrow(/--queue must be one of events, deliveries/);
    await expect(main(["--stage", "dev", "--queue", "events"], {}, log)).rejects.toThrow(/no region/);
  });
});

describe("freshAttempts", () => {
  it("gives a re-queued events envelope its re-queues back and leaves other bodies unchanged", () => {
    const requeued = serializeEnvelope({ v: 1, kind: "event", source: "native", correlationId: "c", records: ['{"event":"e"}'], attempt: 6 });
    expect(JSON.parse(freshAttempts(requeued))).toEqual({ v: 1, kind: "event", source: "native", correlationId: "c", records: ['{"event":"e"}'] });
    const untouched = serializeEnvelope({ v: 1, kind: "event", source: "native", correlationId: "c", records: ['{"event":"e"}'] });
    expect(freshAttempts(untouched)).toBe(untouched);
    expect(freshAttempts('{"page":"cohort-runs/x/y"}')).toBe('{"page":"cohort-runs/x/y"}');
    expect(freshAttempts("not json")).toBe("not json");
  });
});
