import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { closeServer, listenOnLoopback } from "./local-server.js";

/**
 * Strict local Brevo (reference/cohort-sync.md §3): `api-key` header; POST /v3/contacts
 * (400 duplicate_parameter for an existing contact without updateEnabled:true; attribute
 * names must be UPPERCASE); POST /v3/contacts/import (body ≤ 10 MB, exactly one of
 * jsonBody/fileBody/fileUrl, jsonBody a non-empty array of `{email, attributes}`, listIds
 * of existing lists or newList, updateExistingContacts default true; 202 `{processId}`,
 * applied at once and recorded in `imports`); list add/remove with ≤150 emails, contacts must exist;
 * /v3/contacts/batch refused (deprecated); a rate limit of `limit` calls per `windowMs`
 * with x-sib-ratelimit-{limit,remaining,reset} on every answer and 429 beyond.
 * The clock is injectable so tests can advance time instead of sleeping.
 */
export interface BrevoServerOptions {
  readonly apiKey: string;
  readonly listIds: readonly number[];
  readonly limit?: number;
  readonly windowMs?: number;
  readonly now?: () => number;
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

export class BrevoServer {
  readonly contacts = new Map<string, Record<string, unknown>>();
  readonly lists = new Map<number, Set<string>>();
  readonly calls: BrevoCall[] = [];
  readonly imports: BrevoImport[] = [];
  private readonly faults: { status: number; body?: string; path?: string }[] = [];
  /** Process id → statuses still to answer before "completed" (GET /v3/processes/{id}). */
  private readonly processQueue = new Map<number, string[]>();
  private processWindowStart = 0;
  private processCalls = 0;
  /** Statuses each new import's process answers before "completed" (e.g. ["queued", "in_process"]). */
  importProgress: string[] = [];
  private windowStart = 0;
  private used = 0;
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
    const port = await listenOnLoopback(this.server);
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
    const now = (this.options.now ?? Date.now)();
    const windowMs = this.options.windowMs ?? 1000;
    const limit = this.options.limit ?? 10;
    if (now - this.windowStart >= windowMs) {
      this.windowStart = now;
      this.used = 0;
    }
    const answer = (status: number, payload?: unknown) => {
      const resetSeconds = Math.max(0, Math.ceil((this.windowStart + windowMs - now) / 1000));
      this.calls.push({ path, status, body });
      this.send(response, status, payload, {
        "x-sib-ratelimit-limit": String(limit),
        "x-sib-ratelimit-remaining": String(Math.max(0, limit - this.used)),
        "x-sib-ratelimit-reset": String(resetSeconds),
      });
    };
    if (request.headers["api-key"] !== this.options.apiKey) return answer(401, { code: "unauthorized", message: "Key not found" });
    const processMatch = /^\/v3\/processes\/(\d+)$/.exec(path);
    if (processMatch && request.method === "GET") {
      // Processes are under "all other endpoints" (100 requests per hour), not the contacts limit.
      if (now - this.processWindowStart >= 3_600_000) {
        this.processWindowStart = now;
        this.processCalls = 0;
      }
      if (this.processCalls >= 100) return answer(429, { code: "too_many_requests", message: "rate limit exceeded" });
      this.processCalls += 1;
      return this.processStatus(Number(processMatch[1]), answer);
    }
    if (this.used >= limit) return answer(429, { code: "too_many_requests", message: "rate limit exceeded" });
    this.used += 1;
    const fault = this.faults.findIndex((f) => !f.path || f.path === path);
    if (fault >= 0) {
      const [f] = this.faults.splice(fault, 1);
      return answer(f?.status ?? 500, f?.body !== undefined ? JSON.parse(f.body) : { code: "scripted", message: "fault" });
    }
    if (request.method !== "POST") return answer(405, { code: "method_not_allowed", message: "POST only" });
    if (!String(request.headers["content-type"] ?? "").startsWith("application/json")) {
      return answer(415, { code: "invalid_parameter", message: "JSON only" });
    }
    if (path === "/v3/contacts/batch") return answer(400, { code: "invalid_parameter", message: "/contacts/batch is deprecated; do not use" });
    if (body === null || typeof body !== "object" || Array.isArray(body)) return answer(400, { code: "invalid_parameter", message: "object body expected" });
    const record: Record<string, unknown> = { ...body };

    if (path === "/v3/contacts") {
      const email = record.email;
      if (typeof email !== "string" || !email.includes("@")) return answer(400, { code: "invalid_parameter", message: "email is not valid" });
      const attributes = record.attributes ?? {};
      if (attributes === null || typeof attributes !== "object" || Array.isArray(attributes)) {
        return answer(400, { code: "invalid_parameter", message: "attributes must be an object" });
      }
      const bad = Object.keys(attributes).find((k) => k !== k.toUpperCase());
      if (bad) return answer(400, { code: "invalid_parameter", message: `attribute ${bad} must be UPPERCASE` });
      const key = email.toLowerCase();
      const existing = this.contacts.get(key);
      if (existing && record.updateEnabled !== true) return answer(400, { code: "duplicate_parameter", message: "Contact already exist" });
      this.contacts.set(key, { ...(existing ?? {}), ...attributes });
      return existing ? answer(204) : answer(201, { id: this.contacts.size });
    }
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
    for (const { email, attributes } of contacts) {
      const key = email.toLowerCase();
      const existing = this.contacts.get(key);
      if (!existing) this.contacts.set(key, attributes);
      else if (update) this.contacts.set(key, { ...existing, ...attributes });
      for (const id of Array.isArray(listIds) ? listIds : []) this.lists.get(Number(id))?.add(key);
    }
    const processId = this.imports.length + 1;
    this.imports.push({ processId, bytes, contacts: contacts.length, listIds: Array.isArray(listIds) ? listIds.map(Number) : [] });
    this.processQueue.set(processId, [...this.importProgress]);
    answer(202, { processId });
  }

  /**
   * `GET /v3/processes/{processId}` (docs/vendors/cohort-sync.md §3): `{id, status, name}` with
   * status `queued` | `in_process` | `completed`; 404 `document_not_found` for an unknown id.
   */
  private processStatus(processId: number, answer: (status: number, payload?: unknown) => void): void {
    const queue = this.processQueue.get(processId);
    if (!queue) return answer(404, { code: "document_not_found", message: `Process ${processId} does not exist` });
    const status = queue.shift() ?? "completed";
    answer(200, { id: processId, status, name: `import-${processId}` });
  }
}
