import * as z from "../util/zod.js";
import { ConfigError, RetryableError, UpstreamRejectedError } from "../util/errors.js";
import { type FetchLike, fetchText, throwForStatus } from "../http/fetch.js";
import { formatZodIssues } from "../config/env.js";
import { parseJson } from "../util/json.js";

/**
 * Mixpanel's Lookup Tables API (docs/vendors/mixpanel-api.md "Keeping lookup tables fresh",
 * https://docs.mixpanel.com/reference/replace-lookup-table): `GET /lookup-tables` and
 * `PUT /lookup-tables/{id}` on the project's ingestion host, Basic service-account auth with
 * `project_id`. Each call is one attempt: every replace attempt counts against the project's
 * 100 per 24 h, so the caller (refresh.ts) decides whether another is worth one.
 */
export interface LookupCredentials {
  readonly projectId: string;
  readonly username: string;
  readonly secret: string;
}

export interface LookupClientOptions {
  /** The ingestion base of the project's residency (lib/mixpanel/hosts.ts). */
  readonly baseUrl: string;
  readonly credentials: LookupCredentials;
  readonly fetch: FetchLike;
  readonly timeoutMs: number;
  readonly now: () => number;
}

const tableSchema = z.object({ id: z.coerce.string(), name: z._default(z.string(), "") });
const listSchema = z.object({ results: z.array(tableSchema) });
export type LookupTableInfo = z.infer<typeof tableSchema>;

const failedRecordsSchema = z.object({
  failed_records: z.optional(z.array(z.object({ index: z.optional(z.number()), message: z.optional(z.string()) }))),
});

export interface LookupTablesClient {
  list(): Promise<LookupTableInfo[]>;
  /** Replaces the whole table with a gzipped CSV. */
  replace(tableId: string, gzipBody: Uint8Array): Promise<void>;
}

/** Mixpanel's 400 names at most the first ten bad rows; their `index` is 0-based over the data rows. */
function describeFailedRecords(body: string): string {
  const json = parseJson(body);
  const parsed = json.ok ? failedRecordsSchema.safeParse(json.value) : undefined;
  const failed = parsed?.success ? (parsed.data.failed_records ?? []) : [];
  if (failed.length === 0) return body.slice(0, 500);
  return failed.map((record) => `row ${record.index === undefined ? "?" : record.index + 2}: ${record.message ?? "refused"}`).join("; ");
}

export function createLookupTablesClient(options: LookupClientOptions): LookupTablesClient {
  const base = options.baseUrl.replace(/\/+$/, "");
  const { credentials } = options;
  const authorization = `Basic ${Buffer.from(`${credentials.username}:${credentials.secret}`).toString("base64")}`;
  const url = (path: string) => {
    const target = new URL(`${base}${path}`);
    target.searchParams.set("project_id", credentials.projectId);
    return target;
  };
  return {
    async list() {
      const result = await fetchText(options.fetch, url("/lookup-tables"), { method: "GET", headers: { authorization, accept: "application/json" } }, options.timeoutMs);
      throwForStatus(result, "Mixpanel GET /lookup-tables", options.now());
      const json = parseJson(result.body);
      if (!json.ok) throw new RetryableError(`Mixpanel GET /lookup-tables answered non-JSON: ${result.body.slice(0, 200)}`);
      const parsed = listSchema.safeParse(json.value);
      if (!parsed.success) throw new UpstreamRejectedError(`Mixpanel GET /lookup-tables answered an unexpected shape: ${formatZodIssues(parsed.error)}`, result.status, result.body.slice(0, 500));
      return parsed.data.results;
    },
    async replace(tableId, gzipBody) {
      const what = `Mixpanel PUT /lookup-tables/${tableId}`;
      const result = await fetchText(
        options.fetch,
        url(`/lookup-tables/${encodeURIComponent(tableId)}`),
        {
          method: "PUT",
          headers: { authorization, accept: "application/json", "content-type": "text/csv", "content-encoding": "gzip" },
          body: new Blob([new Uint8Array(gzipBody)]),
        },
        options.timeoutMs,
      );
      if (result.status === 400) throw new UpstreamRejectedError(`${what} refused the file: ${describeFailedRecords(result.body)}`, 400, result.body.slice(0, 2000));
      if (result.status === 404) throw new ConfigError(`${what}: no lookup table with this id in the project (lookup_tables.*.table_id; see npm run lookup:list)`, 404);
      throwForStatus(result, what, options.now());
    },
  };
}
