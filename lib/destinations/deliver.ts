import * as z from "../util/zod.js";
import { formatZodIssues } from "../config/env.js";
import { ConfigError, RetryableError, UpstreamRejectedError, ValidationError, describeError } from "../util/errors.js";
import { type DeliveryMessage, type DeliveryPage, deliveryMessageSchema } from "../cohorts/messages.js";
import { type CohortStore, keys } from "../cohorts/store.js";
import type { CohortSync } from "../config/cohort-syncs.js";
import { type RateGate, sendBrevoPage } from "./brevo.js";
import { sendBrazePage } from "./braze.js";
import type { SenderDeps } from "./http.js";
import { sendWebhookPage } from "./webhook.js";
import { parseJson, parseJsonWith } from "../util/json.js";

/**
 * One SQS message = one page to one destination.
 *
 *  - Already in the ledger (`delivered/<action>-<page>` of its run) → skipped, so
 *    redelivery is harmless; the marker is written only after the destination said 2xx.
 *  - RetryableError (408/429/5xx/timeouts after the shared backoff) and ConfigError
 *    (missing or malformed secret, unknown sync: an operator must act) → thrown: the
 *    handler reports a batchItemFailure and SQS redrives to the DLQ after maxReceiveCount.
 *  - UpstreamRejectedError / ValidationError (every 4xx other than 408/429, 401 and
 *    403 included as Mixpanel pauses a sync on them, see destinations/http.ts; bad page) →
 *    permanent: recorded in the ledger (`failed/…json` with the response body, which
 *    the next export run reads to keep the snapshot and mark the sync unhealthy),
 *    metric `CohortSyncUnhealthy`, then sent to the DLQ with the body when a DLQ URL
 *    is configured (and acknowledged), otherwise thrown so SQS redrives it there.
 *  - A RetryableError or ConfigError on the **last** receive (ApproximateReceiveCount
 *    ≥ `maxReceives`, the queue's maxReceiveCount) is recorded the same way
 *    ("deliveries exhausted"): the page has had all its tries, so the next export
 *    tick fails the run at once and the next due run re-diffs from the last
 *    delivered snapshot, as Mixpanel retries at its next sync
 *    (docs/vendors/cohort-sync.md §1), instead of the sync looking healthy
 *    until COHORT_DELIVERY_TIMEOUT_HOURS.
 *  - A page whose run is no longer the sync's current run (superseded: failed,
 *    timed out, or a page redriven from the DLQ later) is **stale**: acknowledged
 *    and never sent, so an old diff cannot land after a newer one.
 */
export interface DeliveryDeps extends SenderDeps {
  readonly store: CohortStore;
  readonly syncs: readonly CohortSync[];
  readonly metric: (name: string, value: number, syncId: string) => void;
  readonly error: (message: string, extra?: Record<string, unknown>) => void;
  /** Sends the message plus the refusal to the deliveries DLQ. */
  readonly deadLetter?: (body: string) => Promise<void>;
  /** Brevo rate-limit state shared by every record a warm container delivers (records run one at a time). */
  readonly brevoGate?: RateGate;
  /** Digests of erased ids (lib/privacy/suppression.ts), honoured by Brevo list imports. */
  readonly brevoSuppressed?: () => Promise<ReadonlySet<string>>;
  /** The deliveries queue's maxReceiveCount; unset = never treat a receive as the last one. */
  readonly maxReceives?: number;
}

const importLedgerSchema = z.object({ process_ids: z.array(z.number().check(z.int())) });

export type DeliveryOutcome = "delivered" | "duplicate" | "dead_lettered" | "stale";

/** Exhaustive on the destination type: a new type that is not handled here does not compile. */
async function sendPage(page: DeliveryPage, sync: CohortSync, deps: DeliveryDeps): Promise<void> {
  const destination = sync.destination;
  switch (destination.type) {
    case "webhook":
      return sendWebhookPage(page, sync, destination, deps);
    case "brevo": {
      const key = keys.imports(page.sync_id, page.run_id, page.action, page.page);
      return sendBrevoPage(page, destination, deps, deps.brevoGate, {
        read: async () => {
          const bytes = await deps.store.getBytes(key);
          if (bytes === undefined) return undefined;
          const parsed = parseJsonWith(importLedgerSchema, Buffer.from(bytes).toString("utf8"));
          if (!parsed.success) throw new ValidationError(`import ledger ${key} has the wrong shape`);
          return parsed.data.process_ids;
        },
        write: (processIds) => deps.store.putBytes(key, Buffer.from(JSON.stringify({ process_ids: processIds }))),
      }, deps.brevoSuppressed);
    }
    case "braze":
      return sendBrazePage(page, destination, deps);
    default: {
      const unhandled: never = destination;
      throw new ConfigError(`no sender for destination ${JSON.stringify(unhandled)}`);
    }
  }
}

export function parseDeliveryMessage(body: string): DeliveryMessage {
  const json = parseJson(body);
  if (!json.ok) throw new ValidationError("delivery message is not JSON");
  const raw = json.value;
  // A record this function dead-lettered itself (`{message, failure}`) and an operator redrove
  // (npm run redrive moves bodies unchanged): the page inside is judged like any other (stale or not).
  const deadLettered = deadLetterRecordSchema.safeParse(raw);
  if (deadLettered.success) return deadLettered.data.message;
  const parsed = deliveryMessageSchema.safeParse(raw);
  if (!parsed.success) throw new ValidationError(`delivery message: ${formatZodIssues(parsed.error)}`);
  return parsed.data;
}

/**
 * `receiveCount` is the SQS ApproximateReceiveCount of the record (1 on the first
 * receive).
 */
export async function deliverMessage(body: string, deps: DeliveryDeps, receiveCount = 1): Promise<DeliveryOutcome> {
  const message = parseDeliveryMessage(body);
  const sync = deps.syncs.find((s) => s.id === message.sync_id);
  if (!sync) throw new ConfigError(`delivery for unknown cohort sync "${message.sync_id}" (removed from the config?)`);
  const { store } = deps;
  if (await store.isDelivered(sync.id, message.run_id, message.action, message.page)) return "duplicate";
  const state = await store.readState(sync.id);
  const currentRun = state.delivery?.run_id ?? state.export?.run_id;
  if (currentRun !== message.run_id) {
    deps.warn("cohort delivery: page of a superseded run refused as stale (never sent)", {
      syncId: sync.id,
      runId: message.run_id,
      currentRunId: currentRun ?? null,
      action: message.action,
      page: message.page,
    });
    return "stale";
  }
  const lastReceive = deps.maxReceives !== undefined && receiveCount >= deps.maxReceives;
  try {
    const page = await store.getPage(message.key);
    if (page.sync_id !== message.sync_id || page.run_id !== message.run_id || page.page !== message.page || page.action !== message.action) {
      throw new ValidationError(`page object ${message.key} does not match its message`);
    }
    await sendPage(page, sync, deps);
  } catch (error) {
    if (lastReceive && (error instanceof RetryableError || error instanceof ConfigError)) {
      return recordFailure(
        message,
        sync.id,
        deps,
        `deliveries exhausted after ${receiveCount} receive(s): ${describeError(error)}`,
        error.status,
        "",
        error,
      );
    }
    if (error instanceof ConfigError) {
      deps.metric("CohortSyncUnhealthy", 1, sync.id);
      deps.error("cohort delivery: configuration problem, left for redelivery", {
        syncId: sync.id,
        runId: message.run_id,
        error: describeError(error),
      });
      throw error;
    }
    if (!(error instanceof UpstreamRejectedError || error instanceof ValidationError)) throw error;
    const status = error instanceof UpstreamRejectedError ? error.status : undefined;
    const responseBody = error instanceof UpstreamRejectedError ? error.body : "";
    return recordFailure(message, sync.id, deps, describeError(error), status, responseBody, error);
  }
  await store.markDelivered(sync.id, message.run_id, message.action, message.page);
  return "delivered";
}

/**
 * Writes the failed ledger entry (read by the next export tick: run failed, sync
 * unhealthy), counts and logs it, then dead-letters the message with the reason.
 */
async function recordFailure(
  message: DeliveryMessage,
  syncId: string,
  deps: DeliveryDeps,
  reason: string,
  status: number | undefined,
  responseBody: string,
  error: Error,
): Promise<DeliveryOutcome> {
  await deps.store.markFailed(syncId, message.run_id, message.action, message.page, {
    at: new Date(deps.now()).toISOString(),
    ...(status !== undefined ? { status } : {}),
    error: reason,
    body: responseBody.slice(0, 10_000),
  });
  deps.metric("CohortSyncUnhealthy", 1, syncId);
  deps.error("cohort delivery failed for good; run failed, sync unhealthy", {
    syncId,
    runId: message.run_id,
    action: message.action,
    page: message.page,
    status,
    error: reason,
  });
  if (!deps.deadLetter) throw error;
  await deps.deadLetter(JSON.stringify({ message, failure: { status, error: reason, body: responseBody.slice(0, 100_000) } }));
  return "dead_lettered";
}

export const deadLetterRecordSchema = z.object({
  message: deliveryMessageSchema,
  failure: z.object({ status: z.optional(z.number()), error: z.string(), body: z.string() }),
});
