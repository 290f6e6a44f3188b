import * as z from "../util/zod.js";
import { RetryableError, UpstreamRejectedError } from "../util/errors.js";
import type { HttpResult } from "../http/fetch.js";
import type { DeliveryPage, PageMember } from "../cohorts/messages.js";
import type { BrevoDestination } from "../config/cohort-syncs.js";
import { type SenderDeps, apiKeySecretSchema, chunkOf, text, throwForDestinationStatus } from "./http.js";
import { parseJsonWith } from "../util/json.js";
import { idDigest } from "../privacy/suppression.js";
import { type BrevoRateGates, newBrevoRateGates } from "../brevo/rate-limits.js";
import { createBrevoClient } from "../brevo/client.js";

/**
 * Brevo lists (docs/vendors/cohort-sync.md §3). A page is at most a handful of calls,
 * so it always fits in one webhook-delivery invocation:
 *
 *  - `members` / `add_members`: **one** `POST /contacts/import` (more only if the
 *    body would pass 8 MB) with `jsonBody: [{email, attributes}]`, `listIds: [list]`,
 *    `updateExistingContacts: true`, `emptyContactsAttributes: false`: upserts the
 *    contacts and adds them to the list. Brevo answers 202 `{processId}` and runs the
 *    import asynchronously: the process ids are kept in the run's `imports/` ledger
 *    and `GET /processes/{id}` is checked (at once, then on each redelivery of the
 *    page, never re-importing) until every process is `completed`; only then is the
 *    page delivered. A repeat import is idempotent.
 *  - `remove_members`: `/contacts/lists/{id}/contacts/remove` in chunks of 150
 *    (the import cannot remove), ≤ 7 calls per page of 1000.
 *
 * Never `/contacts/batch` (deprecated 2026-10-30). Members without an email are skipped.
 * Every call goes through the connector's client (lib/brevo/client.ts: Brevo's SDK, no
 * redirects, one try per SDK call): its rate gate (`x-sib-ratelimit-remaining` 0 → no call
 * before `x-sib-ratelimit-reset` seconds; 429 → back off by the same header), shared by the
 * records of a warm container (processed one at a time), and its deadline rule: a wait or a
 * call that does not fit in the invocation's remaining time (`retryDeps.remainingMs`) throws
 * RetryableError at once so SQS redelivers the page (idempotently) instead of sleeping past
 * the Lambda deadline. What a refusal means is the destinations' status rule (lib/destinations/http.ts).
 */
export const BREVO_LIST_CHUNK = 150;
/** Brevo caps an import body at 10 MB and advises 8 MB. */
export const BREVO_IMPORT_MAX_BYTES = 8_000_000;

/**
 * The Brevo rate-limit gates (lib/brevo/rate-limits.ts, shared with the connector's client): `/contacts/*` calls wait on the contacts
 * bucket, `/processes/{id}` on "all other endpoints" (100 per hour on the General tier).
 */
export type RateGate = BrevoRateGates;

export function brevoAttributes(member: PageMember, mapping: Record<string, string>): Record<string, unknown> {
  const attributes: Record<string, unknown> = {};
  for (const [property, attribute] of Object.entries(mapping)) {
    const value = member.props[property];
    if (value !== undefined && value !== null && value !== "") attributes[attribute] = value;
  }
  return attributes;
}

export function memberEmail(member: PageMember, emailProperty = "$email"): string | undefined {
  const email = text(member.props[emailProperty]).trim();
  return email.includes("@") ? email : undefined;
}

export interface BrevoImportContact {
  email: string;
  attributes: Record<string, unknown>;
}

/** One `POST /contacts/import` request (docs/vendors/cohort-sync.md §3): upsert the contacts and add them to the list. */
export interface BrevoImportRequest {
  readonly jsonBody: BrevoImportContact[];
  readonly listIds: [number];
  readonly updateExistingContacts: true;
  readonly emptyContactsAttributes: false;
}

/**
 * Pure: the `/contacts/import` requests of one page, each at most `maxBytes` of JSON
 * (a single contact larger than that still gets its own request; Brevo judges it).
 */
export function brevoImportRequests(
  contacts: readonly BrevoImportContact[],
  listId: number,
  maxBytes: number = BREVO_IMPORT_MAX_BYTES,
): BrevoImportRequest[] {
  const request = (jsonBody: BrevoImportContact[]): BrevoImportRequest => ({
    jsonBody,
    listIds: [listId],
    updateExistingContacts: true,
    emptyContactsAttributes: false,
  });
  const overhead = Buffer.byteLength(JSON.stringify(request([])));
  const requests: BrevoImportRequest[] = [];
  let batch: BrevoImportContact[] = [];
  let bytes = overhead;
  for (const contact of contacts) {
    const size = Buffer.byteLength(JSON.stringify(contact));
    if (batch.length > 0 && bytes + 1 + size > maxBytes) {
      requests.push(request(batch));
      batch = [];
      bytes = overhead;
    }
    bytes += (batch.length > 0 ? 1 : 0) + size; // 1 = the comma
    batch.push(contact);
  }
  if (batch.length > 0) requests.push(request(batch));
  return requests;
}

/** Brevo's answer to an idempotent repeat ("already removed", "does not exist"). */
function isHarmlessListRefusal(result: HttpResult): boolean {
  return result.status === 400 && /already (in|removed)|does not exist/i.test(result.body);
}

/**
 * Where a page's import process ids are kept between receives (the run's
 * `imports/` ledger): a page accepted with 202 counts as delivered only once
 * every process reports `completed`.
 */
export interface ImportLedger {
  read(): Promise<number[] | undefined>;
  write(processIds: number[]): Promise<void>;
}

const importReplySchema = z.object({ processId: z.coerce.number().check(z.int()) });
/**
 * `GET /v3/processes/{id}` (docs/vendors/cohort-sync.md §3, https://developers.brevo.com/reference/get-process):
 * queued → processing (older specs: in_process) → completed, or the failures failed / cancelled.
 * Only those three end a process; any other status, known or not, means it is still running.
 */
const processSchema = z.looseObject({ id: z.optional(z.coerce.number()), status: z.string(), name: z.optional(z.string()) });
const PROCESS_FAILED = new Set(["failed", "cancelled"]);

export async function sendBrevoPage(
  page: DeliveryPage,
  destination: BrevoDestination,
  deps: SenderDeps,
  gates: RateGate = newBrevoRateGates(),
  imports?: ImportLedger,
  /** Digests of erased ids (lib/privacy/suppression.ts): such members are never imported (that would recreate the contact). */
  suppressed?: () => Promise<ReadonlySet<string>>,
): Promise<void> {
  const { api_key: apiKey } = await deps.secrets.getJson(destination.api_key_secret, apiKeySecretSchema);
  // The connector's client (Brevo's SDK, the shared rate gates, the deadline and retry rules) over
  // this destination's guarded fetch; its base_url was checked against the stage's address rule
  // when the config was read. Refusals of the request itself come back to this sender, which
  // judges them by the destinations' status rule.
  const client = createBrevoClient({
    fetch: deps.network.fetchFor(destination.allow_private_network),
    baseUrl: destination.base_url,
    apiKey: async () => apiKey,
    timeoutMs: deps.timeoutMs,
    retryDeps: deps.retryDeps,
    ...(deps.retryPolicy !== undefined ? { retryPolicy: deps.retryPolicy } : {}),
    now: deps.now,
    gates,
    refusalsJudgedBy: "caller",
  });

  async function call(method: "GET" | "POST", path: string, body: unknown, what: string, harmless?: (r: HttpResult) => boolean): Promise<HttpResult> {
    const result = await client.call(method, path, body);
    if (harmless?.(result)) return result;
    throwForDestinationStatus(result, `Brevo ${what}`, deps.now());
    return result;
  }

  const members: { email: string; member: PageMember }[] = [];
  const seen = new Set<string>();
  for (const member of page.members) {
    const email = memberEmail(member, destination.email_property);
    if (!email) continue;
    const key = email.toLowerCase();
    if (seen.has(key)) continue;
    seen.add(key);
    members.push({ email, member });
  }
  const skipped = page.members.length - members.length;
  if (skipped > 0) deps.warn("brevo: members without email skipped", { skipped, action: page.action, page: page.page });
  if (page.action !== "remove_members" && suppressed) {
    // Fails closed: an unreadable erased-ids list throws (RetryableError) and nothing is imported.
    const erased = await suppressed();
    if (erased.size > 0) {
      const before = members.length;
      const kept = members.filter(({ email, member }) => !erased.has(idDigest(member.id)) && !erased.has(idDigest(email)) && !erased.has(idDigest(email.toLowerCase())));
      members.splice(0, members.length, ...kept);
      if (kept.length < before) deps.warn("brevo: erased members not imported", { suppressed: before - kept.length, action: page.action, page: page.page });
    }
  }

  if (page.action === "remove_members") {
    const path = `/contacts/lists/${destination.list_id}/contacts/remove`;
    for (const emails of chunkOf(members.map((m) => m.email), BREVO_LIST_CHUNK)) {
      await call("POST", path, { emails }, "list remove", isHarmlessListRefusal);
    }
    return;
  }
  /** Throws unless every import process of this page has completed. */
  async function checkProcesses(processIds: readonly number[]): Promise<void> {
    for (const processId of processIds) {
      const result = await call("GET", `/processes/${processId}`, undefined, "process status");
      const process = parseJsonWith(processSchema, result.body);
      if (!process.success) throw new RetryableError(`Brevo process ${processId}: unreadable status answer ${result.body.slice(0, 200)}`);
      const { status } = process.data;
      if (status === "completed") continue;
      if (!PROCESS_FAILED.has(status)) {
        // Not delivered yet: SQS hands the page back after its visibility timeout and the
        // next receive checks again (no re-import); the last receive records it as failed.
        throw new RetryableError(`Brevo import process ${processId} is still ${status}; checked again on the next receive`);
      }
      throw new UpstreamRejectedError(`Brevo import process ${processId} ended as "${status}"`, 422, result.body);
    }
  }

  const pending = await imports?.read();
  if (pending !== undefined) {
    await checkProcesses(pending);
    return;
  }
  const contacts = members.map(({ email, member }) => ({ email, attributes: brevoAttributes(member, destination.attributes) }));
  const processIds: number[] = [];
  for (const request of brevoImportRequests(contacts, destination.list_id)) {
    const result = await call("POST", "/contacts/import", request, "contact import");
    const reply = parseJsonWith(importReplySchema, result.body);
    if (reply.success) processIds.push(reply.data.processId);
    else deps.warn("brevo: import accepted without a processId; its outcome cannot be checked", { status: result.status });
  }
  if (!imports || processIds.length === 0) return;
  await imports.write(processIds);
  await checkProcesses(processIds);
}
