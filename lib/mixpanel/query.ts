import * as z from "../util/zod.js";
import { RetryableError, UpstreamRejectedError, ValidationError } from "../util/errors.js";
import { type FetchLike, fetchText, throwForStatus } from "../http/fetch.js";
import { type RetryDeps, type RetryPolicy, DEFAULT_RETRY_POLICY, withRetry } from "../http/retry.js";
import { formatZodIssues } from "../config/env.js";
import { parseJson as parseJsonText } from "../util/json.js";

/**
 * Mixpanel Query API reader for cohort export (docs/vendors/mixpanel-api.md §8):
 * `POST {base}/cohorts/list` and `POST {base}/engage` (form-encoded) with
 * service-account Basic auth + `project_id`. The base defaults to
 * `https://{,eu.,in.}mixpanel.com/api/query` and is overridden by MIXPANEL_QUERY_URL.
 *
 * Every HTTP call (retries included) takes one token from the caller's
 * QueryBudget first: 60 queries/hour and 5 concurrent are per project.
 */

export interface QueryCredentials {
  readonly projectId: string;
  readonly username: string;
  readonly secret: string;
  /** With Data Views. */
  readonly workspaceId?: string;
}

/** Per-run budget shared by every sync: a call count and a concurrency cap. */
export interface QueryBudget {
  /** Takes one call from the budget; false = budget spent, do not call. */
  tryTake(): boolean;
  remaining(): number;
  /** Runs `task` when fewer than `concurrency` calls are in flight. */
  run<T>(task: () => Promise<T>): Promise<T>;
}

export class BudgetExhaustedError extends Error {
  override readonly name = "BudgetExhaustedError";
}

export function createQueryBudget(calls: number, concurrency: number): QueryBudget {
  let left = Math.max(0, Math.floor(calls));
  let active = 0;
  const waiting: (() => void)[] = [];
  const limit = Math.min(5, Math.max(1, Math.floor(concurrency)));
  return {
    tryTake() {
      if (left <= 0) return false;
      left -= 1;
      return true;
    },
    remaining: () => left,
    async run<T>(task: () => Promise<T>): Promise<T> {
      if (active >= limit) await new Promise<void>((resolve) => waiting.push(resolve));
      active += 1;
      try {
        return await task();
      } finally {
        active -= 1;
        waiting.shift()?.();
      }
    },
  };
}

const cohortSchema = z.object({
  id: z.coerce.number().check(z.int()),
  name: z.string(),
  count: z.nullish(z.number()),
  description: z.nullish(z.string()),
  created: z.nullish(z.string()),
  is_visible: z.nullish(z.union([z.number(), z.boolean()])),
  project_id: z.nullish(z.coerce.number()),
});
const cohortListSchema = z.array(cohortSchema);
export type CohortInfo = z.infer<typeof cohortSchema>;

/**
 * `$distinct_id` is typed integer in the spec; JSON.parse turns an integer above
 * 2^53 into a different number, so the body is parsed with such ids quoted first
 * (see quoteUnsafeDistinctIds). A number that still is not a safe integer (1e21,
 * 1.5) fails the page loudly instead of becoming another id.
 */
const distinctIdSchema = z.pipe(
  z.union([
    z.string(),
    z.number().check(
      z.refine(Number.isSafeInteger, {
        message: "numeric $distinct_id is not a safe integer; refusing to alter the id",
      }),
    ),
  ]),
  z.transform(String),
);

const engageResultSchema = z.object({
  $distinct_id: distinctIdSchema,
  $properties: z._default(z.record(z.string(), z.unknown()), {}),
});
const engagePageSchema = z.object({
  page: z.number().check(z.int(), z.gte(0)),
  page_size: z._default(z.number().check(z.int(), z.positive()), 1000),
  session_id: z.optional(z.string().check(z.minLength(1))),
  status: z.optional(z.string()),
  total: z.optional(z.number().check(z.int())),
  results: z.array(engageResultSchema),
});
export type EngagePage = z.infer<typeof engagePageSchema>;
export type EngageMember = z.infer<typeof engageResultSchema>;

export interface EngageRequest {
  readonly cohortId: number;
  readonly outputProperties: readonly string[];
  readonly includeAllUsers: boolean;
  /** Absent for page 0; from the first response afterwards. */
  readonly sessionId?: string;
  readonly page: number;
}

export interface QueryClientOptions {
  readonly baseUrl: string;
  readonly credentials: QueryCredentials;
  readonly fetch: FetchLike;
  readonly timeoutMs: number;
  readonly retryDeps: RetryDeps;
  readonly retryPolicy?: RetryPolicy;
  readonly budget: QueryBudget;
  readonly now: () => number;
  /** Called after every HTTP call (for metrics / the local sandbox log). */
  readonly onQuery?: (info: { path: string; status: number }) => void;
  /** The stage's personal-data rules for cohort members' properties, applied as each page is read. */
  readonly protectMemberProperties?: (properties: Record<string, unknown>) => Record<string, unknown>;
}

/** An Engage query by expression (query extracts): `where` instead of a cohort. */
export interface EngageWhereRequest {
  /** Mixpanel's expression language, e.g. `properties["plan"] == "pro"`; absent = every profile. */
  readonly where?: string;
  readonly outputProperties: readonly string[];
  readonly sessionId?: string;
  readonly page: number;
}

/**
 * A JQL answer: the script's output, a JSON array. Only the array is checked here; each
 * element is judged on its own by the caller, so one bad row never fails the answer.
 */
const jqlAnswerSchema = z.array(z.unknown());

export interface QueryClient {
  listCohorts(): Promise<CohortInfo[]>;
  engagePage(request: EngageRequest): Promise<EngagePage>;
  /** `POST /engage` with `where` (https://docs.mixpanel.com/reference/engage-query). */
  engageWherePage(request: EngageWhereRequest): Promise<EngagePage>;
  /** `POST /jql` with `script` and `params` (https://docs.mixpanel.com/reference/query-jql). */
  jql(script: string, params: Readonly<Record<string, unknown>>): Promise<unknown[]>;
}

/** Query API retries: 429 means the hourly budget is gone; a few quick tries, then stop the run. */
export const QUERY_RETRY_POLICY: RetryPolicy = { ...DEFAULT_RETRY_POLICY, maxAttempts: 3 };

/** The form body for /engage (pure; exported for tests). */
export function engageForm(request: EngageRequest): URLSearchParams {
  const form = new URLSearchParams();
  form.set("filter_by_cohort", JSON.stringify({ id: request.cohortId }));
  form.set("output_properties", JSON.stringify(request.outputProperties));
  form.set("include_all_users", String(request.includeAllUsers));
  if (request.sessionId !== undefined) {
    form.set("session_id", request.sessionId);
    form.set("page", String(request.page));
  }
  return form;
}

/** The form body for an Engage query by expression (pure; exported for tests). */
export function engageWhereForm(request: EngageWhereRequest): URLSearchParams {
  const form = new URLSearchParams();
  if (request.where !== undefined) form.set("where", request.where);
  form.set("output_properties", JSON.stringify(request.outputProperties));
  if (request.sessionId !== undefined) {
    form.set("session_id", request.sessionId);
    form.set("page", String(request.page));
  }
  return form;
}

/**
 * Quotes every `"$distinct_id": <integer>` whose integer is beyond
 * Number.MAX_SAFE_INTEGER, so JSON.parse keeps its exact digits as a string.
 * Only a key (after `{` or `,`) matches: a quote inside a JSON string is escaped,
 * so string contents are never touched. Safe integers are left as they are.
 */
export function quoteUnsafeDistinctIds(body: string): string {
  return body.replace(/(?<=[{,]\s*)("\$distinct_id"\s*:\s*)(-?\d+)(?=\s*[,}\]])/g, (match, key: string, digits: string) =>
    Number.isSafeInteger(Number(digits)) ? match : `${key}"${digits}"`,
  );
}

function parseJson<T>(body: string, schema: z.ZodType<T>, what: string): T {
  const json = parseJsonText(quoteUnsafeDistinctIds(body));
  if (!json.ok) throw new RetryableError(`${what} answered with non-JSON: ${body.slice(0, 200)}`);
  const parsed = schema.safeParse(json.value);
  if (!parsed.success) throw new ValidationError(`${what} answered an unexpected shape: ${formatZodIssues(parsed.error)}`);
  return parsed.data;
}

export function createQueryClient(options: QueryClientOptions): QueryClient {
  const { credentials } = options;
  const base = options.baseUrl.replace(/\/+$/, "");
  const authorization = `Basic ${Buffer.from(`${credentials.username}:${credentials.secret}`).toString("base64")}`;

  async function call(path: string, form: URLSearchParams): Promise<string> {
    const url = new URL(`${base}${path}`);
    url.searchParams.set("project_id", credentials.projectId);
    if (credentials.workspaceId) url.searchParams.set("workspace_id", credentials.workspaceId);
    const what = `Mixpanel Query API ${path}`;
    return withRetry(
      async () => {
        if (!options.budget.tryTake()) throw new BudgetExhaustedError(`query budget for this run is spent (${path})`);
        const result = await options.budget.run(() =>
          fetchText(
            options.fetch,
            url,
            {
              method: "POST",
              headers: {
                authorization,
                accept: "application/json",
                "content-type": "application/x-www-form-urlencoded",
              },
              body: form.toString(),
            },
            options.timeoutMs,
          ),
        );
        options.onQuery?.({ path, status: result.status });
        throwForStatus(result, what, options.now());
        return result.body;
      },
      options.retryDeps,
      options.retryPolicy ?? QUERY_RETRY_POLICY,
    );
  }

  return {
    async listCohorts() {
      return parseJson(await call("/cohorts/list", new URLSearchParams()), cohortListSchema, "/cohorts/list");
    },
    async engagePage(request) {
      const page = parseJson(await call("/engage", engageForm(request)), engagePageSchema, "/engage");
      const protect = options.protectMemberProperties;
      if (!protect) return page;
      return { ...page, results: page.results.map((member) => ({ ...member, $properties: protect(member.$properties) })) };
    },
    async engageWherePage(request) {
      const page = parseJson(await call("/engage", engageWhereForm(request)), engagePageSchema, "/engage");
      const protect = options.protectMemberProperties;
      if (!protect) return page;
      return { ...page, results: page.results.map((member) => ({ ...member, $properties: protect(member.$properties) })) };
    },
    async jql(script, params) {
      const form = new URLSearchParams();
      form.set("script", script);
      form.set("params", JSON.stringify(params));
      const rows = parseJson(await call("/jql", form), jqlAnswerSchema, "/jql");
      const protect = options.protectMemberProperties;
      if (!protect) return rows;
      return rows.map((row) => (row !== null && typeof row === "object" && !Array.isArray(row) ? protect(Object.fromEntries(Object.entries(row))) : row));
    },
  };
}

/** Session errors (expired/unknown session_id) restart the export from page 0. */
export function isSessionError(error: unknown): boolean {
  return error instanceof UpstreamRejectedError && /session/i.test(error.body);
}
