import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { closeServer, listenOnLoopback } from "../../infra/local/peers/local-server.js";

/**
 * Strict local Braze /users/track (docs/vendors/cohort-sync.md §4): Bearer REST key;
 * ≤75 attribute objects per call; each object names the user with exactly one of
 * external_id / user_alias / braze_id / email / phone; `_update_existing_only`
 * must be present (the relay always sends it) and is honoured; array attributes
 * take `{add: […]}` / `{remove: […]}` and behave as sets.
 */
export interface BrazeServerOptions {
  readonly apiKey: string;
  /** Users that exist before the test (external ids). */
  readonly existing?: readonly string[];
}

const IDENTIFIERS = ["external_id", "user_alias", "braze_id", "email", "phone"];
const MAX_ATTRIBUTES = 75;

export class BrazeServer {
  readonly users = new Map<string, Record<string, unknown>>();
  readonly calls: { status: number; attributes: number }[] = [];
  private readonly faults: { status: number; body?: string }[] = [];
  private server: Server | undefined;
  url = "";

  constructor(private readonly options: BrazeServerOptions) {
    for (const id of options.existing ?? []) this.users.set(id, {});
  }

  failNext(...faults: { status: number; body?: string }[]): void {
    this.faults.push(...faults);
  }

  /** Values of an array attribute for a user. */
  arrayOf(externalId: string, attribute: string): string[] {
    const value = this.users.get(externalId)?.[attribute];
    return Array.isArray(value) ? value.map(String) : [];
  }

  async start(): Promise<string> {
    this.server = createServer((request, response) => {
      this.route(request, response).catch((error: unknown) => this.send(response, 500, { message: String(error) }));
    });
    const port = await listenOnLoopback(this.server);
    this.url = `http://127.0.0.1:${port}`;
    return this.url;
  }

  async close(): Promise<void> {
    await closeServer(this.server);
  }

  private send(response: ServerResponse, status: number, body: unknown): void {
    response.writeHead(status, { "content-type": "application/json" });
    response.end(JSON.stringify(body));
  }

  private async route(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
    const fail = (status: number, message: string, attributes = 0) => {
      this.calls.push({ status, attributes });
      this.send(response, status, { message, errors: [message] });
    };
    if (request.method !== "POST" || request.url !== "/users/track") return fail(404, "no such endpoint");
    if (request.headers.authorization !== `Bearer ${this.options.apiKey}`) return fail(401, "Invalid API key");
    if (!String(request.headers["content-type"] ?? "").startsWith("application/json")) return fail(400, "JSON only");
    let body: unknown;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch {
      return fail(400, "body is not JSON");
    }
    if (body === null || typeof body !== "object" || !("attributes" in body) || !Array.isArray(body.attributes)) {
      return fail(400, "attributes array required");
    }
    const attributes: unknown[] = body.attributes;
    if (attributes.length > MAX_ATTRIBUTES) return fail(400, `at most ${MAX_ATTRIBUTES} attribute objects per request`, attributes.length);
    const fault = this.faults.shift();
    if (fault) {
      this.calls.push({ status: fault.status, attributes: attributes.length });
      response.writeHead(fault.status, { "content-type": "application/json" });
      response.end(fault.body ?? JSON.stringify({ message: "scripted fault" }));
      return;
    }
    for (const item of attributes) {
      if (item === null || typeof item !== "object" || Array.isArray(item)) return fail(400, "attribute object expected");
      const object: Record<string, unknown> = { ...item };
      const ids = IDENTIFIERS.filter((k) => object[k] !== undefined);
      if (ids.length !== 1) return fail(400, "each object needs exactly one identifier");
      if (typeof object._update_existing_only !== "boolean") return fail(400, "_update_existing_only must be set explicitly");
    }
    let processed = 0;
    for (const item of attributes) {
      if (item === null || typeof item !== "object") continue;
      const object: Record<string, unknown> = { ...item };
      const id = String(object.external_id);
      if (!this.users.has(id) && object._update_existing_only === true) continue;
      const user = this.users.get(id) ?? {};
      for (const [key, value] of Object.entries(object)) {
        if (IDENTIFIERS.includes(key) || key === "_update_existing_only") continue;
        if (value !== null && typeof value === "object" && !Array.isArray(value)) {
          const current = new Set(Array.isArray(user[key]) ? (user[key] as unknown[]).map(String) : []);
          const op: Record<string, unknown> = { ...value };
          if (Array.isArray(op.add)) for (const v of op.add) current.add(String(v));
          if (Array.isArray(op.remove)) for (const v of op.remove) current.delete(String(v));
          user[key] = [...current];
        } else user[key] = value;
      }
      this.users.set(id, user);
      processed++;
    }
    this.calls.push({ status: 201, attributes: attributes.length });
    this.send(response, 201, { message: "success", attributes_processed: processed });
  }
}
