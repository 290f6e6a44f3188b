/**
 * `npm run redrive -- --stage <stage> --queue events|deliveries [--max N] [--dry-run] [--region R] [--endpoint URL]`
 *
 * Moves messages from a dead-letter queue back to its source queue, once the
 * cause is fixed (a bad Mixpanel secret, a destination that was down…). Bodies
 * and message attributes are copied unchanged, so `$insert_id` and `time` stay
 * as they were and Mixpanel deduplicates anything that did arrive before.
 *
 * It receives, sends and only then deletes: a crash in between leaves a
 * message in both queues (harmless, deduplicated), never in neither. SQS's own
 * StartMessageMoveTask does the same on AWS, but this works anywhere an SQS
 * endpoint does (the local stack, tests) and reports exactly what it moved.
 */
import { createSqsClient } from "./aws/sdk-clients.js";
import {
  DeleteMessageBatchCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  type Message,
  type MessageAttributeValue,
  ReceiveMessageCommand,
  SQSClient,
  SendMessageBatchCommand,
} from "@aws-sdk/client-sqs";
import { MAX_BATCH_ENTRIES } from "../lib/queue/sqs-sender.js";
import { groupByCaps } from "../lib/util/batching.js";
import { envelopeSchema, serializeEnvelope } from "../lib/records/envelope.js";
import { envelopeV2Schema, serializeEnvelopeV2 } from "../lib/records/envelope-v2.js";
import { type Progress, type ProgressSink, createProgress } from "./progress.js";
import { UsageError, awsTargetOptions, parseArgs, parsePositiveInt, resolveAwsTarget, runWhenExecuted } from "./cli-args.js";
import { REDRIVABLE_QUEUES, type RedrivableQueue, deadLetterQueueName, queueName } from "./stack-layout.js";
import { parseJson } from "../lib/util/json.js";

/** SendMessageBatch: at most 10 entries and 256 KiB in total (the queues' MaximumMessageSize). */
const MAX_BATCH_BYTES = 262_144;
/** Long enough to send and delete a batch; a message that fails to send reappears on the DLQ after it. */
const RECEIVE_VISIBILITY_SECONDS = 60;

export interface RedriveOptions {
  readonly sqs: SQSClient;
  readonly sourceUrl: string;
  readonly deadLetterUrl: string;
  /** Stop after this many messages (default: until the DLQ reads empty). */
  readonly max?: number;
  readonly dryRun?: boolean;
  readonly log?: (line: string) => void;
  /** Progress display, given the DLQ depth before starting (infra/progress.ts). */
  readonly progress?: (waiting: number) => Progress;
}

export interface RedriveResult {
  readonly moved: number;
  readonly failed: number;
  /** ApproximateNumberOfMessages on the DLQ before starting. */
  readonly waitingBefore: number;
  /** "N messages in T s (R/s)" when progress was shown. */
  readonly timing?: string;
}

async function approximateDepth(sqs: SQSClient, queueUrl: string): Promise<number> {
  const result = await sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ["ApproximateNumberOfMessages"] }),
  );
  return Number(result.Attributes?.ApproximateNumberOfMessages ?? 0);
}

function messageBytes(message: Message): number {
  let bytes = Buffer.byteLength(message.Body ?? "");
  for (const [name, value] of Object.entries(message.MessageAttributes ?? {})) {
    bytes += Buffer.byteLength(name) + Buffer.byteLength(value.DataType ?? "");
    bytes += value.StringValue !== undefined ? Buffer.byteLength(value.StringValue) : (value.BinaryValue?.byteLength ?? 0);
  }
  return bytes;
}

function groupForSend(messages: readonly Message[]): Message[][] {
  return groupByCaps(messages, messageBytes, MAX_BATCH_ENTRIES, MAX_BATCH_BYTES);
}

/** Only the attribute fields SendMessage accepts (ReceiveMessage also returns list fields). */
function copyAttributes(attributes: Record<string, MessageAttributeValue> | undefined): Record<string, MessageAttributeValue> | undefined {
  if (!attributes || Object.keys(attributes).length === 0) return undefined;
  return Object.fromEntries(
    Object.entries(attributes).map(([name, value]) => [
      name,
      {
        DataType: value.DataType,
        ...(value.StringValue !== undefined ? { StringValue: value.StringValue } : {}),
        ...(value.BinaryValue !== undefined ? { BinaryValue: value.BinaryValue } : {}),
      },
    ]),
  );
}

/**
 * An events envelope the forwarder re-queued carries an `attempt` count; after a
 * redrive the operator has fixed the cause, so the records get their full share of
 * re-queues again. Anything else (deliveries pages, unreadable bodies) moves unchanged.
 */
export function freshAttempts(body: string): string {
  const json = parseJson(body);
  if (!json.ok) return body;
  const parsed = json.value;
  const v2 = envelopeV2Schema.safeParse(parsed);
  if (v2.success) {
    if (v2.data.attempt === undefined) return body;
    const { attempt: _spent, ...rest } = v2.data;
    return serializeEnvelopeV2(rest);
  }
  const envelope = envelopeSchema.safeParse(parsed);
  if (!envelope.success || envelope.data.attempt === undefined) return body;
  const { attempt: _spent, ...rest } = envelope.data;
  return serializeEnvelope(rest);
}

export async function redriveMessages(options: RedriveOptions): Promise<RedriveResult> {
  const { sqs, sourceUrl, deadLetterUrl } = options;
  const log = options.log ?? (() => undefined);
  const waitingBefore = await approximateDepth(sqs, deadLetterUrl);
  if (options.dryRun) {
    log(`dry run: ${waitingBefore} message(s) waiting on ${deadLetterUrl}; nothing moved`);
    return { moved: 0, failed: 0, waitingBefore };
  }
  const limit = options.max ?? Number.POSITIVE_INFINITY;
  const progress = options.progress?.(Math.min(waitingBefore, limit));
  let moved = 0;
  let failed = 0;
  while (moved + failed < limit) {
    const received = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: deadLetterUrl,
        MaxNumberOfMessages: Math.min(MAX_BATCH_ENTRIES, limit - moved - failed),
        VisibilityTimeout: RECEIVE_VISIBILITY_SECONDS,
        WaitTimeSeconds: 1,
        MessageAttributeNames: ["All"],
      }),
    );
    const messages = received.Messages ?? [];
    // Messages that failed to send stay invisible for RECEIVE_VISIBILITY_SECONDS, so
    // an empty receive means everything visible has been handled.
    if (messages.length === 0) break;
    for (const group of groupForSend(messages)) {
      const sent = await sqs.send(
        new SendMessageBatchCommand({
          QueueUrl: sourceUrl,
          Entries: group.map((message, index) => ({
            Id: String(index),
            MessageBody: freshAttempts(message.Body ?? ""),
            MessageAttributes: copyAttributes(message.MessageAttributes),
          })),
        }),
      );
      for (const failure of sent.Failed ?? []) {
        log(`could not send message ${group[Number(failure.Id)]?.MessageId}: ${failure.Code} ${failure.Message ?? ""}; it stays on the DLQ`);
      }
      const sentIds = new Set((sent.Successful ?? []).map((entry) => entry.Id));
      const toDelete = group.flatMap((message, index) => (sentIds.has(String(index)) ? [{ Id: String(index), ReceiptHandle: message.ReceiptHandle ?? "" }] : []));
      failed += group.length - toDelete.length;
      if (toDelete.length === 0) continue;
      const deleted = await sqs.send(new DeleteMessageBatchCommand({ QueueUrl: deadLetterUrl, Entries: toDelete }));
      for (const failure of deleted.Failed ?? []) {
        // Already on the source queue: a copy left on the DLQ is a duplicate Mixpanel drops.
        log(`sent but could not delete message ${group[Number(failure.Id)]?.MessageId} from the DLQ: ${failure.Code}`);
      }
      moved += toDelete.length;
      progress?.advance(group.length);
    }
  }
  const timing = progress?.finish();
  return { moved, failed, waitingBefore, ...(timing ? { timing } : {}) };
}

export async function resolveQueueUrls(sqs: SQSClient, stage: string, queue: RedrivableQueue): Promise<{ sourceUrl: string; deadLetterUrl: string }> {
  const lookup = async (name: string) => {
    try {
      const result = await sqs.send(new GetQueueUrlCommand({ QueueName: name }));
      if (!result.QueueUrl) throw new Error("no QueueUrl in the answer");
      return result.QueueUrl;
    } catch (error) {
      throw new Error(`queue ${name} not found (is stage "${stage}" deployed in this region?): ${error instanceof Error ? error.message : String(error)}`);
    }
  };
  return { sourceUrl: await lookup(queueName(stage, queue)), deadLetterUrl: await lookup(deadLetterQueueName(stage, queue)) };
}

const USAGE = `usage: npm run redrive -- --stage <stage> --queue ${REDRIVABLE_QUEUES.join("|")} [--max N] [--dry-run] [--region R] [--endpoint URL]`;

export async function main(
  argv: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
  log: (line: string) => void = console.log,
  progressSink?: ProgressSink,
): Promise<RedriveResult> {
  const { values } = parseArgs({
    args: [...argv],
    options: { ...awsTargetOptions, queue: { type: "string", short: "q" }, max: { type: "string" }, "dry-run": { type: "boolean" } },
    strict: true,
  });
  if (values.help) {
    log(USAGE);
    return { moved: 0, failed: 0, waitingBefore: 0 };
  }
  const target = resolveAwsTarget(values, env);
  const queue = values.queue as RedrivableQueue | undefined;
  if (!queue || !REDRIVABLE_QUEUES.includes(queue)) throw new UsageError(`--queue must be one of ${REDRIVABLE_QUEUES.join(", ")}`);
  const sqs = createSqsClient(target.region, target.endpoint);
  const urls = await resolveQueueUrls(sqs, target.stage, queue);
  log(`redrive ${deadLetterQueueName(target.stage, queue)} → ${queueName(target.stage, queue)} (${target.region}${target.endpoint ? ` via ${target.endpoint}` : ""})`);
  const result = await redriveMessages({
    sqs,
    ...urls,
    max: parsePositiveInt(values.max, "--max"),
    dryRun: values["dry-run"] ?? false,
    log,
    progress: (waiting) => createProgress({ unit: "messages", total: waiting, ...(progressSink ? { sink: progressSink } : {}) }),
  });
  log(
    `done: ${result.moved} moved, ${result.failed} left on the DLQ after a failed send (${result.waitingBefore} were waiting)` +
      (result.timing ? `; ${result.timing}` : ""),
  );
  return result;
}

runWhenExecuted(import.meta.url, "redrive", USAGE, async () => ((await main(process.argv.slice(2))).failed > 0 ? 1 : 0));
