import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { closeServer, listenOnLoopback } from "./local-server.js";

/**
 * Strict local Brevo (docs/vendors/cohort-sync.md §3): `api-key` header; POST /v3/contacts
 * (400 duplicate_parameter for an existing contact without updateEnabled:true; attribute
 * names must be UPPERCASE); POST /v3/contacts/import (body ≤ 10 MB, exactly one of
 * jsonBody/fileBody/fileUrl, jsonBody a non-empty array of `{email, attributes}`, listIds
 * of existing lists or newList, updateExistingContacts default true; 202 `{processId}`,
 * applied at once and recorded in `imports`); list add/remove with ≤150 emails, contacts must exist;
 * /v3/contacts/batch refused (deprecated); rate limits per bucket (contacts, events: `limit` calls
 * per `windowMs`; all other endpoints: `otherLimit` per `otherWindowMs`, 100 per hour by default)
 * with that bucket's x-sib-ratelimit-{limit,remaining,reset} on every answer and 429 beyond.
 * The clock is injectable so tests can advance time instead of sleeping.
 *
 * The connector's side (docs/vendors/brevo-connector.md §1–§4):
 * POST /v3/events and /v3/events/batch (name and key rules, identifiers, ISO event_date with an
 * offset, event_properties ≤ 50 KB; batch answers 202, 207 with the failed eventIndexes, or 400
 * when all fail); POST /v3/contacts with `email` and/or `ext_id`, GET/PUT/DELETE
 * /v3/contacts/{id}?identifierType=… (ext_id needs identifierType, §2); companies
 * (POST, GET with filters[attributes.X], PATCH, DELETE, link-unlink); `GET /_sandbox/events`,
 * `/_sandbox/contacts`, `/_sandbox/companies` (no key) show what arrived. Fault injection:
 * `failNext` (any status, optionally per path), `outage` (every /v3 call answers that status).
 */
export interface BrevoServerOptions {
  readonly apiKey: string;
  readonly listIds: readonly number[];
  /** Requests per `windowMs` on each of the contacts (`/v3/contacts*`) and events (`/v3/events*`) buckets (default 10 per 1 s). */
  readonly limit?: number;
  readonly windowMs?: number;
  /**
   * The "all other endpoints" bucket (companies, link-unlink, processes, CRM attributes):
   * `otherLimit` requests per `otherWindowMs`, Brevo's General tier by default (100 per hour,
   * developers.brevo.com/docs/api-limits); tests scale the window down.
   */
  readonly otherLimit?: number;
  readonly otherWindowMs?: number;
  readonly now?: () => number;
  /** Port on 127.0.0.1; 0 (default) picks a free one. */
  readonly port?: number;
  /** Called after each answered call (the local stack prints a line). */
  readonly onCall?: (call: BrevoCall & { method: string }) => void;
}

export interface BrevoCall {
  readonly path: string;
  readonly status: number;
  readonly body: unknown;
}

const MAX_LIST_EMAILS = 150;
export const MAX_IMPORT_BYTES = 10 * 1024 * 1024;

export interface BrevoImport {
  readonly processId: number;
  readonly bytes: number;
  readonly contacts: number;
  readonly listIds: readonly number[];
}

const BREVO_NAME = /^[A-Za-z0-9_-]{1,255}$/;
const ISO_WITH_OFFSET = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
const EVENT_IDENTIFIERS = new Set(["contact_id", "email_id", "ext_id", "phone_id", "whatsapp_id", "landline_number_id"]);
const MAX_EVENT_PROPERTIES_BYTES = 50 * 1024;
export const MAX_EVENTS_PER_BATCH = 200;
export const MAX_EVENTS_BATCH_BYTES = 512 * 1024;

/** One request to a connector endpoint, parsed once. */
interface ConnectorCall {
  readonly method: string;
  readonly url: URL;
  /** The JSON body's fields (empty for GET and DELETE). */
  readonly record: Record<string, unknown>;
  readonly now: number;
  readonly bad: (message: string) => void;
  readonly answer: (status: number, payload?: unknown) => void;
  readonly raw: Buffer;
}

/**
 * The connector's endpoints, tried in order; a handler answers and returns true, or returns
 * false to leave the request to the legacy routes (405 / 404 as Brevo answers them).
 */
interface ConnectorRoute {
  readonly method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "*";
  readonly path: RegExp;
  readonly handle: (server: BrevoServer, call: ConnectorCall, match: RegExpExecArray) => boolean;
}


/** Brevo's rate-limit buckets (docs/api-limits): contacts, events, and "all other endpoints". */
type RateBucket = "contacts" | "events" | "other";
function rateBucketOf(path: string): RateBucket {
  if (path.startsWith("/v3/contacts")) return "contacts";
  // /v3/events/batch is not in Brevo's table; counted with POST /v3/events here (unverified).
  if (path.startsWith("/v3/events")) return "events";
  return "other";
}

export interface BrevoEventRecord {
  readonly event_name: string;
  readonly identifiers: Record<string, unknown>;
  readonly event_date?: string;
  readonly event_properties?: Record<string, unknown>;
  readonly receivedAt: number;
}

export interface BrevoCompany {
  readonly id: string;
  name: string;
  attributes: Record<string, unknown>;
  linkedContactsIds: number[];
}

export class BrevoServer {
  /** The connector's endpoints (ConnectorRoute), in the order they are tried. */
  private static readonly connectorRoutes: readonly ConnectorRoute[] = [
    { method: "POST", path: /^\/v3\/events$/, handle: (server, call, match) => {
      const { record, now, bad, answer } = call;
      const error = BrevoServer.checkEvent(record);
      if (error) bad(error);
      else {
        server.events.push({ ...(record as unknown as BrevoEventRecord), receivedAt: now });
        answer(204);
      }
      return true;
    } },
    { method: "POST", path: /^\/v3\/events\/batch$/, handle: (server, call, match) => {
      const { record, now, bad, answer, raw } = call;
      // "Create events in batch" limits (developers.brevo.com/docs/event-endpoints): ≤ 512 KB, ≤ 200 events.
      if (raw.length > MAX_EVENTS_BATCH_BYTES) {
        answer(413, { code: "payload_too_large", message: `request body is ${raw.length} bytes; at most ${MAX_EVENTS_BATCH_BYTES}` });
        return true;
      }
      const events = record.events;
      if (!Array.isArray(events) || events.length === 0) {
        bad("events must be a non-empty array");
        return true;
      }
      if (events.length > MAX_EVENTS_PER_BATCH) {
        bad(`events holds ${events.length} events; at most ${MAX_EVENTS_PER_BATCH} per request`);
        return true;
      }
      if (server.refuseBatchWhen !== undefined && events.some((event) => server.refuseBatchWhen?.(event) === true)) {
        answer(400, { code: "invalid_parameter", message: "events batch could not be processed" });
        return true;
      }
      server.eventBatches.push({ events: events.length, bytes: raw.length });
      const errors: { eventIndex: number[]; message: string }[] = [];
      events.forEach((event, index) => {
        const error = BrevoServer.checkEvent(event);
        if (error) errors.push({ eventIndex: [index], message: error });
        else server.events.push({ ...(event as BrevoEventRecord), receivedAt: now });
      });
      if (errors.length === 0) answer(202, { message: "events accepted", count: events.length });
      else {
        const summary = { status: "failed", total_events: events.length, successful_events: events.length - errors.length, failed_events: errors.length, errors };
        answer(errors.length === events.length ? 400 : 207, summary);
      }
      return true;
    } },
    { method: "POST", path: /^\/v3\/contacts$/, handle: (server, call, match) => {
      const { record, bad, answer } = call;
      const email = record.email;
      const extId = record.ext_id;
      const sms = record.attributes !== null && typeof record.attributes === "object" ? (record.attributes as Record<string, unknown>).SMS : undefined;
      if (email === undefined && extId === undefined && sms === undefined) {
        bad("one of email, ext_id or attributes.SMS is required");
        return true;
      }
      if (email !== undefined && (typeof email !== "string" || !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(email))) {
        bad("email is not valid");
        return true;
      }
      if (extId !== undefined && (typeof extId !== "string" || extId === "")) {
        bad("ext_id must be a non-empty string");
        return true;
      }
      const attributes = record.attributes ?? {};
      const attributeError = BrevoServer.checkAttributes(attributes);
      if (attributeError) {
        bad(attributeError);
        return true;
      }
      const listIds = record.listIds ?? [];
      if (!Array.isArray(listIds) || !listIds.every((id) => Number.isInteger(id))) {
        bad("listIds must be an array of list ids");
        return true;
      }
      const missingList = listIds.find((id) => !server.lists.has(Number(id)));
      if (missingList !== undefined) {
        answer(404, { code: "document_not_found", message: `List ID ${String(missingList)} does not exist` });
        return true;
      }
      const byExt = typeof extId === "string" ? server.findContact(extId, "ext_id") : undefined;
      const byEmail = typeof email === "string" && server.contacts.has(email.toLowerCase()) ? email.toLowerCase() : undefined;
      if (byExt !== undefined && byEmail !== undefined && byExt !== byEmail) {
        answer(400, { code: "duplicate_parameter", message: "email and ext_id belong to different contacts", metadata: { duplicate_identifiers: ["email", "ext_id"] } });
        return true;
      }
      let key = byExt ?? byEmail;
      if (key === "invalid") key = undefined;
      if (key !== undefined && record.updateEnabled !== true) {
        answer(400, { code: "duplicate_parameter", message: "Contact already exist" });
        return true;
      }
      const existed = key !== undefined;
      if (key === undefined) key = typeof email === "string" ? email.toLowerCase() : `ext:${String(extId ?? sms)}`;
      else if (key.startsWith("ext:") && typeof email === "string") {
        server.rekey(key, email.toLowerCase());
        key = email.toLowerCase();
      }
      server.contacts.set(key, BrevoServer.mergeAttributes(server.contacts.get(key) ?? {}, attributes as Record<string, unknown>));
      const id = server.idOf(key, typeof extId === "string" ? extId : undefined);
      for (const list of listIds) server.lists.get(Number(list))?.add(key);
      if (existed) answer(204);
      else answer(201, { id });
      return true;
    } },
    { method: "*", path: /^\/v3\/contacts\/([^/]+)$/, handle: (server, call, match) => {
      const { method, url, record, bad, answer } = call;
      const identifier = decodeURIComponent(match[1] ?? "");
      const key = server.findContact(identifier, url.searchParams.get("identifierType"));
      if (key === "invalid") {
        bad("identifier needs identifierType (ext_id always does)");
        return true;
      }
      if (key === undefined) {
        answer(404, { code: "document_not_found", message: "Contact does not exist" });
        return true;
      }
      if (method === "GET") {
        const meta = server.contactIds.get(key);
        answer(200, {
          id: meta?.id,
          email: key.startsWith("ext:") ? undefined : key,
          ext_id: meta?.extId,
          attributes: server.contacts.get(key) ?? {},
          listIds: [...server.lists].filter(([, members]) => members.has(key)).map(([id]) => id),
        });
        return true;
      }
      if (method === "DELETE") {
        server.contacts.delete(key);
        server.contactIds.delete(key);
        for (const members of server.lists.values()) members.delete(key);
        answer(204);
        return true;
      }
      if (method === "PUT") {
        const attributes = record.attributes ?? {};
        const attributeError = BrevoServer.checkAttributes(attributes);
        if (attributeError) {
          bad(attributeError);
          return true;
        }
        for (const field of ["listIds", "unlinkListIds"] as const) {
          const ids = record[field] ?? [];
          if (!Array.isArray(ids) || !ids.every((id) => server.lists.has(Number(id)))) {
            answer(404, { code: "document_not_found", message: `${field} names a list that does not exist` });
            return true;
          }
        }
        server.contacts.set(key, BrevoServer.mergeAttributes(server.contacts.get(key) ?? {}, attributes as Record<string, unknown>));
        if (typeof record.ext_id === "string") server.idOf(key, record.ext_id);
        for (const id of (record.listIds as unknown[] | undefined) ?? []) server.lists.get(Number(id))?.add(key);
        for (const id of (record.unlinkListIds as unknown[] | undefined) ?? []) server.lists.get(Number(id))?.delete(key);
        answer(204);
        return true;
      }
      return false;
    } },
    { method: "GET", path: /^\/v3\/companies$/, handle: (server, call, match) => {
      const { url, answer } = call;
      // Brevo documents filters on attributes.name and attributes.owner only (get-all-companies):
      // a filter on any other attribute is ignored here, as a real server may, and every company answers.
      const filters = [...url.searchParams].filter(([name]) => /^filters\[attributes\.(name|owner)\]$/.test(name));
      const items = [...server.companies.values()].filter((company) =>
        filters.every(([name, value]) => (name === "filters[attributes.name]" ? company.name === value : String(company.attributes.owner) === value)),
      );
      const limit = Math.max(1, Math.min(100, Number(url.searchParams.get("limit") ?? 50) || 50));
      const page = Math.max(1, Number(url.searchParams.get("page") ?? 1) || 1);
      answer(200, { items: items.slice((page - 1) * limit, page * limit) });
      return true;
    } },
    { method: "POST", path: /^\/v3\/companies$/, handle: (server, call, match) => {
      const { record, bad, answer } = call;
      if (typeof record.name !== "string" || record.name === "") {
        bad("name is required");
        return true;
      }
      const attributes = record.attributes ?? {};
      if (attributes === null || typeof attributes !== "object" || Array.isArray(attributes)) {
        bad("attributes must be an object");
        return true;
      }
      const id = `c${server.nextCompanyId++}`;
      server.companies.set(id, { id, name: record.name, attributes: { ...attributes }, linkedContactsIds: [] });
      answer(200, { id });
      return true;
    } },
    { method: "PATCH", path: /^\/v3\/companies\/link-unlink\/([^/]+)$/, handle: (server, call, match) => {
      const { record, answer } = call;
      const company = server.companies.get(decodeURIComponent(match[1] ?? ""));
      if (!company) {
        answer(404, { code: "document_not_found", message: "Company not found" });
        return true;
      }
      const link = Array.isArray(record.linkContactIds) ? record.linkContactIds.map(Number) : [];
      const unlink = new Set(Array.isArray(record.unlinkContactIds) ? record.unlinkContactIds.map(Number) : []);
      company.linkedContactsIds = [...new Set([...company.linkedContactsIds, ...link])].filter((id) => !unlink.has(id));
      answer(204);
      return true;
    } },
    { method: "*", path: /^\/v3\/companies\/([^/]+)$/, handle: (server, call, match) => {
      const { method, record, bad, answer } = call;
      const id = decodeURIComponent(match[1] ?? "");
      const company = server.companies.get(id);
      if (!company) {
        answer(404, { code: "document_not_found", message: "Company not found" });
        return true;
      }
      if (method === "GET") answer(200, company);
      else if (method === "DELETE") {
        server.companies.delete(id);
        answer(204);
      } else if (method === "PATCH") {
        if (record.name !== undefined && (typeof record.name !== "string" || record.name === "")) {
          bad("name cannot be empty");
          return true;
        }
        if (typeof record.name === "string") company.name = record.name;
        if (record.attributes !== undefined) {
          if (record.attributes === null || typeof record.attributes !== "object") {
            bad("attributes must be an object");
            return true;
          }
          company.attributes = BrevoServer.mergeCompanyAttributes(company.attributes, record.attributes as Record<string, unknown>);
        }
        // PATCH replaces the whole list of linked contacts (§3).
        if (Array.isArray(record.linkedContactsIds)) company.linkedContactsIds = record.linkedContactsIds.map(Number);
        answer(200, company);
      } else return false;
      return true;
    } },
  ];

  readonly contacts = new Map<string, Record<string, unknown>>();
  /** Connector side: contact key (email, or "ext:<ext_id>" for contacts without one) → id and ext_id. */
  readonly contactIds = new Map<string, { id: number; extId?: string }>();
  readonly events: BrevoEventRecord[] = [];
  /** Each /v3/events/batch request that passed the size limits: its event count and body bytes. */
  readonly eventBatches: { readonly events: number; readonly bytes: number }[] = [];
  readonly companies = new Map<string, BrevoCompany>();
  /**
   * Fault injection: a batch holding an event this matches is refused whole with a 400
   * `{code, message}` that names no event (a refusal the batch answer table does not cover).
   */
  refuseBatchWhen: ((event: unknown) => boolean) | undefined;
  /** When set, every /v3 call answers this status (an outage); `undefined` = up. */
  outage: number | undefined;
  private nextContactId = 1;
  private nextCompanyId = 1;
  readonly lists = new Map<number, Set<string>>();
  readonly calls: BrevoCall[] = [];
  readonly imports: BrevoImport[] = [];
  private readonly faults: { status: number; body?: string; path?: string }[] = [];
  /** Process id → statuses still to answer before "completed" (GET /v3/processes/{id}). */
  private readonly processQueue = new Map<number, string[]>();
  /** Per rate-limit bucket: the current window's start and the calls counted in it. */
  private readonly buckets = new Map<RateBucket, { start: number; used: number }>();
  /**
   * Statuses each new import's process answers before its last one (Brevo's get-process
   * reference: queued, processing, then completed, failed or cancelled; older specs said in_process).
   */
  importProgress: string[] = [];
  /** The status an import ends with once `importProgress` is used up. */
  importOutcome: "completed" | "failed" | "cancelled" = "completed";
  private server: Server | undefined;
  url = "";

  constructor(private readonly options: BrevoServerOptions) {
    for (const id of options.listIds) this.lists.set(id, new Set());
  }

  failNext(...faults: { status: number; body?: string; path?: string }[]): void {
    this.faults.push(...faults);
  }

  /** Calls answered 429. */
  get throttled(): number {
    return this.calls.filter((c) => c.status === 429).length;
  }

  async start(): Promise<string> {
    this.server = createServer((request, response) => {
      this.route(request, response).catch((error: unknown) => this.send(response, 500, { code: "internal", message: String(error) }, {}));
    });
    const port = await listenOnLoopback(this.server, this.options.port ?? 0);
    this.url = `http://127.0.0.1:${port}/v3`;
    return this.url;
  }

  async close(): Promise<void> {
    await closeServer(this.server);
  }

  private send(response: ServerResponse, status: number, body: unknown, headers: Record<string, string>): void {
    response.writeHead(status, { "content-type": "application/json", ...headers });
    response.end(body === undefined ? "" : JSON.stringify(body));
  }

  private async route(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
    const url = new URL(request.url ?? "/", "http://localhost");
    const path = url.pathname;
    const raw = Buffer.concat(chunks);
    let body: unknown;
    try {
      body = chunks.length > 0 ? JSON.parse(raw.toString("utf8")) : undefined;
    } catch {
      body = undefined;
    }
    if (request.method === "GET" && path.startsWith("/_sandbox/")) return this.sandboxView(path, response);
    const now = (this.options.now ?? Date.now)();
    const bucketName = rateBucketOf(path);
    const windowMs = bucketName === "other" ? (this.options.otherWindowMs ?? 3_600_000) : (this.options.windowMs ?? 1000);
    const limit = bucketName === "other" ? (this.options.otherLimit ?? 100) : (this.options.limit ?? 10);
    const bucket = this.buckets.get(bucketName) ?? { start: now, used: 0 };
    this.buckets.set(bucketName, bucket);
    if (now - bucket.start >= windowMs) {
      bucket.start = now;
      bucket.used = 0;
    }
    const answer = (status: number, payload?: unknown) => {
      const resetSeconds = Math.max(0, Math.ceil((bucket.start + windowMs - now) / 1000));
      this.calls.push({ path, status, body });
      this.options.onCall?.({ method: request.method ?? "GET", path, status, body });
      this.send(response, status, payload, {
        "x-sib-ratelimit-limit": String(limit),
        "x-sib-ratelimit-remaining": String(Math.max(0, limit - bucket.used)),
        "x-sib-ratelimit-reset": String(resetSeconds),
      });
    };
    if (this.outage !== undefined) return answer(this.outage, { code: "unavailable", message: "scripted outage" });
    if (request.headers["api-key"] !== this.options.apiKey) return answer(401, { code: "unauthorized", message: "Key not found" });
    if (bucket.used >= limit) return answer(429, { code: "too_many_requests", message: "rate limit exceeded" });
    bucket.used += 1;
    const processMatch = /^\/v3\/processes\/(\d+)$/.exec(path);
    if (processMatch && request.method === "GET") return this.processStatus(Number(processMatch[1]), answer);
    const fault = this.faults.findIndex((f) => !f.path || f.path === path);
    if (fault >= 0) {
      const [f] = this.faults.splice(fault, 1);
      return answer(f?.status ?? 500, f?.body !== undefined ? JSON.parse(f.body) : { code: "scripted", message: "fault" });
    }
    if (this.connectorRoute(request.method ?? "GET", path, url, request.headers["content-type"], raw, body, answer)) return;
    if (request.method !== "POST") return answer(405, { code: "method_not_allowed", message: "POST only" });
    if (!String(request.headers["content-type"] ?? "").startsWith("application/json")) {
      return answer(415, { code: "invalid_parameter", message: "JSON only" });
    }
    if (path === "/v3/contacts/batch") return answer(400, { code: "invalid_parameter", message: "/contacts/batch is deprecated; do not use" });
    if (body === null || typeof body !== "object" || Array.isArray(body)) return answer(400, { code: "invalid_parameter", message: "object body expected" });
    const record: Record<string, unknown> = { ...body };

    if (path === "/v3/contacts/import") return this.importContacts(record, raw.length, answer);
    const match = /^\/v3\/contacts\/lists\/(\d+)\/contacts\/(add|remove)$/.exec(path);
    if (match) {
      const list = this.lists.get(Number(match[1]));
      if (!list) return answer(404, { code: "document_not_found", message: "List ID does not exist" });
      const emails = record.emails;
      if (!Array.isArray(emails) || emails.length === 0 || !emails.every((e) => typeof e === "string")) {
        return answer(400, { code: "invalid_parameter", message: "emails must be a non-empty array of strings" });
      }
      if (emails.length > MAX_LIST_EMAILS) {
        return answer(400, { code: "invalid_parameter", message: `at most ${MAX_LIST_EMAILS} emails per call` });
      }
      const success: string[] = [];
      const failure: string[] = [];
      for (const email of emails.map(String)) {
        const key = email.toLowerCase();
        if (match[2] === "add") {
          if (this.contacts.has(key) && !list.has(key)) {
            list.add(key);
            success.push(email);
          } else failure.push(email);
        } else if (list.delete(key)) success.push(email);
        else failure.push(email);
      }
      if (success.length === 0) {
        return answer(400, {
          code: "invalid_parameter",
          message: match[2] === "add" ? "Contact already in list and/or does not exist" : "Contact already removed from list and/or does not exist",
        });
      }
      return answer(201, { contacts: { success, failure } });
    }
    return answer(404, { code: "not_found", message: `no route ${path}` });
  }

  private sandboxView(path: string, response: ServerResponse): void {
    const views: Record<string, unknown> = {
      "/_sandbox/events": this.events,
      "/_sandbox/contacts": [...this.contacts].map(([key, attributes]) => ({
        key,
        id: this.contactIds.get(key)?.id,
        ext_id: this.contactIds.get(key)?.extId,
        email: key.startsWith("ext:") ? undefined : key,
        attributes,
        listIds: [...this.lists].filter(([, members]) => members.has(key)).map(([id]) => id),
      })),
      "/_sandbox/companies": [...this.companies.values()],
      "/_sandbox/event-batches": this.eventBatches,
    };
    if (!(path in views)) return this.send(response, 404, { error: "not_found" }, {});
    this.send(response, 200, views[path], {});
  }

  /** The contact key for an identifier, as Brevo resolves `{identifier}?identifierType=` (§2). */
  private findContact(identifier: string, type: string | null): string | undefined | "invalid" {
    const byId = (id: number) => [...this.contactIds].find(([, meta]) => meta.id === id)?.[0];
    if (type === null) {
      if (identifier.includes("@")) return this.contacts.has(identifier.toLowerCase()) ? identifier.toLowerCase() : undefined;
      if (/^\d+$/.test(identifier)) return byId(Number(identifier));
      return "invalid";
    }
    if (type === "email_id") return this.contacts.has(identifier.toLowerCase()) ? identifier.toLowerCase() : undefined;
    if (type === "contact_id") return byId(Number(identifier));
    if (type === "ext_id") return [...this.contactIds].find(([, meta]) => meta.extId === identifier)?.[0];
    if (type === "phone_id") return [...this.contacts].find(([, attributes]) => attributes.SMS === identifier)?.[0];
    return "invalid";
  }

  private idOf(key: string, extId?: string): number {
    const meta = this.contactIds.get(key) ?? { id: this.nextContactId++ };
    const next = extId !== undefined ? { ...meta, extId } : meta;
    this.contactIds.set(key, next);
    return next.id;
  }

  /** Moves a contact known only by ext_id to its email key once an email arrives. */
  private rekey(from: string, to: string): void {
    this.contacts.set(to, this.contacts.get(from) ?? {});
    this.contacts.delete(from);
    const meta = this.contactIds.get(from);
    if (meta) this.contactIds.set(to, meta);
    this.contactIds.delete(from);
    for (const members of this.lists.values()) if (members.delete(from)) members.add(to);
  }

  /**
   * Contact attributes take string, number, boolean or an array of strings (multiple-choice);
   * "values that don't match the attribute type will be ignored" (update-contact reference), so
   * null, objects and mixed arrays change nothing.
   */
  private static mergeAttributes(existing: Record<string, unknown>, attributes: Record<string, unknown>): Record<string, unknown> {
    const merged = { ...existing };
    for (const [name, value] of Object.entries(attributes)) {
      const typed = typeof value === "string" || typeof value === "boolean" || (typeof value === "number" && Number.isFinite(value)) || (Array.isArray(value) && value.every((item) => typeof item === "string"));
      if (typed) merged[name] = value;
    }
    return merged;
  }

  /** Company attributes (CRM): a null still clears here; Brevo documents no other way (unverified). */
  private static mergeCompanyAttributes(existing: Record<string, unknown>, attributes: Record<string, unknown>): Record<string, unknown> {
    const merged = { ...existing };
    for (const [name, value] of Object.entries(attributes)) {
      if (value === null) delete merged[name];
      else merged[name] = value;
    }
    return merged;
  }

  private static checkAttributes(attributes: unknown): string | undefined {
    if (attributes === null || typeof attributes !== "object" || Array.isArray(attributes)) return "attributes must be an object";
    const lower = Object.keys(attributes).find((k) => k !== k.toUpperCase());
    return lower ? `attribute ${lower} must be UPPERCASE` : undefined;
  }

  private static checkEvent(event: unknown): string | undefined {
    if (event === null || typeof event !== "object" || Array.isArray(event)) return "event must be an object";
    const record: Record<string, unknown> = { ...event };
    const allowed = new Set(["event_name", "identifiers", "event_date", "event_properties", "contact_properties", "object"]);
    const extra = Object.keys(record).find((k) => !allowed.has(k));
    if (extra) return `${extra} is not an event field`;
    if (typeof record.event_name !== "string" || !BREVO_NAME.test(record.event_name)) return "event_name must be 1-255 characters of A-Z a-z 0-9 - _";
    const ids = record.identifiers;
    if (ids === null || typeof ids !== "object" || Array.isArray(ids) || Object.keys(ids).length === 0) return "identifiers must name at least one identifier";
    for (const [key, value] of Object.entries(ids)) {
      if (!EVENT_IDENTIFIERS.has(key)) return `identifiers.${key} is not an identifier`;
      if (key === "contact_id" ? !Number.isInteger(value) : typeof value !== "string" || value === "") return `identifiers.${key} has the wrong type`;
    }
    if (record.event_date !== undefined && (typeof record.event_date !== "string" || !ISO_WITH_OFFSET.test(record.event_date) || Number.isNaN(Date.parse(record.event_date)))) {
      return "event_date must be ISO 8601 with an offset";
    }
    const props = record.event_properties;
    if (props !== undefined) {
      if (props === null || typeof props !== "object" || Array.isArray(props)) return "event_properties must be an object";
      const badKey = (value: unknown): string | undefined => {
        if (Array.isArray(value)) return value.map(badKey).find((k) => k !== undefined);
        if (value !== null && typeof value === "object") {
          for (const [key, inner] of Object.entries(value)) {
            if (!BREVO_NAME.test(key)) return key;
            const nested = badKey(inner);
            if (nested !== undefined) return nested;
          }
        }
        return undefined;
      };
      const bad = badKey(props);
      if (bad !== undefined) return `event_properties key ${JSON.stringify(bad)} breaks the key rule`;
      if (Buffer.byteLength(JSON.stringify(props)) > MAX_EVENT_PROPERTIES_BYTES) return "event_properties is larger than 50 KB";
    }
    return undefined;
  }

  /** The connector's endpoints; true when the request was answered. */
  private connectorRoute(
    method: string,
    path: string,
    url: URL,
    contentType: string | undefined,
    raw: Buffer,
    body: unknown,
    answer: (status: number, payload?: unknown) => void,
  ): boolean {
    const bad = (message: string) => answer(400, { code: "invalid_parameter", message });
    const needsJson = method === "POST" || method === "PUT" || method === "PATCH";
    const isConnectorPath = path === "/v3/events" || path === "/v3/events/batch" || path === "/v3/contacts" || /^\/v3\/contacts\/[^/]+$/.test(path) || path.startsWith("/v3/companies");
    if (!isConnectorPath || /^\/v3\/contacts\/(import|batch|lists|attributes)$/.test(path)) return false;
    if (needsJson && !String(contentType ?? "").startsWith("application/json")) {
      answer(415, { code: "invalid_parameter", message: "JSON only" });
      return true;
    }
    if (needsJson && (body === null || typeof body !== "object" || Array.isArray(body))) {
      bad(raw.length === 0 ? "body is required" : "object body expected");
      return true;
    }
    const record: Record<string, unknown> = needsJson ? { ...(body as object) } : {};
    const now = (this.options.now ?? Date.now)();
    const call: ConnectorCall = { method, url, record, now, bad, answer, raw };
    for (const route of BrevoServer.connectorRoutes) {
      const match = route.path.exec(path);
      if (match && (route.method === "*" || route.method === method) && route.handle(this, call, match)) return true;
    }
    return false;
  }

  private importContacts(record: Record<string, unknown>, bytes: number, answer: (status: number, payload?: unknown) => void): void {
    const bad = (message: string) => answer(400, { code: "invalid_parameter", message });
    if (bytes > MAX_IMPORT_BYTES) return bad(`import body is ${bytes} bytes; at most ${MAX_IMPORT_BYTES}`);
    const sources = ["jsonBody", "fileBody", "fileUrl"].filter((k) => record[k] !== undefined);
    if (sources.length !== 1) return bad("exactly one of jsonBody, fileBody or fileUrl is required");
    const rows = record.jsonBody;
    if (!Array.isArray(rows) || rows.length === 0) return bad("jsonBody must be a non-empty array");
    const listIds = record.listIds;
    if (listIds !== undefined) {
      if (!Array.isArray(listIds) || listIds.length === 0 || !listIds.every((id) => Number.isInteger(id) && id > 0)) {
        return bad("listIds must be a non-empty array of list ids");
      }
      const missing = listIds.find((id) => !this.lists.has(Number(id)));
      if (missing !== undefined) return answer(404, { code: "document_not_found", message: `List ID ${String(missing)} does not exist` });
    } else if (record.newList === undefined) return bad("listIds or newList is required");
    if (record.updateExistingContacts !== undefined && typeof record.updateExistingContacts !== "boolean") {
      return bad("updateExistingContacts must be a boolean");
    }
    const contacts: { email: string; attributes: Record<string, unknown> }[] = [];
    for (const [index, row] of rows.entries()) {
      if (row === null || typeof row !== "object" || Array.isArray(row)) return bad(`jsonBody[${index}] must be an object`);
      const { email, attributes = {}, ...rest } = row as Record<string, unknown>;
      const unknownKey = Object.keys(rest).find((k) => !["ext_id", "SMS"].includes(k));
      if (unknownKey) return bad(`jsonBody[${index}].${unknownKey} is not a contact field`);
      if (typeof email !== "string" || !email.includes("@")) return bad(`jsonBody[${index}].email is not valid`);
      if (attributes === null || typeof attributes !== "object" || Array.isArray(attributes)) return bad(`jsonBody[${index}].attributes must be an object`);
      const lower = Object.keys(attributes).find((k) => k !== k.toUpperCase());
      if (lower) return bad(`jsonBody[${index}].attributes.${lower} must be UPPERCASE`);
      contacts.push({ email, attributes: { ...attributes } });
    }
    const update = record.updateExistingContacts !== false;
    // "emptyContactsAttributes = true means the empty fields in your import will erase any attribute" (import-contacts reference).
    const erase = update && record.emptyContactsAttributes === true;
    for (const { email, attributes } of contacts) {
      const key = email.toLowerCase();
      const existing = this.contacts.get(key);
      const filled = Object.fromEntries(Object.entries(attributes).filter(([, value]) => value !== "" && value !== null));
      if (!existing) this.contacts.set(key, BrevoServer.mergeAttributes({}, filled));
      else if (update) {
        const merged = BrevoServer.mergeAttributes(existing, filled);
        if (erase) for (const [name, value] of Object.entries(attributes)) if (value === "" || value === null) delete merged[name];
        this.contacts.set(key, merged);
      }
      for (const id of Array.isArray(listIds) ? listIds : []) this.lists.get(Number(id))?.add(key);
    }
    const processId = this.imports.length + 1;
    this.imports.push({ processId, bytes, contacts: contacts.length, listIds: Array.isArray(listIds) ? listIds.map(Number) : [] });
    this.processQueue.set(processId, [...this.importProgress, this.importOutcome]);
    answer(202, { processId });
  }

  /**
   * `GET /v3/processes/{processId}` (docs/vendors/cohort-sync.md §3): `{id, status, name}` with
   * status `queued` | `processing` | `completed` | `failed` | `cancelled`; the last status
   * repeats once reached; 404 `document_not_found` for an unknown id.
   */
  private processStatus(processId: number, answer: (status: number, payload?: unknown) => void): void {
    const queue = this.processQueue.get(processId);
    if (!queue) return answer(404, { code: "document_not_found", message: `Process ${processId} does not exist` });
    const status = queue.length > 1 ? (queue.shift() ?? "completed") : (queue[0] ?? "completed");
    answer(200, { id: processId, status, name: `import-${processId}` });
  }
}
