import { createHash } from "node:crypto";
import * as z from "../util/zod.js";
import { parseJsonWith } from "../util/json.js";
import type { IdentityMode } from "../config/mapping.js";
import { ConfigError, RetryableError, describeError } from "../util/errors.js";
import type { HttpResult } from "../http/fetch.js";
import type { RecordOutcome } from "../queue/envelope-consumer.js";
import type { RecordKind } from "../records/envelope.js";
import { type BrevoCallOptions, type BrevoClient, brevoMessage } from "../brevo/client.js";
import { type CompanyOperation, mapGroupToCompany } from "../brevo/companies.js";
import type { BrevoConfig } from "../config/brevo.js";
import { type ContactKey, type ContactOperation, attributesAfter, mapProfileToContact } from "../brevo/contacts.js";
import { type BrevoEvent, mapEventToBrevo } from "../brevo/events.js";
import { idDigest } from "../privacy/suppression.js";
import { groupByCaps } from "../util/batching.js";

/**
 * The Brevo forwarder's send step (docs/vendors/brevo-connector.md §1–§4): one outcome per queued
 * Mixpanel record, for the envelope consumer (lib/queue/envelope-consumer.ts), which stores
 * refusals, re-queues only what was not sent and reports SQS partial batch failures.
 *
 * - Events: `POST /v3/events/batch` `{events:[…]}` in requests of at most `eventsBatchSize` (≤ 200)
 *   events and 512 KB of body (§1). 202 = all taken; 207/400 list the failed `eventIndex`es, which
 *   are refused for good (validation errors fail again, §1) while the rest count as sent; any other
 *   refusal is bisected down to the event Brevo refuses.
 * - Profiles: one contact call (or a read then a write) per record, in queue order, so operations
 *   on one contact apply in the order Mixpanel would apply them.
 * - Groups: companies found by their marker attribute (cached per container: the companies bucket
 *   allows 100 requests per hour on the General tier, §3), then created, patched or deleted.
 *
 * Once a call fails transiently (or the key is refused) every later record of the batch is left
 * unsent with the same outcome: the rate limit or outage applies to them too, and they are
 * re-queued, not resent, by the consumer. A record held back by a closed rate-limit bucket says
 * when the bucket reopens (Brevo's `x-sib-ratelimit-reset`, §4), so the consumer waits for it
 * without counting the wait toward the DLQ; records not tried because the invocation ran out of
 * time say so, and come back at once.
 */
export interface BrevoSenderDeps {
  readonly client: BrevoClient;
  readonly config: BrevoConfig;
  readonly identityMode: IdentityMode;
  readonly eventsBatchSize: number;
  /** marker → Brevo company id, per container. */
  readonly companyIds?: Map<string, string>;
  /**
   * `$insert_id`s of events Brevo took, per container (bounded). Brevo's events API has no
   * idempotency key (docs/vendors/brevo-connector.md §1), so the relay skips an event it already
   * sent when the same record arrives again (a sender's retry, a replay) instead of duplicating it.
   */
  readonly sentInsertIds?: Map<string, true>;
  /** Digests of erased ids (lib/privacy/suppression.ts): their records are skipped (`suppressed`). */
  readonly suppressed?: () => Promise<ReadonlySet<string>>;
  /**
   * Profile records whose contact was upserted but whose company links wait for the companies
   * bucket, per container (bounded): record digest → Brevo contact id.
   */
  readonly pendingLinks?: Map<string, number>;
  /**
   * Time left for another Brevo call in this invocation (default unbounded); at 0 or below the
   * remaining records are not tried and come back at once.
   */
  readonly timeLeftMs?: () => number;
  /** Epoch ms, for when a closed bucket reopens (default Date.now). */
  readonly now?: () => number;
}

const MAX_REMEMBERED_INSERT_IDS = 100_000;

/**
 * `POST /v3/events/batch` takes at most 200 events and 512 KB of body per request
 * (https://developers.brevo.com/docs/event-endpoints, "Create events in batch" limits).
 */
export const MAX_EVENTS_PER_BATCH = 200;
export const MAX_EVENTS_BATCH_BYTES = 512 * 1024;
/** `{"events":[` + `]}` around the comma-separated events. */
const BATCH_ENVELOPE_BYTES = Buffer.byteLength('{"events":[]}');

const MAX_CACHED_COMPANIES = 10_000;
const MAX_PENDING_LINKS = 100_000;

type Outcome = RecordOutcome;
const sent: Outcome = { status: "sent" };
const untried: Outcome = { status: "retry", reason: "not tried: no time left in this invocation", cause: { kind: "untried" } };

const timeIsUp = (deps: BrevoSenderDeps) => deps.timeLeftMs !== undefined && deps.timeLeftMs() <= 0;

/**
 * Company calls never wait in the invocation: they fall under Brevo's "all other endpoints" bucket
 * (100 requests per hour on the General tier, https://developers.brevo.com/docs/api-limits), and a
 * group record sleeping on it (or backing off a transient failure) would hold every contact and
 * event record the invocation still has. A closed bucket hands the group records back to wait for
 * its window (free of the DLQ count); other trouble hands them back with the usual backoff.
 */
const COMPANY_CALL: BrevoCallOptions = { wait: false };

/**
 * A transient failure's retry: one that carries a rate-limit wait (a 429, or a bucket the client
 * keeps closed until Brevo's `x-sib-ratelimit-reset`, §4) waits for that window to reopen.
 */
function retryOf(error: RetryableError, reason: string, deps: BrevoSenderDeps): Outcome {
  if (error.status === 429 && error.retryAfterMs !== undefined) {
    return { status: "retry", reason, cause: { kind: "window", reopensAt: (deps.now ?? Date.now)() + error.retryAfterMs } };
  }
  return { status: "retry", reason };
}

/**
 * A call that threw: the key or settings (ConfigError) or transient trouble. Anything else is a
 * fault of ours; it too leaves this and the later records unsent (re-queued, not resent whole),
 * so records already applied are never applied again. A failure with no time left afterwards is
 * the invocation's deadline, not the record's: the record is counted as not tried.
 */
function failureOutcome(error: unknown, deps: BrevoSenderDeps): Outcome {
  if (error instanceof ConfigError) return { status: "config", reason: error.message };
  const retry = error instanceof RetryableError ? retryOf(error, error.message, deps) : { status: "retry" as const, reason: describeError(error) };
  if (retry.status === "retry" && retry.cause === undefined && timeIsUp(deps)) return untried;
  return retry;
}

const batchErrorSchema = z.object({
  errors: z.optional(
    z.array(z.object({ eventIndex: z.union([z.array(z.number().check(z.int())), z.number().check(z.int())]), message: z.optional(z.string()) })),
  ),
});

/** Per event of one batch: the refusal message, from a 207/400 body. */
function batchRefusals(result: HttpResult, size: number): Map<number, string> | undefined {
  const body = parseJsonWith(batchErrorSchema, result.body);
  if (!body.success || !body.data.errors) return undefined;
  const refusals = new Map<number, string>();
  for (const error of body.data.errors) {
    for (const index of Array.isArray(error.eventIndex) ? error.eventIndex : [error.eventIndex]) {
      if (index >= 0 && index < size) refusals.set(index, `Brevo ${result.status}: ${error.message ?? "event refused"}`);
    }
  }
  return refusals;
}

function isSuppressed(values: readonly (string | undefined)[], suppressed: ReadonlySet<string>): boolean {
  return suppressed.size > 0 && values.some((value) => value !== undefined && suppressed.has(idDigest(value)));
}

async function sendEvents(lines: readonly string[], deps: BrevoSenderDeps, suppressed: ReadonlySet<string>): Promise<Outcome[]> {
  const outcomes: Outcome[] = new Array(lines.length);
  const pending: { position: number; event: BrevoEvent; insertId?: string }[] = [];
  const sentIds = deps.sentInsertIds;
  const inThisBatch = new Set<string>();
  const remember = (insertId: string | undefined) => {
    if (!sentIds || insertId === undefined) return;
    if (sentIds.size >= MAX_REMEMBERED_INSERT_IDS) sentIds.delete(sentIds.keys().next().value ?? "");
    sentIds.set(insertId, true);
  };
  lines.forEach((line, position) => {
    const mapped = mapEventToBrevo(line, deps.config, deps.identityMode);
    if (mapped.status === "send" && isSuppressed(Object.values(mapped.event.identifiers), suppressed)) {
      outcomes[position] = { status: "skipped", code: "suppressed" };
    } else if (mapped.status === "send" && mapped.insertId !== undefined && (sentIds?.has(mapped.insertId) || inThisBatch.has(mapped.insertId))) {
      outcomes[position] = { status: "skipped", code: "already_sent" };
    } else if (mapped.status === "send") {
      if (mapped.insertId !== undefined) inThisBatch.add(mapped.insertId);
      pending.push({ position, event: mapped.event, ...(mapped.insertId !== undefined ? { insertId: mapped.insertId } : {}) });
    }
    else if (mapped.status === "skip") outcomes[position] = { status: "skipped", code: mapped.code };
    else outcomes[position] = { status: "rejected", reason: `${mapped.code}: ${mapped.reason}` };
  });
  type Pending = (typeof pending)[number];
  let blocked: Outcome | undefined;
  const accept = (items: readonly Pending[]) => {
    for (const { position, insertId } of items) {
      outcomes[position] = sent;
      remember(insertId);
    }
  };
  /**
   * Sends one request's events. A refusal that names no event (a 413, a 400 `{code, message}`)
   * says nothing about single events (§1): the group is halved and each half sent again, down to
   * the one event Brevo refuses, so one bad event never takes the other 199 with it.
   */
  const sendGroup = async (items: readonly Pending[]): Promise<void> => {
    if (!blocked && timeIsUp(deps)) blocked = untried;
    if (blocked) {
      for (const { position } of items) outcomes[position] = blocked;
      return;
    }
    let result: HttpResult;
    try {
      result = await deps.client.call("POST", "/events/batch", { events: items.map(({ event }) => event) });
    } catch (error) {
      blocked = failureOutcome(error, deps);
      for (const { position } of items) outcomes[position] = blocked;
      return;
    }
    if (result.status >= 200 && result.status < 300 && result.status !== 207) return accept(items);
    const refusals = result.status === 207 || result.status === 400 ? batchRefusals(result, items.length) : undefined;
    if (refusals) {
      items.forEach(({ position, insertId }, index) => {
        const reason = refusals.get(index);
        if (reason === undefined) remember(insertId);
        outcomes[position] = reason === undefined ? sent : { status: "rejected", reason };
      });
      return;
    }
    if (items.length === 1) {
      for (const { position } of items) outcomes[position] = { status: "rejected", reason: brevoMessage(result) };
      return;
    }
    const half = Math.ceil(items.length / 2);
    await sendGroup(items.slice(0, half));
    await sendGroup(items.slice(half));
  };
  const batchSize = Math.min(deps.eventsBatchSize, MAX_EVENTS_PER_BATCH);
  for (const group of groupByCaps(pending, ({ event }) => Buffer.byteLength(JSON.stringify(event)) + 1, batchSize, MAX_EVENTS_BATCH_BYTES - BATCH_ENVELOPE_BYTES)) {
    await sendGroup(group);
  }
  return outcomes;
}

function contactPath(key: ContactKey): string {
  return `/contacts/${encodeURIComponent(key.value)}?identifierType=${key.type}`;
}

const contactSchema = z.object({ id: z.optional(z.number()), attributes: z.optional(z.record(z.string(), z.unknown())) });
const contactEmailSchema = z.object({ email: z.optional(z.string().check(z.minLength(1))) });

/** The contact's current attributes, or undefined when Brevo has no such contact. */
async function readContact(key: ContactKey, client: BrevoClient): Promise<{ attributes: Record<string, unknown> } | undefined | HttpResult> {
  const result = await client.call("GET", contactPath(key));
  if (result.status === 404) return undefined;
  if (result.status !== 200) return result;
  const contact = parseJsonWith(contactSchema, result.body);
  return { attributes: contact.success ? (contact.data.attributes ?? {}) : {} };
}

function createBody(operation: Extract<ContactOperation, { op: "upsert" }> | { key: ContactKey; extId?: string; email?: string; listIds: number[] }, attributes: Record<string, unknown>) {
  const withSms = operation.key.type === "phone_id" ? { SMS: operation.key.value, ...attributes } : attributes;
  return {
    ...(operation.extId !== undefined ? { ext_id: operation.extId } : {}),
    ...(operation.email !== undefined ? { email: operation.email } : {}),
    attributes: withSms,
    ...(operation.listIds.length > 0 ? { listIds: operation.listIds } : {}),
    // docs/vendors/brevo-connector.md §2, docs/vendors/cohort-sync.md §3: without it an existing contact answers 400 duplicate_parameter.
    updateEnabled: true,
  };
}

const isOk = (result: HttpResult) => result.status >= 200 && result.status < 300;

/**
 * Links the contact to the companies of its groups (brevo.companies.group_keys) that exist in
 * Brevo, with `PATCH /v3/companies/link-unlink/{id}` (`linkContactIds` adds, never replaces, §3).
 * A company not created yet is not linked (and not linked later when it is created).
 */
async function linkCompanies(operation: ContactOperation, contactId: number | undefined, deps: BrevoSenderDeps, line: string): Promise<Outcome> {
  if (operation.op !== "upsert" || !operation.companyLinks || operation.companyLinks.length === 0) return sent;
  let id = contactId;
  if (id === undefined) {
    const result = await deps.client.call("GET", contactPath(operation.key));
    if (result.status !== 200) return { status: "rejected", reason: `contact upserted, but it could not be read back to link its companies: ${brevoMessage(result)}` };
    id = parseContactId(result.body);
    if (id === undefined) return sent;
  }
  const pending = deps.pendingLinks;
  const key = pendingKey(line);
  try {
    const outcome = await linkToCompanies(operation.companyLinks, id, deps);
    pending?.delete(key);
    return outcome;
  } catch (error) {
    if (error instanceof ConfigError || !(error instanceof RetryableError)) throw error;
    // Company calls fall under Brevo's "all other endpoints" bucket (100 requests per hour on the
    // General tier, §3/§4): when it is closed or failing, this record is handed back and the next
    // records' contacts keep flowing on their own bucket. The contact id is remembered, so when the
    // record comes back to this container only the links are tried, not the contact again.
    if (pending) {
      if (pending.size >= MAX_PENDING_LINKS) pending.delete(pending.keys().next().value ?? "");
      pending.set(key, id);
    }
    return retryOf(error, `contact upserted; company link waits: ${error.message}`, deps);
  }
}

function pendingKey(line: string): string {
  return createHash("sha256").update(line).digest("base64");
}

async function linkToCompanies(companyLinks: readonly string[], id: number, deps: BrevoSenderDeps): Promise<Outcome> {
  const cache = deps.companyIds ?? new Map<string, string>();
  for (const marker of companyLinks) {
    const company = await findCompany(marker, deps, cache, COMPANY_CALL);
    if (company === undefined) continue;
    if (isRefusal(company)) return { status: "rejected", reason: `contact upserted; ${company.refusal}` };
    if (typeof company !== "string") return { status: "rejected", reason: `contact upserted; company lookup refused: ${brevoMessage(company)}` };
    const result = await deps.client.call("PATCH", `/companies/link-unlink/${encodeURIComponent(company)}`, { linkContactIds: [id] }, COMPANY_CALL);
    if (!isOk(result) && result.status !== 404) return { status: "rejected", reason: `contact upserted; link to ${marker} refused: ${brevoMessage(result)}` };
  }
  return sent;
}

/** The contact id from a 201 `{id}` reply (a 204 update has none). */
function createdId(result: HttpResult): number | undefined {
  return result.status === 201 ? parseContactId(result.body) : undefined;
}

function parseContactId(body: string): number | undefined {
  const parsed = parseJsonWith(contactSchema, body);
  return parsed.success ? parsed.data.id : undefined;
}

async function applyContact(operation: ContactOperation, deps: BrevoSenderDeps, line: string): Promise<Outcome> {
  const client = deps.client;
  const linkOnly = operation.op === "upsert" ? deps.pendingLinks?.get(pendingKey(line)) : undefined;
  // This record's contact was upserted on an earlier pass; only its company links were left.
  if (linkOnly !== undefined) return linkCompanies(operation, linkOnly, deps, line);
  let contactId: number | undefined;
  const refused = (result: HttpResult): Outcome => ({ status: "rejected", reason: brevoMessage(result) });
  const extId = operation.key.type === "ext_id" ? operation.key.value : undefined;
  const email = operation.key.type === "email_id" ? operation.key.value : undefined;
  const create = async (attributes: Record<string, unknown>, listIds: number[], withEmail?: string) => {
    const result = await client.call(
      "POST",
      "/contacts",
      createBody({ key: operation.key, ...(extId !== undefined ? { extId } : {}), ...(withEmail ?? email ? { email: withEmail ?? email } : {}), listIds }, attributes),
    );
    contactId = createdId(result);
    return isOk(result) ? sent : refused(result);
  };
  const update = async (attributes: Record<string, unknown>, listIds: number[]) => {
    if (Object.keys(attributes).length === 0 && listIds.length === 0) return sent;
    const result = await client.call("PUT", contactPath(operation.key), { attributes, ...(listIds.length > 0 ? { listIds } : {}) });
    if (result.status === 404) return create(attributes, listIds);
    return isOk(result) ? sent : refused(result);
  };

  switch (operation.op) {
    case "delete": {
      const result = await client.call("DELETE", contactPath(operation.key));
      // §2: 404 = already deleted, so the call is idempotent.
      return isOk(result) || result.status === 404 ? sent : refused(result);
    }
    case "unset": {
      // Brevo ignores a value of the wrong type such as null (update-contact reference); the one
      // documented erase is an import with emptyContactsAttributes: true, which names a list and
      // identifies the contact by email (import-contacts reference).
      const listId = deps.config.lists.all_users;
      if (listId === undefined) {
        return { status: "rejected", reason: "$unset needs brevo.lists.all_users: Brevo erases attributes only through /contacts/import, which names a list" };
      }
      let address = operation.key.type === "email_id" ? operation.key.value : undefined;
      if (address === undefined) {
        const result = await client.call("GET", contactPath(operation.key));
        if (result.status === 404) return sent; // no contact, nothing to clear
        if (result.status !== 200) return refused(result);
        const contact = parseJsonWith(contactEmailSchema, result.body);
        address = contact.success ? contact.data.email : undefined;
        if (address === undefined) return { status: "rejected", reason: "$unset: the contact has no email, and Brevo's import (the documented way to erase attributes) identifies contacts by email" };
      }
      const result = await client.call("POST", "/contacts/import", {
        jsonBody: [{ email: address, attributes: attributesAfter(operation, undefined) }],
        listIds: [listId],
        updateExistingContacts: true,
        emptyContactsAttributes: true,
      });
      return isOk(result) ? sent : refused(result);
    }
    case "upsert":
      if (!operation.onlyIfAbsent) {
        const result = await client.call("POST", "/contacts", createBody(operation, operation.attributes));
        if (!isOk(result)) return refused(result);
        return linkCompanies(operation, createdId(result), deps, line);
      }
    // $set_once falls through to read-modify-write.
    // eslint-disable-next-line no-fallthrough
    case "add":
    case "list": {
      const current = await readContact(operation.key, client);
      if (current !== undefined && "status" in current) return refused(current);
      const attributes = attributesAfter(operation, current?.attributes);
      const listIds = operation.listIds;
      const outcome = current === undefined ? await create(attributes, listIds, operation.op === "upsert" ? operation.email : undefined) : await update(attributes, listIds);
      return outcome.status === "sent" ? linkCompanies(operation, contactId, deps, line) : outcome;
    }
  }
}

/** A mapped record either not to be sent (its outcome is known) or an operation to apply. */
type Prepared<T> = { readonly outcome: Outcome } | { readonly operation: T };

function notSent(mapped: { readonly status: "skip" | "reject"; readonly code: string; readonly reason: string }): { readonly outcome: Outcome } {
  return { outcome: mapped.status === "skip" ? { status: "skipped", code: mapped.code } : { status: "rejected", reason: `${mapped.code}: ${mapped.reason}` } };
}

/**
 * Contacts and companies go one call chain per record, in order. Once one fails the way
 * failureOutcome describes (an outage, a rate limit, a refused key), the rest get the same
 * outcome without being tried, so a bad minute costs one failed call, not one per record.
 */
async function applyEach<T>(
  lines: readonly string[],
  deps: BrevoSenderDeps,
  prepare: (line: string) => Prepared<T>,
  apply: (operation: T, line: string) => Promise<Outcome>,
): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  let blocked: Outcome | undefined;
  for (const line of lines) {
    if (!blocked && timeIsUp(deps)) blocked = untried;
    if (blocked) {
      outcomes.push(blocked);
      continue;
    }
    const prepared = prepare(line);
    if ("outcome" in prepared) {
      outcomes.push(prepared.outcome);
      continue;
    }
    try {
      outcomes.push(await apply(prepared.operation, line));
    } catch (error) {
      blocked = failureOutcome(error, deps);
      outcomes.push(blocked);
    }
  }
  return outcomes;
}

function sendProfiles(lines: readonly string[], deps: BrevoSenderDeps, suppressed: ReadonlySet<string>): Promise<Outcome[]> {
  return applyEach(
    lines,
    deps,
    (line) => {
      const mapped = mapProfileToContact(line, deps.config, deps.identityMode);
      if (mapped.status !== "send") return notSent(mapped);
      const { operation } = mapped;
      if (isSuppressed([operation.key.value, "email" in operation ? operation.email : undefined], suppressed)) return { outcome: { status: "skipped", code: "suppressed" } };
      return { operation };
    },
    (operation, line) => applyContact(operation, deps, line),
  );
}

const companyIdSchema = z.pipe(z.union([z.string(), z.number()]), z.transform(String));
const companyListSchema = z.object({
  items: z.optional(z.array(z.object({ id: companyIdSchema, attributes: z.optional(z.record(z.string(), z.unknown())) }))),
});
const companyCreatedSchema = z.object({ id: companyIdSchema });
/** Companies asked for per lookup: enough to see several that carry the marker (an ambiguity) at once. */
const COMPANY_LOOKUP_LIMIT = 50;

/** A lookup that found nothing the relay may safely act on; the record is refused with this reason. */
interface CompanyRefusal {
  readonly refusal: string;
}

/**
 * The Brevo company of a group. `GET /v3/companies?filters[attributes.<x>]=` is documented for
 * `name` and `owner` only (§3): a server may ignore a filter on a custom attribute and answer
 * arbitrary companies. So a company is used only when its returned attribute equals the marker;
 * several that do, or a full page of companies none of which does (the filter was not applied, so
 * the company may be on a later page), is a refusal, never a guess. A short page without it (every
 * company Brevo has was in the answer) means absent.
 */
async function findCompany(
  marker: string,
  deps: BrevoSenderDeps,
  cache: Map<string, string>,
  callOptions?: BrevoCallOptions,
): Promise<string | undefined | HttpResult | CompanyRefusal> {
  const cached = cache.get(marker);
  if (cached !== undefined) return cached;
  const attribute = deps.config.companies.id_attribute;
  const query = `filters${encodeURIComponent(`[attributes.${attribute}]`)}=${encodeURIComponent(marker)}&limit=${COMPANY_LOOKUP_LIMIT}`;
  const result = await deps.client.call("GET", `/companies?${query}`, undefined, callOptions);
  if (result.status === 404) return undefined;
  if (!isOk(result)) return result;
  const list = parseJsonWith(companyListSchema, result.body);
  if (!list.success) return { refusal: `company lookup for ${marker}: unreadable answer from Brevo` };
  const items = list.data.items ?? [];
  if (items.length === 0) return undefined;
  const matching = items.filter((item) => item.attributes !== undefined && Object.hasOwn(item.attributes, attribute) && item.attributes[attribute] === marker);
  if (matching.length > 1) {
    return { refusal: `company lookup for ${marker}: ${matching.length} Brevo companies (${matching.map((item) => item.id).join(", ")}) carry ${attribute}=${marker}; merge them in Brevo` };
  }
  const [match] = matching;
  // A short page is the last one: every company there is (filtered or not) was seen, so absent.
  if (match === undefined && items.length < COMPANY_LOOKUP_LIMIT) return undefined;
  if (match === undefined) {
    return { refusal: `company lookup for ${marker}: Brevo answered ${items.length} companies, none with ${attribute}=${marker} (the filter on ${attribute} was not applied); not guessing` };
  }
  remember(cache, marker, match.id);
  return match.id;
}

const isRefusal = (found: unknown): found is CompanyRefusal => found !== null && typeof found === "object" && "refusal" in found;

function remember(cache: Map<string, string>, marker: string, id: string): void {
  if (cache.size >= MAX_CACHED_COMPANIES) cache.delete(cache.keys().next().value ?? "");
  cache.set(marker, id);
}

async function applyCompany(operation: CompanyOperation, deps: BrevoSenderDeps, cache: Map<string, string>): Promise<Outcome> {
  const refused = (result: HttpResult): Outcome => ({ status: "rejected", reason: brevoMessage(result) });
  const found = await findCompany(operation.marker, deps, cache, COMPANY_CALL);
  if (isRefusal(found)) return { status: "rejected", reason: found.refusal };
  if (found !== undefined && typeof found !== "string") return refused(found);
  const id = found;
  const path = (companyId: string) => `/companies/${encodeURIComponent(companyId)}`;
  switch (operation.op) {
    case "delete": {
      if (id === undefined) return sent;
      cache.delete(operation.marker);
      const result = await deps.client.call("DELETE", path(id), undefined, COMPANY_CALL);
      return isOk(result) || result.status === 404 ? sent : refused(result);
    }
    case "unset": {
      if (id === undefined) return sent;
      const attributes = Object.fromEntries(operation.attributes.map((name) => [name, null]));
      const result = await deps.client.call("PATCH", path(id), { attributes }, COMPANY_CALL);
      return isOk(result) || result.status === 404 ? sent : refused(result);
    }
    case "upsert": {
      if (id !== undefined) {
        if (operation.onlyOnCreate) return sent;
        // Never linkedContactsIds here: PATCH replaces the whole list (§3).
        const result = await deps.client.call("PATCH", path(id), { name: operation.name, attributes: operation.attributes }, COMPANY_CALL);
        if (result.status !== 404) return isOk(result) ? sent : refused(result);
        cache.delete(operation.marker);
      }
      const result = await deps.client.call(
        "POST",
        "/companies",
        { name: operation.name, attributes: { ...operation.attributes, [deps.config.companies.id_attribute]: operation.marker } },
        COMPANY_CALL,
      );
      if (!isOk(result)) return refused(result);
      // Without an id in the reply the next update finds the company by its marker.
      const created = parseJsonWith(companyCreatedSchema, result.body);
      if (created.success) remember(cache, operation.marker, created.data.id);
      return sent;
    }
  }
}

function sendGroups(lines: readonly string[], deps: BrevoSenderDeps): Promise<Outcome[]> {
  const cache = deps.companyIds ?? new Map<string, string>();
  return applyEach(
    lines,
    deps,
    (line) => {
      const mapped = mapGroupToCompany(line, deps.config);
      return mapped.status === "send" ? { operation: mapped.operation } : notSent(mapped);
    },
    (operation) => applyCompany(operation, deps, cache),
  );
}

export function createBrevoSend(deps: BrevoSenderDeps): (kind: RecordKind, lines: readonly string[]) => Promise<RecordOutcome[]> {
  return async (kind, lines) => {
    try {
      // Fails closed: when the erased-ids list cannot be read, nothing is sent (all left for redelivery).
      const suppressed = deps.suppressed ? await deps.suppressed() : new Set<string>();
      if (kind === "event") return await sendEvents(lines, deps, suppressed);
      if (kind === "profile") return await sendProfiles(lines, deps, suppressed);
      return await sendGroups(lines, deps);
    } catch (error) {
      // Not a Brevo answer: a bug or an unexpected fault. Keep every record for redelivery.
      const reason = describeError(error);
      return lines.map(() => ({ status: "retry", reason }) as const);
    }
  };
}
