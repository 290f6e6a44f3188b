import { type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { closeServer, createRoutedServer, listenOnLoopback } from "./local-server.js";
import { gunzipSync } from "node:zlib";
import { importEventRefusal } from "./mixpanel-rules.js";

/**
 * A strict local Mixpanel: enforces the documented ingestion contract
 * (docs/vendors/mixpanel-api.md §2–§6) so tests and the local stack fail the way
 * production would, and keeps what arrived so a person (or a test) can look.
 *
 *  - POST /import?strict=1: Basic auth (service account + project_id, or project token
 *    with no project_id), gzip or plain, JSON array or NDJSON, ≤ 2000 events,
 *    ≤ maxImportBytes uncompressed (413), per-event validation → 400 failed_records.
 *  - POST /engage, /groups: no gzip, JSON array ≤ 2000, `$token` on every update,
 *    exactly one operation; answers 200 with {status, error} when verbose=1.
 *  - GET / and /_sandbox/*: what arrived (events, profiles, groups, requests).
 *  - Scripted faults: `failNext` queues responses (e.g. 429 with Retry-After, 503, 401).
 */
export interface SandboxCredentials {
  readonly projectId: string;
  readonly projectToken: string;
  readonly serviceAccountUsername: string;
  readonly serviceAccountSecret: string;
}

export interface ImportedEvent {
  readonly event: string;
  readonly properties: Record<string, unknown>;
}

export interface RecordedRequest {
  readonly method: string;
  readonly path: string;
  readonly query: Record<string, string>;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly status: number;
  readonly records: number;
  readonly rawBytes: number;
  readonly uncompressedBytes: number;
  readonly at: number;
}

export interface ScriptedFault {
  readonly status: number;
  readonly body?: string;
  readonly headers?: Record<string, string>;
  /** Only for this path (default: any ingestion path). */
  readonly path?: string;
}

export interface ExtraRouteHandler {
  /** Returns true when it answered the request. */
  handle(request: IncomingMessage, response: ServerResponse, url: URL, body: Buffer): Promise<boolean>;
}

export interface MixpanelSandboxOptions {
  readonly credentials: SandboxCredentials;
  readonly maxImportBytes?: number;
  readonly host?: string;
  readonly port?: number;
  /** Extra routes (e.g. the Query API for cohorts) mounted before the ingestion routes. */
  readonly extraRoutes?: ExtraRouteHandler[];
  /** Clock used for the time-window rule. */
  readonly nowMs?: () => number;
  readonly onImport?: (events: ImportedEvent[]) => void;
}

const PROFILE_OPS = ["$set", "$set_once", "$add", "$union", "$append", "$remove", "$unset", "$delete"] as const;
const GROUP_OPS = ["$set", "$set_once", "$union", "$remove", "$unset", "$delete"] as const;
const MAX_RECORDS = 2000;
const MAX_REQUEST_BYTES = 32 * 1024 * 1024;

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

export class MixpanelSandbox {
  readonly events: ImportedEvent[] = [];
  readonly profiles = new Map<string, JsonObject>();
  readonly groups = new Map<string, JsonObject>();
  readonly requests: RecordedRequest[] = [];
  private readonly faults: ScriptedFault[] = [];
  private readonly dedupKeys = new Set<string>();
  private server: Server | undefined;
  url = "";

  constructor(private readonly options: MixpanelSandboxOptions) {}

  /** Distinct events after Mixpanel's query-time dedup on (event, distinct_id, time, $insert_id). */
  get uniqueEventCount(): number {
    return this.dedupKeys.size;
  }

  failNext(...faults: ScriptedFault[]): void {
    this.faults.push(...faults);
  }

  /** Forgets what arrived and any scripted faults not yet used. */
  reset(): void {
    this.events.length = 0;
    this.requests.length = 0;
    this.faults.length = 0;
    this.dedupKeys.clear();
    this.profiles.clear();
    this.groups.clear();
  }

  async start(): Promise<string> {
    this.server = createRoutedServer((request, response) => this.route(request, response));
    const port = await listenOnLoopback(this.server, this.options.port ?? 0, this.options.host ?? "127.0.0.1");
    this.url = `http://127.0.0.1:${port}`;
    return this.url;
  }

  async stop(): Promise<void> {
    await closeServer(this.server);
  }

  private async route(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? "/", "http://sandbox");
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of request) {
      const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
      size += buffer.length;
      // Bounded memory: far past /import's 10 MB cap, the body is not read further.
      if (size > MAX_REQUEST_BYTES) return send(response, 413, { code: 413, error: "request body too large", status: 0 });
      chunks.push(buffer);
    }
    const body = Buffer.concat(chunks);

    for (const extra of this.options.extraRoutes ?? []) {
      if (await extra.handle(request, response, url, body)) return;
    }
    if (request.method === "GET") return this.view(url, response);
    if (request.method !== "POST") return send(response, 405, { error: "method not allowed" });

    const path = url.pathname;
    if (path !== "/import" && path !== "/engage" && path !== "/groups") return send(response, 404, { error: "not found" });

    const faultIndex = this.faults.findIndex((fault) => fault.path === undefined || fault.path === path);
    if (faultIndex >= 0) {
      const [fault] = this.faults.splice(faultIndex, 1);
      if (fault) {
        this.record(request, url, fault.status, 0, body.length, body.length);
        response.writeHead(fault.status, { "content-type": "application/json", ...fault.headers });
        response.end(fault.body ?? JSON.stringify({ error: `scripted ${fault.status}`, status: 0 }));
        return;
      }
    }
    if (path === "/import") return this.import(request, response, url, body);
    return this.engage(path, request, response, url, body);
  }

  private authorized(request: IncomingMessage, url: URL): boolean {
    const header = request.headers.authorization ?? "";
    if (!header.startsWith("Basic ")) return false;
    const [user, ...rest] = Buffer.from(header.slice(6), "base64").toString("utf8").split(":");
    const password = rest.join(":");
    const { credentials } = this.options;
    if (user === credentials.serviceAccountUsername && password === credentials.serviceAccountSecret) {
      // A service account needs project_id (reference §2: "missing project_id" is a typical 401).
      return url.searchParams.get("project_id") === credentials.projectId;
    }
    return user === credentials.projectToken && password === "" && !url.searchParams.has("project_id");
  }

  private import(request: IncomingMessage, response: ServerResponse, url: URL, raw: Buffer): void {
    if (!this.authorized(request, url)) {
      this.record(request, url, 401, 0, raw.length, raw.length);
      return send(response, 401, { error: "Invalid credentials", status: 0 });
    }
    if (url.searchParams.get("strict") !== "1") {
      this.record(request, url, 400, 0, raw.length, raw.length);
      return send(response, 400, { error: "the relay must always send strict=1", status: 0 });
    }
    let text: string;
    try {
      text = (request.headers["content-encoding"] === "gzip" ? gunzipSync(raw) : raw).toString("utf8");
    } catch {
      this.record(request, url, 400, 0, raw.length, raw.length);
      return send(response, 400, { error: "body is not valid gzip", status: 0 });
    }
    const uncompressed = Buffer.byteLength(text);
    if (uncompressed > (this.options.maxImportBytes ?? 10_000_000)) {
      this.record(request, url, 413, 0, raw.length, uncompressed);
      return send(response, 413, { error: "request too large", status: 0 });
    }
    let events: unknown[];
    try {
      const contentType = request.headers["content-type"] ?? "";
      events = contentType.includes("ndjson")
        ? text.split("\n").filter((line) => line.trim() !== "").map((line): unknown => JSON.parse(line))
        : toArray(JSON.parse(text));
    } catch {
      this.record(request, url, 400, 0, raw.length, uncompressed);
      return send(response, 400, { error: "body is not valid JSON", status: 0 });
    }
    if (events.length > MAX_RECORDS) {
      this.record(request, url, 400, events.length, raw.length, uncompressed);
      return send(response, 400, { error: `too many events: ${events.length} > ${MAX_RECORDS}`, status: 0 });
    }
    const nowMs = this.options.nowMs?.() ?? Date.now();
    const failed: JsonObject[] = [];
    const accepted: ImportedEvent[] = [];
    events.forEach((candidate, index) => {
      const problem = importEventRefusal(candidate, nowMs);
      if (problem) {
        const insertId = isObject(candidate) && isObject(candidate.properties) ? candidate.properties.$insert_id : undefined;
        failed.push({ index, insert_id: typeof insertId === "string" ? insertId : "", field: problem.field, message: problem.message });
        return;
      }
      if (isObject(candidate) && typeof candidate.event === "string" && isObject(candidate.properties)) {
        accepted.push({ event: candidate.event, properties: candidate.properties });
      }
    });
    for (const event of accepted) {
      this.events.push(event);
      const p = event.properties;
      this.dedupKeys.add(JSON.stringify([event.event, p.distinct_id, p.time, p.$insert_id]));
    }
    if (accepted.length > 0) this.options.onImport?.(accepted);
    const status = failed.length > 0 ? 400 : 200;
    this.record(request, url, status, events.length, raw.length, uncompressed);
    if (failed.length > 0) {
      return send(response, 400, {
        code: 400,
        error: "some data points in the request failed validation",
        num_records_imported: accepted.length,
        status: "Bad Request",
        failed_records: failed,
      });
    }
    send(response, 200, { code: 200, num_records_imported: accepted.length, status: "OK" });
  }

  private engage(path: string, request: IncomingMessage, response: ServerResponse, url: URL, raw: Buffer): void {
    const verbose = url.searchParams.get("verbose") === "1";
    const answer = (ok: boolean, error: string | null, records: number) => {
      this.record(request, url, 200, records, raw.length, raw.length);
      // HTTP 200 even when the update fails (reference §6): only the body tells.
      if (verbose) return send(response, 200, { status: ok ? 1 : 0, error });
      response.writeHead(200, { "content-type": "text/plain" });
      response.end(ok ? "1" : "0");
    };
    if (request.headers["content-encoding"]) return answer(false, "gzip is not supported on this endpoint", 0);
    let updates: unknown[];
    try {
      updates = toArray(JSON.parse(raw.toString("utf8")));
    } catch {
      return answer(false, "invalid JSON", 0);
    }
    if (updates.length > MAX_RECORDS) return answer(false, `too many updates: ${updates.length}`, updates.length);
    const ops: readonly string[] = path === "/engage" ? PROFILE_OPS : GROUP_OPS;
    for (const update of updates) {
      const problem = validateUpdate(update, path, ops, this.options.credentials.projectToken);
      if (problem) return answer(false, problem, updates.length);
    }
    for (const update of updates) {
      if (!isObject(update)) continue;
      const key =
        path === "/engage" ? String(update.$distinct_id) : `${String(update.$group_key)}:${String(update.$group_id)}`;
      const store = path === "/engage" ? this.profiles : this.groups;
      applyOperation(store, key, update, ops);
    }
    answer(true, null, updates.length);
  }

  private record(request: IncomingMessage, url: URL, status: number, records: number, rawBytes: number, uncompressedBytes: number) {
    this.requests.push({
      method: request.method ?? "",
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers: { ...request.headers },
      status,
      records,
      rawBytes,
      uncompressedBytes,
      at: Date.now(),
    });
  }

  private view(url: URL, response: ServerResponse): void {
    const limit = Number(url.searchParams.get("limit") ?? "100");
    switch (url.pathname) {
      case "/_sandbox/events":
        return send(response, 200, { count: this.events.length, unique: this.uniqueEventCount, events: this.events.slice(-limit) });
      case "/_sandbox/profiles":
        return send(response, 200, Object.fromEntries(this.profiles));
      case "/_sandbox/groups":
        return send(response, 200, Object.fromEntries(this.groups));
      case "/_sandbox/requests":
        return send(response, 200, this.requests.slice(-limit).map(({ headers: _h, ...rest }) => rest));
      case "/":
        return send(response, 200, {
          sandbox: "local Mixpanel (strict)",
          events: this.events.length,
          uniqueEvents: this.uniqueEventCount,
          profiles: this.profiles.size,
          groups: this.groups.size,
          requests: this.requests.length,
          latestEvents: this.events.slice(-10),
          see: ["/_sandbox/events", "/_sandbox/profiles", "/_sandbox/groups", "/_sandbox/requests"],
        });
      default:
        return send(response, 404, { error: "not found" });
    }
  }
}

function toArray(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [value];
}

function send(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { "content-type": "application/json" });
  response.end(JSON.stringify(body));
}

function validateUpdate(update: unknown, path: string, ops: readonly string[], token: string): string | undefined {
  if (!isObject(update)) return "each update must be an object";
  if (update.$token !== token) return "$token is missing or wrong";
  if (path === "/engage") {
    if (typeof update.$distinct_id !== "string" || update.$distinct_id === "") return "Engage API error: $distinct_id, missing or empty";
  } else if (typeof update.$group_key !== "string" || update.$group_id === undefined) {
    return "Groups API error: $group_key and $group_id are required";
  }
  const present = Object.keys(update).filter((key) => key.startsWith("$") && ops.includes(key));
  const unsupported = Object.keys(update).filter(
    (key) => ["$add", "$append"].includes(key) && !ops.includes(key),
  );
  if (unsupported.length > 0) return `${unsupported.join(", ")} is not supported on ${path}`;
  if (present.length !== 1) return `each update needs exactly one operation, found ${present.length}`;
  return undefined;
}

function applyOperation(store: Map<string, JsonObject>, key: string, update: JsonObject, ops: readonly string[]): void {
  const op = Object.keys(update).find((k) => ops.includes(k));
  const value = op ? update[op] : undefined;
  const current: JsonObject = { ...(store.get(key) ?? {}) };
  switch (op) {
    case "$set":
      if (isObject(value)) Object.assign(current, value);
      break;
    case "$set_once":
      if (isObject(value)) for (const [k, v] of Object.entries(value)) if (!(k in current)) current[k] = v;
      break;
    case "$add":
      if (isObject(value)) for (const [k, v] of Object.entries(value)) current[k] = Number(current[k] ?? 0) + Number(v);
      break;
    case "$union":
    case "$append":
      if (isObject(value)) {
        for (const [k, v] of Object.entries(value)) {
          const existing = current[k];
          const list: unknown[] = Array.isArray(existing) ? [...existing] : [];
          for (const item of Array.isArray(v) ? v : [v]) if (op === "$append" || !list.includes(item)) list.push(item);
          current[k] = list;
        }
      }
      break;
    case "$remove":
      if (isObject(value)) {
        for (const [k, v] of Object.entries(value)) {
          const existing = current[k];
          if (Array.isArray(existing)) current[k] = existing.filter((item: unknown) => item !== v);
        }
      }
      break;
    case "$unset":
      if (Array.isArray(value)) for (const k of value) delete current[String(k)];
      break;
    case "$delete":
      store.delete(key);
      return;
  }
  store.set(key, current);
}
