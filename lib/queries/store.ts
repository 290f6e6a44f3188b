import { gunzipSync, gzipSync } from "node:zlib";
import * as z from "../util/zod.js";
import { parseJsonWith } from "../util/json.js";
import { formatZodIssues } from "../config/env.js";
import { ValidationError } from "../util/errors.js";

/**
 * Where a query sync keeps its state, in the cohort snapshot bucket beside the cohort syncs
 * (same function, same permissions). `_queries` cannot clash with a cohort sync id, which must
 * start with a letter or digit:
 *
 *   cohorts/_queries/<id>/state.json     schedule stamp and the last run's report
 *   cohorts/_queries/<id>/hashes.json.gz  key → hash of the mapped values last delivered
 */
export interface BytesStore {
  getBytes(key: string): Promise<Uint8Array | undefined>;
  putBytes(key: string, body: Uint8Array): Promise<void>;
}

export const queryKeys = {
  state: (id: string) => `cohorts/_queries/${id}/state.json`,
  hashes: (id: string) => `cohorts/_queries/${id}/hashes.json.gz`,
};

export const queryRunOutcomeSchema = z.enum(["delivered", "partial", "failed", "waiting_for_budget", "dry_run"]);
export type QueryRunOutcome = z.infer<typeof queryRunOutcomeSchema>;

export const queryRunReportSchema = z.object({
  run_id: z.string(),
  started_at: z.string(),
  finished_at: z.string(),
  outcome: queryRunOutcomeSchema,
  rows_read: z.number(),
  sent: z.number(),
  unchanged: z.number(),
  rejected: z.number(),
  /** Rows the destination has not taken yet (transient failure): sent again by the next run. */
  not_delivered: z.number(),
  /** Query API / JQL calls this run spent. */
  queries: z.number(),
  detail: z.optional(z.string()),
});
export type QueryRunReport = z.infer<typeof queryRunReportSchema>;

export const queryStateSchema = z.object({
  last_started_at: z.optional(z.string()),
  last_run: z.optional(queryRunReportSchema),
});
export type QueryState = z.infer<typeof queryStateSchema>;

const hashesSchema = z.object({
  algorithm: z.literal("fnv-52"),
  entries: z.array(z.tuple([z.string(), z.number()])),
});

function parse<T>(schema: z.ZodType<T>, text: string, what: string): T {
  const parsed = parseJsonWith(schema, text);
  if (!parsed.success) throw new ValidationError(`${what} has the wrong shape: ${formatZodIssues(parsed.error)}`);
  return parsed.data;
}

export interface QueryStore {
  readState(id: string): Promise<QueryState>;
  writeState(id: string, state: QueryState): Promise<void>;
  readHashes(id: string): Promise<Map<string, number>>;
  writeHashes(id: string, hashes: ReadonlyMap<string, number>): Promise<void>;
}

export function createQueryStore(bytes: BytesStore): QueryStore {
  return {
    async readState(id) {
      const body = await bytes.getBytes(queryKeys.state(id));
      if (body === undefined) return {};
      return parse(queryStateSchema, Buffer.from(body).toString("utf8"), queryKeys.state(id));
    },
    writeState: (id, state) => bytes.putBytes(queryKeys.state(id), Buffer.from(JSON.stringify(state))),
    async readHashes(id) {
      const body = await bytes.getBytes(queryKeys.hashes(id));
      if (body === undefined) return new Map();
      const stored = parse(hashesSchema, gunzipSync(body).toString("utf8"), queryKeys.hashes(id));
      return new Map(stored.entries);
    },
    writeHashes: (id, hashes) => bytes.putBytes(queryKeys.hashes(id), gzipSync(JSON.stringify({ algorithm: "fnv-52", entries: [...hashes] }))),
  };
}
