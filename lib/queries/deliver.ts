import { UpstreamRejectedError, ValidationError, describeError } from "../util/errors.js";
import type { QuerySync } from "../config/query-syncs.js";
import type { RecordOutcome } from "../queue/envelope-consumer.js";
import { type SenderDeps, apiKeySecretSchema, chunkOf } from "../destinations/http.js";
import { BRAZE_ATTRIBUTES_PER_CALL, postBrazeAttributes } from "../destinations/braze.js";
import { sendSignedWebhook } from "../destinations/webhook.js";
import { destinationValues } from "./diff.js";
import type { QueryRow } from "./rows.js";

/**
 * Sends the rows of one run to the sync's destination and says, row by row, whether the far
 * side took it. Only a `sent` row counts as delivered (and has its hash remembered):
 *
 * - `brevo_attributes`: each row becomes the `/engage` `$set` the Brevo connector already knows
 *   (`{"$distinct_id": key, "$set": {field: value}}`) and goes through the connector's contact
 *   path (lib/brevo/contacts.ts mapper, lib/forwarder/brevo.ts sends: `POST /v3/contacts` with
 *   `updateEnabled`, the `brevo.identifiers` rules, the per-bucket rate gates and the erased-ids
 *   list), with the sync's `attributes` as the property mapping.
 * - `webhook`: pages of WEBHOOK_ROWS_PER_PAGE rows, signed like the cohort webhook
 *   (lib/destinations/signature.ts), one delivery id per page, the receiver's
 *   `{"status":"failure"}` reply honoured.
 * - `braze_attributes`: `POST /users/track` with 75 attribute objects per call (Braze's cap).
 */
export const WEBHOOK_ROWS_PER_PAGE = 1000;
/** Rows handed to the Brevo connector's sender at a time (it sends one contact call per row). */
export const BREVO_ROWS_PER_BATCH = 100;

export type RowOutcome =
  | { readonly status: "sent" }
  | { readonly status: "rejected"; readonly reason: string }
  | { readonly status: "retry"; readonly reason: string };

export type BrevoProfileSend = (kind: "profile", lines: readonly string[]) => Promise<RecordOutcome[]>;

export interface QueryDeliveryDeps extends SenderDeps {
  /** The connector's contact sender with the sync's attributes as its property mapping. */
  readonly brevoSend: (attributes: Readonly<Record<string, string>>) => Promise<BrevoProfileSend>;
  readonly projectId: () => string;
}

export interface QueryWebhookBody {
  action: "query_rows";
  parameters: {
    mixpanel_project_id: string;
    query_sync_id: string;
    run_id: string;
    page_info: { total_pages: number; page_count: number };
    rows: { key: string; values: Record<string, unknown> }[];
  };
}

/** Pure: the webhook body of one page. */
export function queryWebhookBody(sync: QuerySync, rows: readonly QueryRow[], runId: string, page: number, totalPages: number, projectId: string): QueryWebhookBody {
  return {
    action: "query_rows",
    parameters: {
      mixpanel_project_id: projectId,
      query_sync_id: sync.id,
      run_id: runId,
      page_info: { total_pages: totalPages, page_count: page },
      rows: rows.map((row) => ({ key: row.key, values: destinationValues(row, sync.destination) })),
    },
  };
}

/** Pure: the connector's `/engage` `$set` line for a row (values under the result field names). */
export function brevoProfileLine(row: QueryRow): string {
  return JSON.stringify({ $distinct_id: row.key, $set: row.values });
}

function failed(error: unknown): RowOutcome {
  if (error instanceof UpstreamRejectedError || error instanceof ValidationError) return { status: "rejected", reason: describeError(error) };
  return { status: "retry", reason: describeError(error) };
}

function fromRecord(outcome: RecordOutcome | undefined): RowOutcome {
  if (outcome === undefined) return { status: "retry", reason: "no outcome from the Brevo sender" };
  switch (outcome.status) {
    case "sent":
      return { status: "sent" };
    case "rejected":
      return { status: "rejected", reason: outcome.reason };
    case "skipped":
      // no_identifier / nothing_mapped: Brevo never saw the row; the operator must fix the data or the mapping.
      return { status: "rejected", reason: `brevo ${outcome.code}: the row names no contact through brevo.identifiers, or maps nothing` };
    default:
      return { status: "retry", reason: outcome.reason };
  }
}

async function deliverBrevo(sync: QuerySync, rows: readonly QueryRow[], deps: QueryDeliveryDeps): Promise<RowOutcome[]> {
  const send = await deps.brevoSend(sync.destination.attributes);
  const outcomes: RowOutcome[] = [];
  for (const batch of chunkOf(rows, BREVO_ROWS_PER_BATCH)) {
    const records = await send("profile", batch.map(brevoProfileLine));
    batch.forEach((_, index) => outcomes.push(fromRecord(records[index])));
  }
  return outcomes;
}

/**
 * Sends `chunks` one after the other, one outcome per row. An outage or a refused key applies
 * to the next chunks too: once one is to be retried, the rest wait for the next run unsent.
 */
async function deliverChunks(chunks: readonly (readonly QueryRow[])[], send: (chunk: readonly QueryRow[], index: number) => Promise<void>): Promise<RowOutcome[]> {
  const outcomes: RowOutcome[] = [];
  let blocked: RowOutcome | undefined;
  for (const [index, chunk] of chunks.entries()) {
    let outcome: RowOutcome = { status: "sent" };
    if (blocked) {
      outcome = blocked;
    } else {
      try {
        await send(chunk, index);
      } catch (error) {
        outcome = failed(error);
        if (outcome.status === "retry") blocked = outcome;
      }
    }
    for (let row = 0; row < chunk.length; row++) outcomes.push(outcome);
  }
  return outcomes;
}

async function deliverWebhook(sync: QuerySync, rows: readonly QueryRow[], runId: string, deps: QueryDeliveryDeps): Promise<RowOutcome[]> {
  const destination = sync.destination;
  if (destination.type !== "webhook") throw new Error("not a webhook destination");
  const pages = chunkOf(rows, WEBHOOK_ROWS_PER_PAGE);
  return deliverChunks(pages, (page, index) =>
    sendSignedWebhook(
      destination,
      {
        body: JSON.stringify(queryWebhookBody(sync, page, runId, index, pages.length, deps.projectId())),
        deliveryId: `${runId}:query_rows:${index}`,
        userAgent: "mixpanel-relay query-sync",
      },
      deps,
    ),
  );
}

async function deliverBraze(sync: QuerySync, rows: readonly QueryRow[], deps: QueryDeliveryDeps): Promise<RowOutcome[]> {
  const destination = sync.destination;
  if (destination.type !== "braze_attributes") throw new Error("not a Braze destination");
  return deliverChunks(chunkOf(rows, BRAZE_ATTRIBUTES_PER_CALL), async (chunk) => {
    const { api_key: apiKey } = await deps.secrets.getJson(destination.api_key_secret, apiKeySecretSchema);
    const attributes = chunk.map((row) => ({
      ...destinationValues(row, destination),
      external_id: row.key,
      _update_existing_only: destination.update_existing_only,
    }));
    await postBrazeAttributes(destination, apiKey, attributes, deps);
  });
}

/** One outcome per row, in order. Exhaustive on the destination type. */
export async function deliverRows(sync: QuerySync, rows: readonly QueryRow[], runId: string, deps: QueryDeliveryDeps): Promise<RowOutcome[]> {
  if (rows.length === 0) return [];
  const type = sync.destination.type;
  try {
    switch (type) {
      case "brevo_attributes":
        return await deliverBrevo(sync, rows, deps);
      case "webhook":
        return await deliverWebhook(sync, rows, runId, deps);
      case "braze_attributes":
        return await deliverBraze(sync, rows, deps);
      default: {
        const unhandled: never = type;
        throw new Error(`unhandled query destination ${String(unhandled)}`);
      }
    }
  } catch (error) {
    // Not an answer about a row (a missing brevo block, an unreadable secret): nothing was delivered.
    const reason = describeError(error);
    return rows.map(() => ({ status: "retry", reason }));
  }
}
