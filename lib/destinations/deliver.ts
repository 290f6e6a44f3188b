import * as z from "zod";
import { formatZodIssues } from "../config/env.js";
import { ConfigError, UpstreamRejectedError, ValidationError, describeError } from "../errors.js";
import { type DeliveryMessage, deliveryMessageSchema } from "../cohorts/messages.js";
import type { CohortStore } from "../cohorts/store.js";
import type { CohortSync } from "../cohorts/sync-config.js";
import { type RateGate, sendBrevoPage } from "./brevo.js";
import { sendBrazePage } from "./braze.js";
import type { SenderDeps } from "./http.js";
import { sendWebhookPage } from "./webhook.js";

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
}

export type DeliveryOutcome = "delivered" | "duplicate" | "dead_lettered";

export function parseDeliveryMessage(body: string): DeliveryMessage {
  let raw: unknown;
  try {
    raw = JSON.parse(body);
  } catch {
    throw new ValidationError("delivery message is not JSON");
  }
  const parsed = deliveryMessageSchema.safeParse(raw);
  if (!parsed.success) throw new ValidationError(`delivery message: ${formatZodIssues(parsed.error)}`);
  return parsed.data;
}

export async function deliverMessage(body: string, deps: DeliveryDeps): Promise<DeliveryOutcome> {
  const message = parseDeliveryMessage(body);
  const sync = deps.syncs.find((s) => s.id === message.sync_id);
  if (!sync) throw new ConfigError(`delivery for unknown cohort sync "${message.sync_id}" (removed from the config?)`);
  const { store } = deps;
  if (await store.isDelivered(sync.id, message.run_id, message.action, message.page)) return "duplicate";
  try {
    const page = await store.getPage(message.key);
    if (page.sync_id !== message.sync_id || page.run_id !== message.run_id || page.page !== message.page || page.action !== message.action) {
      throw new ValidationError(`page object ${message.key} does not match its message`);
    }
    const destination = sync.destination;
    if (destination.type === "webhook") await sendWebhookPage(page, sync, destination, deps);
    else if (destination.type === "brevo") await sendBrevoPage(page, destination, deps, deps.brevoGate);
    else await sendBrazePage(page, destination, deps);
  } catch (error) {
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
    await store.markFailed(sync.id, message.run_id, message.action, message.page, {
      at: new Date(deps.now()).toISOString(),
      ...(status !== undefined ? { status } : {}),
      error: describeError(error),
      body: responseBody.slice(0, 10_000),
    });
    deps.metric("CohortSyncUnhealthy", 1, sync.id);
    deps.error("cohort delivery refused permanently; sync unhealthy", {
      syncId: sync.id,
      runId: message.run_id,
      action: message.action,
      page: message.page,
      status,
      error: describeError(error),
    });
    if (!deps.deadLetter) throw error;
    await deps.deadLetter(
      JSON.stringify({ message, failure: { status, error: describeError(error), body: responseBody.slice(0, 100_000) } }),
    );
    return "dead_lettered";
  }
  await store.markDelivered(sync.id, message.run_id, message.action, message.page);
  return "delivered";
}

export const deadLetterRecordSchema = z.object({
  message: deliveryMessageSchema,
  failure: z.object({ status: z.number().optional(), error: z.string(), body: z.string() }),
});
