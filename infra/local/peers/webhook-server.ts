import { type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { closeServer, createRoutedServer, listenOnLoopback } from "./local-server.js";
import { createHmac, timingSafeEqual } from "node:crypto";
import * as z from "zod";

/**
 * A local receiver built for Mixpanel's custom-webhook cohort sync
 * (docs/vendors/cohort-sync.md §1): it validates the exact payload, verifies the
 * relay's HMAC signature (and Basic auth when configured), answers Mixpanel's
 * `{action, status}` reply, records every page, and keeps a replica of each
 * cohort the way a real receiver would (multi-page `members` replaces the copy
 * once all pages of the session arrived; add/remove apply directly).
 * GET / shows what arrived (for the local stack): each page with the ids it added, removed or
 * listed, and each cohort's copy.
 *
 * Written from the published contracts only, sharing no code with the relay:
 *  - the signature scheme as the README gives it to receivers: `X-Relay-Timestamp: <unix
 *    seconds>`, `X-Relay-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>`,
 *    compared in constant time, timestamps older than the tolerance refused;
 *  - Mixpanel's paging rule: `page_info.total_pages` is the number of messages of one
 *    `mixpanel_session_id`, so every page of a session carries the same `total_pages`, and a
 *    session never has more distinct messages than that (400 otherwise).
 */
export const TIMESTAMP_HEADER = "x-relay-timestamp";
export const SIGNATURE_HEADER = "x-relay-signature";
export const DELIVERY_ID_HEADER = "x-relay-delivery-id";
const DEFAULT_TOLERANCE_SECONDS = 300;
/** Bounded memory: the sessions and delivery ids remembered (oldest forgotten first). */
const REMEMBERED = 10_000;

/** The receiver's own check of a relay signature; the reason when it fails. */
export function signatureProblem(input: {
  secret: string;
  rawBody: Buffer;
  timestamp: string | undefined;
  signature: string | undefined;
  nowSeconds: number;
  toleranceSeconds: number;
}): string | undefined {
  const { timestamp, signature } = input;
  if (timestamp === undefined || !/^[0-9]{1,12}$/.test(timestamp)) return "missing or bad timestamp";
  if (Math.abs(input.nowSeconds - Number(timestamp)) > input.toleranceSeconds) return "timestamp outside tolerance";
  if (signature === undefined || !signature.startsWith("v1=")) return "missing signature";
  const mac = createHmac("sha256", input.secret).update(`${timestamp}.`).update(input.rawBody).digest();
  const given = Buffer.from(signature.slice(3), "utf8");
  const wanted = Buffer.from(mac.toString("hex"), "utf8");
  if (given.length !== wanted.length || !timingSafeEqual(given, wanted)) return "signature mismatch";
  return undefined;
}

function remember<K, V>(map: Map<K, V>, key: K, value: V): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > REMEMBERED) {
    const oldest = map.keys().next();
    if (!oldest.done) map.delete(oldest.value);
  }
}
const memberSchema = z
  .object({
    email: z.string(),
    mixpanel_distinct_id: z.union([z.string(), z.number()]),
    first_name: z.string(),
    last_name: z.string(),
    phone_number: z.string().optional(),
  })
  .catchall(z.unknown());

export const webhookPayloadSchema = z
  .object({
    action: z.enum(["members", "add_members", "remove_members"]),
    parameters: z
      .object({
        mixpanel_project_id: z.string().min(1),
        mixpanel_cohort_id: z.string().min(1),
        mixpanel_cohort_name: z.string(),
        mixpanel_cohort_description: z.string(),
        mixpanel_session_id: z.string().min(1),
        page_info: z.object({ total_pages: z.number().int().positive(), page_count: z.number().int().positive() }).strict(),
        members: z.array(memberSchema).max(1000),
      })
      .strict(),
  })
  .strict()
  .refine((p) => p.parameters.page_info.page_count <= p.parameters.page_info.total_pages, "page_count > total_pages");
export type WebhookPayload = z.infer<typeof webhookPayloadSchema>;
const MAX_BODY_BYTES = 8 * 1024 * 1024;

export interface ReceivedPage {
  readonly at: number;
  readonly deliveryId: string;
  readonly duplicate: boolean;
  readonly payload: WebhookPayload;
}

export interface WebhookReceiverOptions {
  readonly signingSecret: string;
  readonly basicAuth?: { username: string; password: string };
  readonly toleranceSeconds?: number;
  readonly now?: () => number;
  readonly host?: string;
  readonly port?: number;
  readonly onPage?: (page: ReceivedPage) => void;
}

/** A scripted answer: by default Mixpanel's failure JSON with `body` as message; `raw` = `body` verbatim. */
export interface Fault {
  readonly status: number;
  readonly body?: string;
  readonly raw?: boolean;
}

export interface Refusal {
  readonly status: number;
  readonly reason: string;
}

export class WebhookReceiver {
  readonly pages: ReceivedPage[] = [];
  readonly refusals: Refusal[] = [];
  private readonly replicas = new Map<string, Map<string, Record<string, unknown>>>();
  private readonly pendingFull = new Map<string, { total: number; pages: Map<number, WebhookPayload> }>();
  private readonly seen = new Map<string, true>();
  /** Per session: its total_pages and the distinct messages (action + page_count) seen. */
  private readonly sessions = new Map<string, { total: number; messages: Set<string> }>();
  private readonly faults: Fault[] = [];
  private redirectTo: string | undefined;
  private server: Server | undefined;
  url = "";

  constructor(private readonly options: WebhookReceiverOptions) {}

  /** Answers the next calls with these statuses (e.g. 503, 400), or with a raw body (e.g. a 200 "failure" reply). */
  failNext(...faults: Fault[]): void {
    this.faults.push(...faults);
  }

  /** While set, every POST is answered `302 Location: <to>` (a receiver moved behind a redirect); undefined = fixed. */
  setRedirect(to: string | undefined): void {
    this.redirectTo = to;
  }

  /** Drops the scripted answers still queued (the receiver "recovers"). */
  clearFaults(): void {
    this.faults.length = 0;
  }

  /** The receiver's copy of a cohort: distinct_id → member. */
  members(cohortId: string | number): Map<string, Record<string, unknown>> {
    return this.replicas.get(String(cohortId)) ?? new Map();
  }

  async start(): Promise<string> {
    this.server = createRoutedServer((request, response) => this.route(request, response));
    const port = await listenOnLoopback(this.server, this.options.port ?? 0, this.options.host ?? "127.0.0.1");
    this.url = `http://127.0.0.1:${port}/hook`;
    return this.url;
  }

  async close(): Promise<void> {
    await closeServer(this.server);
  }

  private refuse(response: ServerResponse, status: number, reason: string, action = ""): void {
    this.refusals.push({ status, reason });
    response.writeHead(status, { "content-type": "application/json" });
    response.end(JSON.stringify({ action, status: "failure", error: { message: reason, code: status } }));
  }

  private async route(request: IncomingMessage, response: ServerResponse): Promise<void> {
    if (request.method === "GET") {
      response.writeHead(200, { "content-type": "application/json" });
      response.end(JSON.stringify(this.overview(), null, 2));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of request) {
      const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
      size += buffer.length;
      if (size > MAX_BODY_BYTES) return this.refuse(response, 413, "body too large");
      chunks.push(buffer);
    }
    const rawBody = Buffer.concat(chunks);
    const body = rawBody.toString("utf8");
    if (request.method !== "POST") return this.refuse(response, 405, "POST only");
    if (this.redirectTo !== undefined) {
      this.refusals.push({ status: 302, reason: `redirect to ${this.redirectTo}` });
      response.writeHead(302, { location: this.redirectTo, "content-type": "text/plain" });
      response.end("moved");
      return;
    }
    if (!String(request.headers["content-type"] ?? "").startsWith("application/json")) return this.refuse(response, 415, "JSON only");
    if (this.options.basicAuth) {
      const { username, password } = this.options.basicAuth;
      if (request.headers.authorization !== `Basic ${Buffer.from(`${username}:${password}`).toString("base64")}`) {
        return this.refuse(response, 401, "bad basic auth");
      }
    }
    const header = (name: string) => {
      const value = request.headers[name];
      return Array.isArray(value) ? value[0] : value;
    };
    const problem = signatureProblem({
      secret: this.options.signingSecret,
      rawBody,
      timestamp: header(TIMESTAMP_HEADER),
      signature: header(SIGNATURE_HEADER),
      nowSeconds: Math.floor((this.options.now ?? Date.now)() / 1000),
      toleranceSeconds: this.options.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS,
    });
    if (problem) return this.refuse(response, 401, `signature: ${problem}`);
    let raw: unknown;
    try {
      raw = JSON.parse(body);
    } catch {
      return this.refuse(response, 400, "body is not JSON");
    }
    const parsed = webhookPayloadSchema.safeParse(raw);
    if (!parsed.success) return this.refuse(response, 400, `payload: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
    const payload = parsed.data;
    const sessionProblem = this.countInSession(payload);
    if (sessionProblem) return this.refuse(response, 400, sessionProblem, payload.action);
    const fault = this.faults.shift();
    if (fault?.raw) {
      this.refusals.push({ status: fault.status, reason: fault.body ?? "" });
      response.writeHead(fault.status, { "content-type": "application/json" });
      response.end(fault.body ?? "");
      return;
    }
    if (fault) return this.refuse(response, fault.status, fault.body ?? "scripted fault", payload.action);

    const { parameters } = payload;
    const deliveryId = header(DELIVERY_ID_HEADER) ?? `${parameters.mixpanel_session_id}:${payload.action}:${parameters.page_info.page_count}`;
    const duplicate = this.seen.has(deliveryId);
    remember(this.seen, deliveryId, true);
    const page: ReceivedPage = { at: Date.now(), deliveryId, duplicate, payload };
    this.pages.push(page);
    this.options.onPage?.(page);
    if (!duplicate) this.apply(payload);
    response.writeHead(200, { "content-type": "application/json" });
    response.end(JSON.stringify({ action: payload.action, status: "success" }));
  }

  /**
   * GET /: what a person watching the local stack wants to know, oldest page first: per page who
   * it named (`members` replaces the copy, `add_members` added, `remove_members` removed), and
   * each cohort's copy as it stands.
   */
  overview(): Record<string, unknown> {
    const ids = (payload: WebhookPayload) => payload.parameters.members.map((member) => String(member.mixpanel_distinct_id));
    const named = { members: "members", add_members: "added", remove_members: "removed" } as const;
    return {
      pages: this.pages.map((p) => ({
        at: new Date(p.at).toISOString(),
        action: p.payload.action,
        cohort: p.payload.parameters.mixpanel_cohort_id,
        session: p.payload.parameters.mixpanel_session_id,
        page: `${p.payload.parameters.page_info.page_count}/${p.payload.parameters.page_info.total_pages}`,
        [named[p.payload.action]]: ids(p.payload),
        ...(p.duplicate ? { duplicate: true } : {}),
      })),
      cohorts: Object.fromEntries([...this.replicas].map(([id, m]) => [id, [...m.keys()].sort()])),
      refusals: this.refusals,
    };
  }

  /** Mixpanel: `total_pages` = the number of messages for the session. */
  private countInSession(payload: WebhookPayload): string | undefined {
    const { mixpanel_session_id: session, page_info: info } = payload.parameters;
    const known = this.sessions.get(session) ?? { total: info.total_pages, messages: new Set<string>() };
    if (known.total !== info.total_pages) {
      return `session ${session}: total_pages ${info.total_pages} differs from ${known.total} on its earlier pages`;
    }
    const message = `${payload.action}:${info.page_count}`;
    if (!known.messages.has(message) && known.messages.size >= known.total) {
      return `session ${session}: message ${known.messages.size + 1} (${message}) but total_pages is ${known.total}`;
    }
    known.messages.add(message);
    remember(this.sessions, session, known);
    return undefined;
  }

  private apply(payload: WebhookPayload): void {
    const { parameters } = payload;
    const cohort = parameters.mixpanel_cohort_id;
    const replica = this.replicas.get(cohort) ?? new Map<string, Record<string, unknown>>();
    this.replicas.set(cohort, replica);
    if (payload.action === "add_members") {
      for (const m of parameters.members) replica.set(String(m.mixpanel_distinct_id), m);
    } else if (payload.action === "remove_members") {
      for (const m of parameters.members) replica.delete(String(m.mixpanel_distinct_id));
    } else {
      const key = `${cohort}:${parameters.mixpanel_session_id}`;
      const pending = this.pendingFull.get(key) ?? { total: parameters.page_info.total_pages, pages: new Map() };
      pending.pages.set(parameters.page_info.page_count, payload);
      this.pendingFull.set(key, pending);
      if (pending.pages.size === pending.total) {
        replica.clear();
        for (const p of pending.pages.values()) for (const m of p.parameters.members) replica.set(String(m.mixpanel_distinct_id), m);
        this.pendingFull.delete(key);
      }
    }
  }
}
