import { type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { closeServer, createRoutedServer, listenOnLoopback } from "./local-server.js";

/**
 * A strict local Braze REST API, `POST /users/track`, written from Braze's published
 * contract (docs/vendors/cohort-sync.md §4 and §6), sharing no code with the relay:
 *
 *  - `Authorization: Bearer <REST API key>`, JSON body `{attributes?, events?, purchases?}`;
 *  - at most 75 objects per request, counted across `attributes`, `events` and `purchases`
 *    together (https://www.braze.com/docs/api/api_limits: customers on the legacy limit may
 *    send 75 of each; `objectsPerArray: true` models them): 400 beyond;
 *  - each object names its user with exactly one of external_id, user_alias, braze_id,
 *    email, phone; a bad object is a non-fatal error (`{message: "success", errors: [...]}`)
 *    and the others are applied;
 *  - `_update_existing_only: true` never creates a user;
 *  - an array attribute takes `{add: [...]}` / `{remove: [...]}` and is a set, kept to the
 *    workspace's array length (`arrayLengthMax`, Braze's default 25): past it the oldest
 *    elements are dropped and counted in `truncations`;
 *  - rate limit per window (Braze: 3,000 requests per 3 s on /users/track); every answer
 *    carries `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (UTC epoch
 *    seconds when the window resets); a request over the limit gets 429 and no Retry-After
 *    unless `retryAfterOn429` is set.
 *
 * `GET /` and `GET /_sandbox/users` show what arrived (for `npm start`).
 */
export interface BrazeServerOptions {
  readonly apiKey: string;
  /** Users that exist before the test (external ids). */
  readonly existing?: readonly string[];
  /** Elements an array attribute keeps (Braze: 25 by default, up to 100 per workspace). */
  readonly arrayLengthMax?: number;
  /** Requests per window (Braze: 3,000 per 3 s). */
  readonly rateLimit?: { readonly limit: number; readonly windowMs: number };
  /** Also send `Retry-After` (seconds) on a 429. */
  readonly retryAfterOn429?: boolean;
  /** The legacy limit: 75 objects in each array rather than 75 in all. */
  readonly objectsPerArray?: boolean;
  readonly now?: () => number;
  readonly host?: string;
  readonly port?: number;
  readonly onCall?: (call: BrazeCall) => void;
}

export interface BrazeCall {
  readonly status: number;
  readonly attributes: number;
  readonly at: number;
}

export interface BrazeTruncation {
  readonly user: string;
  readonly attribute: string;
  readonly dropped: readonly string[];
}

const IDENTIFIERS = ["external_id", "user_alias", "braze_id", "email", "phone"] as const;
const MAX_OBJECTS = 75;
const DEFAULT_ARRAY_LENGTH = 25;
const MAX_BODY_BYTES = 4 * 1024 * 1024;

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function userKey(object: JsonObject): string | undefined {
  const present = IDENTIFIERS.filter((name) => object[name] !== undefined && object[name] !== null);
  if (present.length !== 1) return undefined;
  const name = present[0] ?? "external_id";
  const value = object[name];
  if (name === "user_alias") {
    if (!isObject(value) || typeof value.alias_name !== "string" || typeof value.alias_label !== "string") return undefined;
    return `alias:${value.alias_label}:${value.alias_name}`;
  }
  if (typeof value !== "string" || value === "") return undefined;
  return name === "external_id" ? value : `${name}:${value}`;
}

export class BrazeServer {
  /** Users by external id (or `<identifier>:<value>` for the other identifiers). */
  readonly users = new Map<string, JsonObject>();
  readonly calls: BrazeCall[] = [];
  readonly truncations: BrazeTruncation[] = [];
  private readonly faults: { status: number; body?: string; headers?: Record<string, string> }[] = [];
  private windowStart = 0;
  private windowCount = 0;
  private server: Server | undefined;
  url = "";

  constructor(private readonly options: BrazeServerOptions) {
    for (const id of options.existing ?? []) this.users.set(id, {});
  }

  failNext(...faults: { status: number; body?: string; headers?: Record<string, string> }[]): void {
    this.faults.push(...faults);
  }

  /** Values of an array attribute for a user. */
  arrayOf(externalId: string, attribute: string): string[] {
    const value = this.users.get(externalId)?.[attribute];
    return Array.isArray(value) ? value.map(String) : [];
  }

  async start(): Promise<string> {
    this.server = createRoutedServer((request, response) => this.route(request, response));
    const port = await listenOnLoopback(this.server, this.options.port ?? 0, this.options.host ?? "127.0.0.1");
    this.url = `http://127.0.0.1:${port}`;
    return this.url;
  }

  async close(): Promise<void> {
    await closeServer(this.server);
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  /** Counts this request in the fixed window; returns the rate-limit headers and whether it is over. */
  private rate(): { headers: Record<string, string>; over: boolean } {
    const { limit, windowMs } = this.options.rateLimit ?? { limit: 3000, windowMs: 3000 };
    const now = this.now();
    if (now >= this.windowStart + windowMs) {
      this.windowStart = now - (now % windowMs);
      this.windowCount = 0;
    }
    this.windowCount += 1;
    const over = this.windowCount > limit;
    const resetSeconds = Math.ceil((this.windowStart + windowMs) / 1000);
    const headers: Record<string, string> = {
      "x-ratelimit-limit": String(limit),
      "x-ratelimit-remaining": String(Math.max(0, limit - this.windowCount)),
      "x-ratelimit-reset": String(resetSeconds),
    };
    if (over && this.options.retryAfterOn429) headers["retry-after"] = String(Math.max(0, Math.ceil((this.windowStart + windowMs - now) / 1000)));
    return { headers, over };
  }

  private answer(response: ServerResponse, status: number, body: unknown, attributes: number, headers: Record<string, string> = {}): void {
    const call = { status, attributes, at: this.now() };
    this.calls.push(call);
    this.options.onCall?.(call);
    response.writeHead(status, { "content-type": "application/json", ...headers });
    response.end(typeof body === "string" ? body : JSON.stringify(body));
  }

  private async route(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of request) {
      const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
      size += buffer.length;
      if (size > MAX_BODY_BYTES) return this.answer(response, 413, { message: "request too large", errors: [] }, 0);
      chunks.push(buffer);
    }
    const path = new URL(request.url ?? "/", "http://braze").pathname;
    if (request.method === "GET" && (path === "/" || path === "/_sandbox/users")) {
      response.writeHead(200, { "content-type": "application/json" });
      response.end(
        JSON.stringify(
          path === "/"
            ? { sandbox: "local Braze (strict)", users: this.users.size, calls: this.calls.length, truncations: this.truncations.length, see: ["/_sandbox/users"] }
            : Object.fromEntries(this.users),
        ),
      );
      return;
    }
    const fail = (status: number, message: string, attributes = 0, headers: Record<string, string> = {}) =>
      this.answer(response, status, { message, errors: [message] }, attributes, headers);
    if (request.method !== "POST" || path !== "/users/track") return fail(404, "no such endpoint");
    const authorization = request.headers.authorization ?? "";
    if (authorization !== `Bearer ${this.options.apiKey}`) return fail(401, "Invalid API key");
    const { headers, over } = this.rate();
    if (over) return fail(429, "Rate limit exceeded", 0, headers);
    if (!String(request.headers["content-type"] ?? "").startsWith("application/json")) return fail(400, "Content-Type must be application/json", 0, headers);
    let body: unknown;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch {
      return fail(400, "Invalid JSON", 0, headers);
    }
    if (!isObject(body)) return fail(400, "body must be a JSON object", 0, headers);
    const arrays = { attributes: body.attributes, events: body.events, purchases: body.purchases };
    for (const [name, value] of Object.entries(arrays)) {
      if (value !== undefined && !Array.isArray(value)) return fail(400, `${name} must be an array`, 0, headers);
    }
    const attributes: unknown[] = Array.isArray(arrays.attributes) ? arrays.attributes : [];
    const counts = Object.values(arrays).map((value) => (Array.isArray(value) ? value.length : 0));
    const tooMany = this.options.objectsPerArray ? counts.some((n) => n > MAX_OBJECTS) : counts.reduce((a, b) => a + b, 0) > MAX_OBJECTS;
    if (tooMany) {
      return fail(400, `too many objects: at most ${MAX_OBJECTS} attributes, events and purchases per request`, attributes.length, headers);
    }
    const fault = this.faults.shift();
    if (fault) return this.answer(response, fault.status, fault.body ?? { message: "scripted fault", errors: [] }, attributes.length, { ...headers, ...fault.headers });

    const errors: { type: string; input_array: string; index: number }[] = [];
    let processed = 0;
    attributes.forEach((item, index) => {
      if (!isObject(item)) return errors.push({ type: "'attributes' must be an array of objects", input_array: "attributes", index });
      const key = userKey(item);
      if (key === undefined) {
        return errors.push({ type: "each object needs exactly one of external_id, user_alias, braze_id, email, phone", input_array: "attributes", index });
      }
      if (!this.users.has(key) && item._update_existing_only === true) return;
      const user = this.users.get(key) ?? {};
      for (const [name, value] of Object.entries(item)) {
        if ((IDENTIFIERS as readonly string[]).includes(name) || name === "_update_existing_only") continue;
        if (isObject(value) && (Array.isArray(value.add) || Array.isArray(value.remove))) this.applyArray(user, key, name, value);
        else user[name] = value;
      }
      this.users.set(key, user);
      processed += 1;
    });
    this.answer(
      response,
      201,
      errors.length > 0 ? { message: "success", attributes_processed: processed, errors } : { message: "success", attributes_processed: processed },
      attributes.length,
      headers,
    );
  }

  private applyArray(user: JsonObject, key: string, name: string, operation: JsonObject): void {
    const existing = user[name];
    const values: string[] = Array.isArray(existing) ? existing.map(String) : [];
    for (const value of Array.isArray(operation.add) ? operation.add : []) {
      const text = String(value);
      if (!values.includes(text)) values.push(text);
    }
    const removed = new Set((Array.isArray(operation.remove) ? operation.remove : []).map(String));
    const kept = values.filter((value) => !removed.has(value));
    const max = this.options.arrayLengthMax ?? DEFAULT_ARRAY_LENGTH;
    if (kept.length > max) {
      const dropped = kept.splice(0, kept.length - max);
      this.truncations.push({ user: key, attribute: name, dropped });
    }
    user[name] = kept;
  }
}
