import type { BrevoConfig } from "../config/brevo.js";
import { brevoQueueBodies, sendToBrevoQueue } from "./brevo-fanout.js";
import { type ErasedMatcher, erasedMatcher } from "./erased.js";
import { protectItems } from "../pii/items.js";
import type { PiiPolicy } from "../pii/policy.js";
import { count } from "../observability/telemetry.js";
import { insertIdHash } from "../observability/trace-ids.js";
import type { RejectedItemRecord, RejectedStore } from "../queue/rejected-store.js";
import type { QueueSender } from "../queue/sqs-sender.js";
import type { RecordKind } from "../records/envelope.js";
import { packEnvelopesV2 } from "../records/envelope-v2.js";
import type { MappedItem, RejectedItem } from "../sources/types.js";

/**
 * The one enqueue step of every edge that maps records (the HTTP intake's routes and the
 * Currents Avro reader): applies the stage's PII rules, packs the mapped records into queue
 * envelopes per kind, sends them to the events queue (and the Brevo fan-out), and puts every
 * rejection in the rejected store with its reason.
 *
 * A record too large for one SQS message is stored with `line` (the Mixpanel record, as for
 * every rejection that became one) in a batch that names its `kind`, so `npm run replay` can
 * re-queue it once the limit allows; the mappers' rejections keep the input as `payload`.
 *
 * Records of erased people (lib/enqueue/erased.ts, the list `npm run gdpr:delete` writes) are
 * dropped first, before the PII rules could hash their ids: answered as dropped with code
 * `erased` and counted (`ErasedRecordsDropped`), never queued nor stored, their payload nowhere.
 *
 * Throws RetryableError/ConfigError when SQS or S3 fail (or the erased-ids list cannot be read): the intake answers 503, the reader
 * lets Lambda retry. Nothing is queued without the PII rules applied. The queued events' hashed
 * `$insert_id`s come back for the edge's log line (`npm run trace`, lib/observability/trace-ids.ts).
 */
export interface EnqueueDeps {
  readonly config: { readonly brevo?: BrevoConfig | undefined };
  readonly queue: QueueSender;
  /**
   * The events queue. Absent when the records are already in Mixpanel (the Brevo history
   * backfill, lib/backfill): only the Brevo fan-out queues them, and a Brevo queue failure is
   * thrown to the caller, as no other queue has taken the batch.
   */
  readonly queueUrl?: string | undefined;
  /** The Brevo queue; set when the stage config has a `brevo` block (lib/enqueue/brevo-fanout.ts). */
  readonly brevoQueueUrl?: string | undefined;
  readonly rejected: RejectedStore;
  readonly maxMessageBytes: number;
  /**
   * The SHA-256 digests of the ids erased now (lib/privacy/suppression.ts, cached per container);
   * absent = no list. Throws RetryableError when the list cannot be read: nothing is accepted then.
   */
  readonly erasedDigests?: (() => Promise<ReadonlySet<string>>) | undefined;
}

export interface EnqueueBatch {
  readonly source: string;
  readonly correlationId: string;
  /** Which edge this is, as the rejected store names it. */
  readonly stageOfFailure: "intake" | "reader";
  /** The stage's personal-data rules; undefined = none. */
  readonly policy: PiiPolicy | undefined;
}

export interface EnqueueResult {
  /** Records put on the events queue (on the Brevo queue when there is no events queue). */
  readonly accepted: number;
  /** Every rejection, in input order, for the sender's answer (oversized records included). */
  readonly rejections: readonly RejectedItem[];
  /** Hashed `$insert_id`s of the events queued, for the edge's log line (never the ids themselves). */
  readonly insertIdHashes: readonly string[];
}

export const RECORD_TOO_LARGE = "record_too_large_for_queue";
export const ERASED = "erased";
export const ERASED_METRIC = "ErasedRecordsDropped";

function payloadText(payload: unknown): string {
  try {
    return JSON.stringify(payload) ?? "";
  } catch {
    return "";
  }
}

/** Replaces the records of erased people by payload-free drops; the same list when there are none. */
function withoutErased(items: readonly MappedItem[], matcher: ErasedMatcher | undefined): readonly MappedItem[] {
  if (matcher === undefined) return items;
  let kept: MappedItem[] | undefined;
  let erased = 0;
  for (let position = 0; position < items.length; position++) {
    const item = items[position] as MappedItem;
    if (!matcher.isErased(item.ok ? item.line : payloadText(item.payload))) continue;
    kept ??= [...items];
    kept[position] = { ok: false, index: item.index, code: ERASED, reason: "the person was erased (npm run gdpr:delete)", payload: undefined, dropped: true };
    erased++;
  }
  count(ERASED_METRIC, erased);
  return kept ?? items;
}

export async function enqueueMappedItems(items: readonly MappedItem[], batch: EnqueueBatch, deps: EnqueueDeps): Promise<EnqueueResult> {
  const { source, correlationId, stageOfFailure } = batch;
  const linesByKind = new Map<RecordKind, { lines: string[]; indexes: number[]; insertIds: (string | undefined)[] }>();
  const rejections: RejectedItem[] = [];
  // Stored per kind, so replay knows what an oversized `line` is; mapper rejections carry no kind.
  const storedByKind = new Map<RecordKind | undefined, RejectedItemRecord[]>();
  const store = (kind: RecordKind | undefined, record: RejectedItemRecord): void => {
    const group = storedByKind.get(kind) ?? [];
    group.push(record);
    storedByKind.set(kind, group);
  };

  const matcher = erasedMatcher(await deps.erasedDigests?.(), deps.config.brevo);
  // Senders' own `token` / `$token` properties the mappers removed (lib/sources/caller-tokens.ts).
  let callerTokensRemoved = 0;
  for (const item of protectItems(withoutErased(items, matcher), batch.policy)) {
    if (!item.ok) {
      rejections.push(item);
      // Never stored: the record of an erased person is kept nowhere.
      if (item.code === ERASED && item.dropped === true) continue;
      const { index, code, reason, payload, dropped } = item;
      store(undefined, { index, code, reason, payload, ...(dropped ? { dropped } : {}) });
      continue;
    }
    callerTokensRemoved += item.callerTokensRemoved ?? 0;
    const group = linesByKind.get(item.kind) ?? { lines: [], indexes: [], insertIds: [] };
    group.lines.push(item.line);
    group.indexes.push(item.index);
    group.insertIds.push(item.insertId);
    linesByKind.set(item.kind, group);
  }

  count("CallerTokensRemoved", callerTokensRemoved);

  const bodies: string[] = [];
  const queuedInsertIdHashes: string[] = [];
  let accepted = 0;
  for (const [kind, group] of linesByKind) {
    const packed = packEnvelopesV2(kind, source, correlationId, group.lines, { maxMessageBytes: deps.maxMessageBytes });
    bodies.push(...packed.bodies);
    accepted += group.lines.length - packed.oversizedIndexes.length;
    const oversized = new Set(packed.oversizedIndexes);
    group.insertIds.forEach((insertId, position) => {
      if (insertId !== undefined && !oversized.has(position)) queuedInsertIdHashes.push(insertIdHash(insertId));
    });
    for (const position of packed.oversizedIndexes) {
      const index = group.indexes[position] ?? -1;
      const reason = `record does not fit in one SQS message of ${deps.maxMessageBytes} bytes`;
      rejections.push({ ok: false, index, code: RECORD_TOO_LARGE, reason, payload: undefined });
      store(kind, { index, code: RECORD_TOO_LARGE, reason, line: group.lines[position] });
    }
  }
  rejections.sort((a, b) => a.index - b.index);

  // Fan-out: the same accepted (already PII-protected) records, for the kinds brevo.sync enables, on the Brevo queue.
  const brevoBodies = deps.brevoQueueUrl
    ? brevoQueueBodies(deps.config.brevo, new Map([...linesByKind].map(([kind, group]) => [kind, group.lines])), source, correlationId, deps.maxMessageBytes)
    : [];

  // The rejections are stored before anything is queued: when the store fails the caller answers
  // 503 with nothing queued, so the sender's retry queues each good record once, not once per try.
  if (storedByKind.size > 0) {
    await Promise.all(
      [...storedByKind].map(([kind, stored]) =>
        deps.rejected.put({
          source,
          ...(kind !== undefined ? { kind } : {}),
          correlationId,
          stageOfFailure,
          items: stored.sort((a, b) => a.index - b.index),
        }),
      ),
    );
  }
  await Promise.all([
    bodies.length > 0 && deps.queueUrl !== undefined ? deps.queue.send(deps.queueUrl, bodies) : Promise.resolve(),
    deps.brevoQueueUrl === undefined || brevoBodies.length === 0
      ? Promise.resolve()
      : deps.queueUrl === undefined
        ? deps.queue.send(deps.brevoQueueUrl, brevoBodies)
        : sendToBrevoQueue(deps, deps.brevoQueueUrl, brevoBodies, stageOfFailure),
  ]);
  return { accepted, rejections, insertIdHashes: queuedInsertIdHashes };
}
