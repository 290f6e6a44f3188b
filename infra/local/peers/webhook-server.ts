import { type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { closeServer, createRoutedServer, listenOnLoopback } from "./local-server.js";
import * as z from "zod";
import { DELIVERY_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verifySignature } from "../../../lib/destinations/signature.js";

/**
 * A local receiver built for Mixpanel's custom-webhook cohort sync
 * (docs/vendors/cohort-sync.md §1): it validates the exact payload, verifies the
 * relay's HMAC signature (and Basic auth when configured), answers Mixpanel's
 * `{action, status}` reply, records every page, and keeps a replica of each
 * cohort the way a real receiver would (multi-page `members` replaces the copy
 * once all pages of the session arrived; add/remove apply directly).
 * GET / shows what arrived (for the local stack).
 */
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
  private readonly seen = new Set<string>();
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
      response.end(
        JSON.stringify(
          {
            pages: this.pages.map((p) => ({
              at: new Date(p.at).toISOString(),
              action: p.payload.action,
              cohort: p.payload.parameters.mixpanel_cohort_id,
              session: p.payload.parameters.mixpanel_session_id,
              page: `${p.payload.parameters.page_info.page_count}/${p.payload.parameters.page_info.total_pages}`,
              members: p.payload.parameters.members.length,
              duplicate: p.duplicate,
            })),
            cohorts: Object.fromEntries([...this.replicas].map(([id, m]) => [id, [...m.keys()].sort()])),
            refusals: this.refusals,
          },
          null,
          2,
        ),
      );
      return;
    }
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
    const body = Buffer.concat(chunks).toString("utf8");
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
    const verdict = verifySignature({
      secret: this.options.signingSecret,
      body,
      timestamp: header(TIMESTAMP_HEADER),
      signature: header(SIGNATURE_HEADER),
      nowSeconds: Math.floor((this.options.now ?? Date.now)() / 1000),
      ...(this.options.toleranceSeconds !== undefined ? { toleranceSeconds: this.options.toleranceSeconds } : {}),
    });
    if (!verdict.ok) return this.refuse(response, 401, `signature: ${verdict.reason}`);
    let raw: unknown;
    try {
      raw = JSON.parse(body);
    } catch {
      return this.refuse(response, 400, "body is not JSON");
    }
    const parsed = webhookPayloadSchema.safeParse(raw);
    if (!parsed.success) return this.refuse(response, 400, `payload: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
    const payload = parsed.data;
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
    this.seen.add(deliveryId);
    const page: ReceivedPage = { at: Date.now(), deliveryId, duplicate, payload };
    this.pages.push(page);
    this.options.onPage?.(page);
    if (!duplicate) this.apply(payload);
    response.writeHead(200, { "content-type": "application/json" });
    response.end(JSON.stringify({ action: payload.action, status: "success" }));
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
