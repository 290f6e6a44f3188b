import { randomUUID } from "node:crypto";
import { parseJsonWith } from "../util/json.js";
import * as z from "../util/zod.js";
import { idDigest } from "../privacy/suppression.js";
import type { Residency } from "../config/stage.js";
import { ConfigError, RetryableError, UpstreamRejectedError } from "../util/errors.js";
import { type FetchLike, fetchText, throwForStatus } from "../http/fetch.js";
import { type RetryDeps, withRetry } from "../http/retry.js";
import type { BrevoClient } from "../brevo/client.js";
import { brevoMessage } from "../brevo/client.js";

/**
 * GDPR / CCPA erasure across the relay's destinations (docs/brevo.md, GDPR deletion):
 * Mixpanel's data-deletion API v3.0 (docs/vendors/mixpanel-api.md §9 and "GDPR deletion":
 * `POST {gdpr}/data-deletions/v3.0/?token=` with a Bearer OAuth token, ≤ 1999 ids per
 * request, 1 request/s, tasks that take up to 30 days) and the Brevo contacts, deleted by every
 * identifier the relay may have used for the person (`DELETE /v3/contacts/{id}?identifierType=
 * ext_id|email_id|phone_id`, 404 = already gone, docs/vendors/brevo-connector.md §2).
 *
 * Every request is recorded in the snapshot bucket under `gdpr/` with its status: an audit
 * trail that holds SHA-256 digests of the ids, never the ids themselves.
 */
export const GDPR_BASES: Record<Residency, string> = {
  us: "https://mixpanel.com/api/app",
  eu: "https://eu.mixpanel.com/api/app",
  in: "https://in.mixpanel.com/api/app",
};
export const MAX_IDS_PER_DELETION = 1999;
export const GDPR_PREFIX = "gdpr/";
/**
 * Task states that never change again (docs/vendors/mixpanel-api.md "GDPR deletion"): besides
 * SUCCESS, FAILURE and REVOKED, Mixpanel answers NOT_FOUND (no data for the ids: nothing to
 * delete) and UNKNOWN (Mixpanel cannot say); polling either again only repeats it.
 */
export const FINAL_TASK_STATES = new Set(["SUCCESS", "FAILURE", "REVOKED", "NOT_FOUND", "UNKNOWN"]);
/** Final states that mean the ids hold no data in Mixpanel any more. */
const DONE_TASK_STATES = new Set(["SUCCESS", "NOT_FOUND"]);

export const complianceSchema = z.enum(["GDPR", "CCPA"]);
export type Compliance = z.infer<typeof complianceSchema>;

export const auditRecordSchema = z.object({
  v: z.literal(1),
  requestId: z.string(),
  stage: z.string(),
  compliance: complianceSchema,
  createdAt: z.string(),
  updatedAt: z.string(),
  /** SHA-256 of each distinct id: proves which request covered an id without keeping it. */
  idDigests: z.array(z.string()),
  mixpanel: z.array(
    z.object({
      taskId: z.optional(z.string()),
      ids: z.number().check(z.int()),
      status: z.string(),
      error: z.optional(z.string()),
    }),
  ),
  brevo: z.object({
    deleted: z.number().check(z.int()),
    absent: z.number().check(z.int()),
    failed: z.number().check(z.int()),
    errors: z.array(z.string()),
    skipped: z.boolean(),
    /** One line per Brevo identifier tried: its type, the SHA-256 of its value, and what Brevo answered. */
    identifiers: z.optional(
      z.array(
        z.object({
          type: z.enum(["ext_id", "email_id", "phone_id"]),
          digest: z.string(),
          outcome: z.enum(["deleted", "absent", "failed"]),
          /** How the relay knew it: given in the request, or read from the contact found by another identifier. */
          source: z.enum(["request", "contact"]),
          error: z.optional(z.string()),
        }),
      ),
    ),
  }),
});
export type AuditRecord = z.infer<typeof auditRecordSchema>;

export function chunkIds(ids: readonly string[], size = MAX_IDS_PER_DELETION): string[][] {
  const unique = [...new Set(ids.map((id) => id.trim()).filter((id) => id !== ""))];
  const chunks: string[][] = [];
  for (let i = 0; i < unique.length; i += size) chunks.push(unique.slice(i, i + size));
  return chunks;
}

const createReplySchema = z.object({
  results: z.union([z.object({ task_id: z.string() }), z.array(z.object({ tracking_id: z.string() })).check(z.minLength(1))]),
});
const statusReplySchema = z.object({ results: z.object({ status: z.string() }) });

/** The two documented create-reply shapes: `results.task_id` (OpenAPI) or `results[0].tracking_id` (example). */
export function parseTaskId(body: string): string | undefined {
  const reply = parseJsonWith(createReplySchema, body);
  if (!reply.success) return undefined;
  const results = reply.data.results;
  return Array.isArray(results) ? results[0]?.tracking_id : results.task_id;
}

export interface GdprClientOptions {
  readonly fetch: FetchLike;
  readonly baseUrl: string;
  readonly projectToken: string;
  readonly oauthToken: string;
  readonly timeoutMs: number;
  readonly retryDeps: RetryDeps;
  readonly now: () => number;
}

export function createGdprClient(options: GdprClientOptions) {
  const base = options.baseUrl.replace(/\/+$/, "");
  const headers = { authorization: `Bearer ${options.oauthToken}`, accept: "application/json" };
  const token = encodeURIComponent(options.projectToken);
  async function call(method: "POST" | "GET" | "DELETE", path: string, body?: unknown): Promise<string> {
    return withRetry(async () => {
      const result = await fetchText(
        options.fetch,
        `${base}${path}`,
        {
          method,
          redirect: "manual",
          headers: { ...headers, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        },
        options.timeoutMs,
      );
      if (result.status >= 300 && result.status < 400) throw new ConfigError(`Mixpanel GDPR API answered a redirect (${result.status})`, result.status);
      throwForStatus(result, `Mixpanel GDPR ${method}`, options.now());
      return result.body;
    }, options.retryDeps);
  }
  return {
    async fileDeletion(ids: readonly string[], compliance: Compliance): Promise<string> {
      const body = await call("POST", `/data-deletions/v3.0/?token=${token}`, { distinct_ids: ids, compliance_type: compliance });
      const taskId = parseTaskId(body);
      if (taskId === undefined) throw new UpstreamRejectedError(`Mixpanel GDPR reply has no task id: ${body.slice(0, 300)}`, 200, body);
      return taskId;
    },
    /** The task's state; an unreadable answer is an UpstreamRejectedError (not taken for Mixpanel's own UNKNOWN). */
    async taskStatus(taskId: string): Promise<string> {
      const body = await call("GET", `/data-deletions/v3.0/${encodeURIComponent(taskId)}?token=${token}`);
      const reply = parseJsonWith(statusReplySchema, body);
      if (!reply.success) throw new UpstreamRejectedError(`Mixpanel GDPR status reply has no results.status: ${body.slice(0, 300)}`, 200, body);
      return reply.data.results.status;
    },
    /**
     * Cancels a task while Mixpanel still allows it (PENDING or STAGING): `DELETE
     * …/data-deletions/v3.0/{tracking_id}?token=` answers 204 (https://docs.mixpanel.com/reference/delete-deletion);
     * Mixpanel's guide says 405 once the deletion can no longer be cancelled
     * (https://docs.mixpanel.com/docs/privacy/end-user-data-management). 404 = no such task.
     */
    async cancelTask(taskId: string): Promise<CancelOutcome> {
      try {
        await call("DELETE", `/data-deletions/v3.0/${encodeURIComponent(taskId)}?token=${token}`);
        return "cancelled";
      } catch (error) {
        if (error instanceof UpstreamRejectedError && error.status === 405) return "too_late";
        if (error instanceof UpstreamRejectedError && error.status === 404) return "not_found";
        throw error;
      }
    },
  };
}
export type CancelOutcome = "cancelled" | "too_late" | "not_found";

/** The audit record after a cancelled task: REVOKED is Mixpanel's state for a task that will not run. */
export function withCancelledTask(record: AuditRecord, taskId: string, now: () => Date): AuditRecord {
  return {
    ...record,
    updatedAt: now().toISOString(),
    mixpanel: record.mixpanel.map((task) => (task.taskId === taskId ? { ...task, status: "REVOKED" } : task)),
  };
}
export type GdprClient = ReturnType<typeof createGdprClient>;

export type ContactIdentifierType = "ext_id" | "email_id" | "phone_id";
export interface ContactIdentifier {
  readonly type: ContactIdentifierType;
  readonly value: string;
}

/** Deletes one Brevo contact by one identifier; 404 = already gone (§2). */
export async function deleteBrevoContact(client: BrevoClient, identifier: ContactIdentifier): Promise<"deleted" | "absent" | { error: string }> {
  const result = await client.call("DELETE", `/contacts/${encodeURIComponent(identifier.value)}?identifierType=${identifier.type}`);
  if (result.status === 204 || result.status === 200) return "deleted";
  if (result.status === 404) return "absent";
  return { error: brevoMessage(result) };
}

const contactReadSchema = z.object({ email: z.optional(z.string()), attributes: z.optional(z.record(z.string(), z.unknown())) });

/** The email and SMS number Brevo holds for a contact, or none when it has no such contact. */
async function contactAddresses(client: BrevoClient, identifier: ContactIdentifier): Promise<ContactIdentifier[]> {
  const result = await client.call("GET", `/contacts/${encodeURIComponent(identifier.value)}?identifierType=${identifier.type}`);
  if (result.status !== 200) return [];
  const contact = parseJsonWith(contactReadSchema, result.body);
  if (!contact.success) return [];
  const found: ContactIdentifier[] = [];
  if (contact.data.email !== undefined && contact.data.email !== "") found.push({ type: "email_id", value: contact.data.email });
  const sms = contact.data.attributes?.SMS;
  if (typeof sms === "string" && sms !== "") found.push({ type: "phone_id", value: sms });
  if (typeof sms === "number" && Number.isFinite(sms)) found.push({ type: "phone_id", value: String(sms) });
  return found;
}

/** Which Mixpanel value the connector puts in each Brevo identifier (the brevo block's `identifiers`). */
export interface BrevoIdentitySources {
  readonly ext_id?: string | undefined;
  readonly email_id?: string | undefined;
  readonly phone_id?: string | undefined;
}

/**
 * Every Brevo identifier the relay may have used for the people of an erasure request:
 * - the distinct ids as `ext_id` when the connector sets one (the ext_id is a Mixpanel id), and as
 *   `email_id` / `phone_id` when the connector takes those from the distinct id;
 * - the emails and phone numbers the request gives (the connector's email/phone identifiers and
 *   cohort list imports, which add contacts by email, lib/destinations/brevo.ts).
 */
export function brevoIdentifiersOf(request: ErasureRequest, sources: BrevoIdentitySources): ContactIdentifier[] {
  const fromDistinctId = (source: string | undefined) => source === "distinct_id" || source === "$distinct_id";
  const found: ContactIdentifier[] = [];
  for (const id of request.distinctIds) {
    if (sources.ext_id !== undefined) found.push({ type: "ext_id", value: id });
    if (fromDistinctId(sources.email_id)) found.push({ type: "email_id", value: id });
    if (fromDistinctId(sources.phone_id)) found.push({ type: "phone_id", value: id });
  }
  for (const email of request.emails ?? []) found.push({ type: "email_id", value: email });
  for (const phone of request.phones ?? []) found.push({ type: "phone_id", value: phone });
  return uniqueIdentifiers(found);
}

function uniqueIdentifiers(identifiers: readonly ContactIdentifier[]): ContactIdentifier[] {
  const seen = new Set<string>();
  const unique: ContactIdentifier[] = [];
  for (const identifier of identifiers) {
    const value = identifier.value.trim();
    const key = `${identifier.type}\u0000${identifier.type === "email_id" ? value.toLowerCase() : value}`;
    if (value === "" || seen.has(key)) continue;
    seen.add(key);
    unique.push({ type: identifier.type, value });
  }
  return unique;
}

export interface ErasureRequest {
  readonly distinctIds: readonly string[];
  readonly emails?: readonly string[];
  readonly phones?: readonly string[];
}

export interface DeletionDeps {
  readonly gdpr: Pick<GdprClient, "fileDeletion" | "taskStatus">;
  readonly brevo?: BrevoClient | undefined;
  /** The brevo block's identifiers; default: ext_id from the distinct id. */
  readonly brevoIdentity?: BrevoIdentitySources;
  /**
   * Called with the emails and numbers read from contacts before they are deleted by them, so
   * the caller adds them to the erased-ids list too (the request did not name them).
   */
  readonly onDerivedIdentifiers?: (values: readonly string[]) => Promise<void>;
  readonly stage: string;
  readonly now: () => Date;
  /** Between Mixpanel GDPR calls: the API allows 1 request/s. */
  readonly pause: () => Promise<void>;
  readonly newId?: () => string;
}

type BrevoReport = AuditRecord["brevo"];

async function eraseFromBrevo(request: ErasureRequest, client: BrevoClient, deps: DeletionDeps): Promise<BrevoReport> {
  const report: BrevoReport = { deleted: 0, absent: 0, failed: 0, errors: [], skipped: false, identifiers: [] };
  const given = brevoIdentifiersOf(request, deps.brevoIdentity ?? { ext_id: "distinct_id" });
  const tried = new Set<string>();
  const keyOf = (identifier: ContactIdentifier) => `${identifier.type}\u0000${identifier.type === "email_id" ? identifier.value.toLowerCase() : identifier.value}`;
  const erase = async (identifier: ContactIdentifier, source: "request" | "contact") => {
    tried.add(keyOf(identifier));
    let outcome: "deleted" | "absent" | "failed";
    let error: string | undefined;
    try {
      const answer = await deleteBrevoContact(client, identifier);
      if (typeof answer === "string") outcome = answer;
      else {
        outcome = "failed";
        error = answer.error;
      }
    } catch (caught) {
      if (caught instanceof ConfigError) throw caught;
      outcome = "failed";
      error = String(caught instanceof Error ? caught.message : caught).slice(0, 300);
    }
    report[outcome]++;
    if (error !== undefined) report.errors.push(error);
    report.identifiers?.push({ type: identifier.type, digest: idDigest(identifier.value), outcome, source, ...(error !== undefined ? { error } : {}) });
  };
  for (const identifier of given) {
    // The contact may carry an email or number the request did not give (e.g. a cohort import
    // added it by email, then the connector set its ext_id): read them before it is deleted.
    const derived = identifier.type === "ext_id" ? uniqueIdentifiers(await contactAddresses(client, identifier).catch(() => [])) : [];
    const fresh = derived.filter((item) => !tried.has(keyOf(item)) && !given.some((g) => keyOf(g) === keyOf(item)));
    if (fresh.length > 0) await deps.onDerivedIdentifiers?.(fresh.map((item) => item.value));
    await erase(identifier, "request");
    for (const item of fresh) await erase(item, "contact");
  }
  return report;
}

/** Files the deletion everywhere and returns the audit record (the caller stores it). */
export async function runDeletion(ids: readonly string[], compliance: Compliance, deps: DeletionDeps, extra: Omit<ErasureRequest, "distinctIds"> = {}): Promise<AuditRecord> {
  const chunks = chunkIds(ids);
  if (chunks.length === 0) throw new ConfigError("no distinct ids to delete");
  const createdAt = deps.now().toISOString();
  const mixpanel: AuditRecord["mixpanel"] = [];
  for (const [index, chunk] of chunks.entries()) {
    if (index > 0) await deps.pause();
    try {
      mixpanel.push({ taskId: await deps.gdpr.fileDeletion(chunk, compliance), ids: chunk.length, status: "PENDING" });
    } catch (error) {
      if (error instanceof ConfigError) throw error;
      const reason = error instanceof RetryableError || error instanceof UpstreamRejectedError ? error.message : String(error);
      mixpanel.push({ ids: chunk.length, status: "NOT_FILED", error: reason.slice(0, 500) });
    }
  }
  const brevo: BrevoReport = deps.brevo
    ? await eraseFromBrevo({ distinctIds: chunks.flat(), ...extra }, deps.brevo, deps)
    : { deleted: 0, absent: 0, failed: 0, errors: [], skipped: true };
  return {
    v: 1,
    requestId: (deps.newId ?? randomUUID)(),
    stage: deps.stage,
    compliance,
    createdAt,
    updatedAt: createdAt,
    idDigests: chunks.flat().map(idDigest),
    mixpanel,
    brevo,
  };
}

/** Polls the Mixpanel tasks not yet final; returns the updated record. */
export async function refreshStatus(record: AuditRecord, gdpr: Pick<GdprClient, "taskStatus">, now: () => Date, pause: () => Promise<void>): Promise<AuditRecord> {
  const mixpanel: AuditRecord["mixpanel"] = [];
  let calls = 0;
  for (const task of record.mixpanel) {
    if (task.taskId === undefined || FINAL_TASK_STATES.has(task.status)) {
      mixpanel.push(task);
      continue;
    }
    if (calls++ > 0) await pause();
    try {
      const { error: _previous, ...rest } = task;
      mixpanel.push({ ...rest, status: await gdpr.taskStatus(task.taskId) });
    } catch (error) {
      if (error instanceof ConfigError) throw error;
      // Kept as it was (polled again next time), with the reason beside it.
      mixpanel.push({ ...task, error: (error instanceof Error ? error.message : String(error)).slice(0, 500) });
    }
  }
  return { ...record, mixpanel, updatedAt: now().toISOString() };
}

export function overallStatus(record: AuditRecord): string {
  const states = record.mixpanel.map((task) => task.status);
  const brevoDone = record.brevo.skipped || record.brevo.failed === 0;
  if (states.every((state) => DONE_TASK_STATES.has(state)) && brevoDone) return "complete";
  if (states.some((state) => state === "FAILURE" || state === "NOT_FILED" || state === "REVOKED" || state === "UNKNOWN") || !brevoDone) return "needs attention";
  return "in progress";
}

export function gdprKey(record: Pick<AuditRecord, "createdAt" | "requestId">): string {
  return `${GDPR_PREFIX}${record.createdAt.slice(0, 10)}/${record.requestId}.json`;
}
