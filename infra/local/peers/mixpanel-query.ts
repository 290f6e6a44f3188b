import { createHash, randomUUID } from "node:crypto";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
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
 *
 * Query extracts (docs/vendors/mixpanel-api.md "Query extracts"):
 *
 *  - `POST {basePath}/engage` without `filter_by_cohort`: every received profile, filtered by
 *    `where` when given, paged like the cohort query. `where` is a fixed subset of Mixpanel's
 *    expression language (evaluateWhere below): `properties["name"]`, string literals in
 *    double quotes (`\"` and `\\` escapes), numbers, `true`, `false`, `==`, `!=`, `<`, `<=`,
 *    `>`, `>=`, `and`, `or`, `not`, `defined(properties["name"])` and parentheses. Anything
 *    else answers 400 naming the position, as a query the sandbox cannot judge must not pass.
 *  - `POST {basePath}/jql` (form `script`, `params`): JQL is not interpreted. The sandbox runs
 *    only scripts it recognises by their exact text: every file of `queries/` whose name has a
 *    built-in evaluator (JQL_EVALUATORS: `plan-by-user.js` → one row
 *    `{distinct_id, plan, seats}` per profile with a `plan`, kept to `params.plans` when
 *    given), plus the `scripts` a test hands in. Any other script answers 400. JQL calls
 *    count against the same hourly limit as the Query API (Mixpanel: 60 per hour).
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
  /** Where the shipped JQL scripts are read (default `queries` under the working directory). */
  readonly scriptsDir?: string;
  /** More JQL scripts the sandbox runs, recognised by their exact text. */
  readonly scripts?: readonly { readonly source: string; readonly run: JqlEvaluator }[];
  /**
   * The spec types `$distinct_id` as integer: write digit-only ids as JSON numbers,
   * digits verbatim (also beyond 2^53, as a server with 64-bit ids would).
   */
  readonly numericIds?: boolean;
}

export type JqlEvaluator = (profiles: ReadonlyMap<string, Record<string, unknown>>, params: Record<string, unknown>) => unknown[];

/** Built-in evaluators of the scripts shipped in queries/, by file name. */
export const JQL_EVALUATORS: Readonly<Record<string, JqlEvaluator>> = {
  "plan-by-user.js": (profiles, params) => {
    const plans = Array.isArray(params.plans) ? params.plans : undefined;
    const rows: unknown[] = [];
    for (const [id, properties] of profiles) {
      const plan = properties.plan;
      if (plan === undefined || (plans !== undefined && !plans.includes(plan))) continue;
      rows.push({ distinct_id: id, plan, ...(properties.seats !== undefined ? { seats: properties.seats } : {}) });
    }
    return rows;
  },
};

const scriptDigest = (source: string) => createHash("sha256").update(source).digest("hex");

function shippedScripts(dir: string): Map<string, JqlEvaluator> {
  const found = new Map<string, JqlEvaluator>();
  let names: string[] = [];
  try {
    names = readdirSync(dir);
  } catch {
    return found;
  }
  for (const name of names) {
    const run = JQL_EVALUATORS[name];
    if (run) found.set(scriptDigest(readFileSync(join(dir, name), "utf8")), run);
  }
  return found;
}

type WhereValue = string | number | boolean | undefined;
type Token = { kind: "str" | "num" | "word" | "op"; text: string; at: number };

function tokenize(source: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < source.length) {
    const c = source[i] ?? "";
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === '"') {
      let text = "";
      let j = i + 1;
      for (; j < source.length && source[j] !== '"'; j++) {
        if (source[j] === "\\") {
          const next = source[j + 1];
          if (next !== '"' && next !== "\\") throw new Error(`unsupported escape at ${j}`);
          text += next;
          j++;
        } else text += source[j];
      }
      if (j >= source.length) throw new Error(`unterminated string at ${i}`);
      tokens.push({ kind: "str", text, at: i });
      i = j + 1;
      continue;
    }
    const number = /^-?\d+(\.\d+)?/.exec(source.slice(i));
    if (number) {
      tokens.push({ kind: "num", text: number[0], at: i });
      i += number[0].length;
      continue;
    }
    const word = /^[A-Za-z_]+/.exec(source.slice(i));
    if (word) {
      tokens.push({ kind: "word", text: word[0], at: i });
      i += word[0].length;
      continue;
    }
    const op = /^(==|!=|<=|>=|<|>|\(|\)|\[|\])/.exec(source.slice(i));
    if (!op) throw new Error(`unsupported character ${JSON.stringify(c)} at ${i}`);
    tokens.push({ kind: "op", text: op[0], at: i });
    i += op[0].length;
  }
  return tokens;
}

/**
 * Evaluates the documented subset of Mixpanel's expression language over one profile's
 * properties; throws (→ 400) on anything outside it. Comparisons between different types are
 * false, `<`/`>` compare numbers with numbers and strings with strings only.
 */
export function evaluateWhere(source: string, properties: Readonly<Record<string, unknown>>): boolean {
  const tokens = tokenize(source);
  let pos = 0;
  const peek = () => tokens[pos];
  const fail = (what: string): never => {
    throw new Error(`${what} at ${peek()?.at ?? source.length}`);
  };
  const expect = (text: string) => {
    if (peek()?.text !== text) fail(`expected ${text}`);
    pos++;
  };
  const property = (): WhereValue => {
    expect("properties");
    expect("[");
    const name = peek();
    if (name?.kind !== "str") return fail("expected a property name in double quotes");
    pos++;
    expect("]");
    const value = Object.hasOwn(properties, name.text) ? properties[name.text] : undefined;
    return typeof value === "string" || typeof value === "number" || typeof value === "boolean" ? value : value === undefined || value === null ? undefined : JSON.stringify(value);
  };
  const primary = (): WhereValue => {
    const token = peek();
    if (!token) return fail("unexpected end");
    if (token.text === "(") {
      pos++;
      const value = or();
      expect(")");
      return value;
    }
    if (token.kind === "str") {
      pos++;
      return token.text;
    }
    if (token.kind === "num") {
      pos++;
      return Number(token.text);
    }
    if (token.text === "true" || token.text === "false") {
      pos++;
      return token.text === "true";
    }
    if (token.text === "defined") {
      pos++;
      expect("(");
      const value = property();
      expect(")");
      return value !== undefined;
    }
    if (token.text === "properties") return property();
    return fail(`unsupported ${JSON.stringify(token.text)}`);
  };
  const comparison = (): WhereValue => {
    const left = primary();
    const op = peek();
    if (!op || !["==", "!=", "<", "<=", ">", ">="].includes(op.text)) return left;
    pos++;
    const right = primary();
    if (op.text === "==") return left === right;
    if (op.text === "!=") return left !== right;
    if (typeof left !== typeof right || (typeof left !== "number" && typeof left !== "string") || left === undefined || right === undefined) return false;
    if (op.text === "<") return left < right;
    if (op.text === "<=") return left <= right;
    if (op.text === ">") return left > right;
    return left >= right;
  };
  const not = (): WhereValue => {
    if (peek()?.text === "not") {
      pos++;
      return !truthy(not());
    }
    return comparison();
  };
  const and = (): WhereValue => {
    let value = not();
    while (peek()?.text === "and") {
      pos++;
      const right = not();
      value = truthy(value) && truthy(right);
    }
    return value;
  };
  const or = (): WhereValue => {
    let value = and();
    while (peek()?.text === "or") {
      pos++;
      const right = and();
      value = truthy(value) || truthy(right);
    }
    return value;
  };
  const result = or();
  if (pos !== tokens.length) fail("unexpected text");
  return truthy(result);
}

const truthy = (value: WhereValue) => value !== undefined && value !== false && value !== 0 && value !== "";

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
  const jqlScripts = shippedScripts(options.scriptsDir ?? "queries");
  for (const script of options.scripts ?? []) jqlScripts.set(scriptDigest(script.source), script.run);

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
      if (path !== "/engage" && path !== "/cohorts/list" && path !== "/jql") return false;
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
      if (path === "/jql") {
        if (form.script === undefined) return answer(400, { error: "script is required" });
        let params: unknown = {};
        try {
          params = form.params === undefined ? {} : JSON.parse(form.params);
        } catch {
          return answer(400, { error: "params must be a JSON object" });
        }
        if (params === null || typeof params !== "object" || Array.isArray(params)) return answer(400, { error: "params must be a JSON object" });
        const run = jqlScripts.get(scriptDigest(form.script));
        if (!run) {
          return answer(400, { error: `the local sandbox runs only the scripts it knows by text (${Object.keys(JQL_EVALUATORS).join(", ")} from queries/); this one is not among them` });
        }
        return answer(200, run(options.profiles(), Object.fromEntries(Object.entries(params))));
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
      const byWhere = form.filter_by_cohort === undefined;
      if (byWhere && form.where !== undefined) {
        try {
          evaluateWhere(form.where, {});
        } catch (error) {
          return answer(400, { error: `where: ${error instanceof Error ? error.message : String(error)}` });
        }
      }
      const where = form.where;
      const cohort: CohortFixture | undefined = byWhere
        ? { id: 0, name: "", where: (properties) => where === undefined || evaluateWhere(where, properties) }
        : options.cohorts.find((c) => c.id === cohortId);
      if (!cohort) return answer(400, { error: `filter_by_cohort must name a known cohort, got ${form.filter_by_cohort}` });
      if (outputProperties !== undefined && !(Array.isArray(outputProperties) && outputProperties.every((p) => typeof p === "string"))) {
        return answer(400, { error: "output_properties must be a JSON array of strings" });
      }
      const includeAll = !byWhere && form.include_all_users !== "false";
      const key = JSON.stringify([form.filter_by_cohort ?? "", form.where ?? "", form.output_properties ?? "", form.include_all_users ?? ""]);
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
