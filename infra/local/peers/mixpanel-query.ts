import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";

/**
 * Strict local Mixpanel Query API for cohorts (docs/vendors/mixpanel-api.md §8),
 * meant to be mounted in the local Mixpanel sandbox (`extraRoutes`) or in a bare
 * node:http server by tests.
 *
 *  - `POST {basePath}/cohorts/list?project_id=` → bare array of cohorts
 *  - `POST {basePath}/engage?project_id=`, form-encoded: `filter_by_cohort={"id":N}`,
 *    `output_properties=[…]`, `include_all_users`; paging with `session_id` + `page`
 *    (0-based) and identical parameters; 1000 per page; `total` on page 0 only.
 *  - Service-account Basic auth + `project_id` required (401 otherwise); wrong
 *    content type 415; a call past `queriesPerHour` in the rolling hour → 429.
 *
 * `basePath` defaults to `/api/query`, so the ingestion `/engage` of the sandbox is untouched.
 */
export interface CohortFixture {
  readonly id: number;
  readonly name: string;
  readonly description?: string;
  /** Members by distinct id; or a predicate over the received profiles. */
  readonly distinctIds?: readonly string[];
  readonly where?: (properties: Record<string, unknown>, distinctId: string) => boolean;
}

export interface QueryRecord {
  readonly path: string;
  readonly status: number;
  readonly form: Record<string, string>;
  readonly at: number;
}

export interface CohortQueryApiOptions {
  readonly profiles: () => Map<string, Record<string, unknown>>;
  readonly cohorts: CohortFixture[];
  readonly projectId: string;
  readonly username: string;
  readonly secret: string;
  readonly basePath?: string;
  readonly pageSize?: number;
  readonly queriesPerHour?: number;
  readonly now?: () => number;
  readonly onQuery?: (record: QueryRecord) => void;
  /**
   * The spec types `$distinct_id` as integer: write digit-only ids as JSON numbers,
   * digits verbatim (also beyond 2^53, as a server with 64-bit ids would).
   */
  readonly numericIds?: boolean;
}

interface Session {
  readonly key: string;
  readonly members: { id: string; properties: Record<string, unknown> }[];
  lastPage: number;
}

export interface CohortQueryApi {
  handle(request: IncomingMessage, response: ServerResponse, url: URL, body?: Buffer): Promise<boolean>;
  readonly queries: QueryRecord[];
  /** Scripted answers for the next calls (e.g. a 429 or a 400 session error). */
  failNext(...faults: { status: number; body?: string; headers?: Record<string, string> }[]): void;
  /** Expire every session (the next paged call gets a 400 session error). */
  expireSessions(): void;
}

async function readBody(request: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  return Buffer.concat(chunks);
}

function send(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  response.writeHead(status, { "content-type": "application/json", ...headers });
  response.end(typeof body === "string" ? body : JSON.stringify(body));
}

export function createCohortQueryApi(options: CohortQueryApiOptions): CohortQueryApi {
  const basePath = (options.basePath ?? "/api/query").replace(/\/+$/, "");
  const pageSize = options.pageSize ?? 1000;
  const perHour = options.queriesPerHour ?? 60;
  const now = options.now ?? Date.now;
  const expected = `Basic ${Buffer.from(`${options.username}:${options.secret}`).toString("base64")}`;
  const sessions = new Map<string, Session>();
  const queries: QueryRecord[] = [];
  const faults: { status: number; body?: string; headers?: Record<string, string> }[] = [];
  const calls: number[] = [];

  function members(cohort: CohortFixture, includeAll: boolean) {
    const profiles = options.profiles();
    const ids = new Set<string>(cohort.distinctIds ?? []);
    if (cohort.where) for (const [id, props] of profiles) if (cohort.where(props, id)) ids.add(id);
    const out: { id: string; properties: Record<string, unknown> }[] = [];
    for (const id of ids) {
      const properties = profiles.get(id);
      if (!properties && !includeAll) continue;
      out.push({ id, properties: properties ?? {} });
    }
    return out;
  }

  return {
    queries,
    failNext: (...next) => faults.push(...next),
    expireSessions: () => sessions.clear(),
    async handle(request, response, url, body) {
      if (!url.pathname.startsWith(`${basePath}/`)) return false;
      const path = url.pathname.slice(basePath.length);
      if (path !== "/engage" && path !== "/cohorts/list") return false;
      const raw = (body ?? (await readBody(request))).toString("utf8");
      const form = Object.fromEntries(new URLSearchParams(raw));
      const at = now();
      const answer = (status: number, payload: unknown, headers?: Record<string, string>) => {
        const record = { path, status, form, at };
        queries.push(record);
        options.onQuery?.(record);
        send(response, status, payload, headers);
        return true;
      };
      if (request.method !== "POST") return answer(405, { error: "POST only" });
      if (request.headers.authorization !== expected) return answer(401, { error: "Invalid credentials" });
      if (url.searchParams.get("project_id") !== options.projectId) {
        return answer(401, { error: "project_id missing or not accessible to this service account" });
      }
      while (calls.length > 0 && at - (calls[0] ?? 0) >= 3_600_000) calls.shift();
      if (calls.length >= perHour) {
        return answer(429, { error: "Query rate limit exceeded: 60 queries per hour" }, { "retry-after": "60" });
      }
      calls.push(at);
      const fault = faults.shift();
      if (fault) return answer(fault.status, fault.body ?? { error: "scripted fault" }, fault.headers);

      if (path === "/cohorts/list") {
        return answer(
          200,
          options.cohorts.map((c) => ({
            id: c.id,
            name: c.name,
            description: c.description ?? "",
            count: members(c, true).length,
            created: "2026-01-01 00:00:00",
            is_visible: 1,
            project_id: Number(options.projectId),
          })),
        );
      }
      if (!String(request.headers["content-type"] ?? "").startsWith("application/x-www-form-urlencoded")) {
        return answer(415, { error: "form-encoded body expected" });
      }
      let filter: unknown;
      let outputProperties: unknown;
      try {
        filter = JSON.parse(form.filter_by_cohort ?? "null");
        outputProperties = form.output_properties === undefined ? undefined : JSON.parse(form.output_properties);
      } catch {
        return answer(400, { error: "filter_by_cohort / output_properties must be JSON" });
      }
      const cohortId =
        filter !== null && typeof filter === "object" && "id" in filter && typeof filter.id === "number" ? filter.id : undefined;
      const cohort = options.cohorts.find((c) => c.id === cohortId);
      if (!cohort) return answer(400, { error: `filter_by_cohort must name a known cohort, got ${form.filter_by_cohort}` });
      if (outputProperties !== undefined && !(Array.isArray(outputProperties) && outputProperties.every((p) => typeof p === "string"))) {
        return answer(400, { error: "output_properties must be a JSON array of strings" });
      }
      const includeAll = form.include_all_users !== "false";
      const key = JSON.stringify([form.filter_by_cohort, form.output_properties ?? "", form.include_all_users ?? ""]);
      let session: Session | undefined;
      let page = 0;
      if (form.session_id !== undefined) {
        session = sessions.get(form.session_id);
        if (!session) return answer(400, { error: `session_id ${form.session_id} is invalid or expired` });
        if (session.key !== key) return answer(400, { error: "paged calls must repeat the identical parameters" });
        if (!/^\d+$/.test(form.page ?? "")) return answer(400, { error: "page is required with session_id" });
        page = Number(form.page);
        if (page !== session.lastPage + 1 && page !== session.lastPage) {
          return answer(400, { error: `page ${page} out of order (last ${session.lastPage})` });
        }
      } else {
        if (form.page !== undefined && form.page !== "0") return answer(400, { error: "page > 0 needs session_id" });
        session = { key, members: members(cohort, includeAll), lastPage: 0 };
        sessions.set(randomUUID(), session);
      }
      session.lastPage = page;
      const sessionId = [...sessions.entries()].find(([, s]) => s === session)?.[0] ?? "";
      const wanted = Array.isArray(outputProperties) ? outputProperties.map(String) : undefined;
      const results = session.members.slice(page * pageSize, (page + 1) * pageSize).map((m) => ({
        $distinct_id: m.id,
        $properties: wanted
          ? Object.fromEntries(wanted.filter((p) => m.properties[p] !== undefined).map((p) => [p, m.properties[p]]))
          : m.properties,
      }));
      const text = JSON.stringify({
        page,
        page_size: pageSize,
        session_id: sessionId,
        status: "ok",
        ...(page === 0 ? { total: session.members.length } : {}),
        results,
      });
      return answer(200, options.numericIds ? text.replace(/"\$distinct_id":"(-?\d+)"/g, '"$$distinct_id":$1') : text);
    },
  };
}
