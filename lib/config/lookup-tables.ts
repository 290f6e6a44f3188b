import * as z from "../util/zod.js";
import { rateToMs } from "./cohort-syncs.js";

/**
 * `lookup_tables` in the stage config: Mixpanel lookup tables the relay keeps in step
 * with a CSV object in S3 (lib/lookup/). Each entry names the Mixpanel table by id
 * (tables are created in Mixpanel's UI; there is no create call, docs/vendors/mixpanel-api.md
 * "Keeping lookup tables fresh") and says when to look at the file: on an interval
 * checked at the cohort-export tick, or when the object is written (`on_upload`).
 */
export const ON_UPLOAD = "on_upload";

/** Mixpanel advises replacing a lookup table at most hourly (100 replaces per 24 h per project). */
export const MIN_LOOKUP_INTERVAL_MS = 3_600_000;

/** S3 bucket naming rules (lower case, digits, dots, hyphens; 3–63 characters). */
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

const lookupSourceSchema = z.strictObject({
  type: z.literal("s3"),
  bucket: z.string().check(z.regex(BUCKET, { message: "must be an S3 bucket name (3–63 lower-case letters, digits, dots, hyphens)" })),
  /** One object, named exactly: IAM and the upload trigger are scoped to it. */
  key: z.string().check(
    z.minLength(1),
    z.maxLength(1024),
    z.refine((key) => !key.startsWith("/") && !/[*?]/.test(key), { message: "must be one object key (no leading /, no wildcards)" }),
  ),
});

export const lookupTableSchema = z.strictObject({
  /** Names the table in logs, metrics and the relay's state (S3 key part). */
  id: z.string().check(z.regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, { message: "must be 1–64 lower-case letters, digits, _ or -" })),
  /** The Mixpanel lookup table id (`npm run lookup:list`, or Lexicon → the table's details). */
  table_id: z.string().check(z.regex(/^[A-Za-z0-9_-]{1,128}$/, { message: "must be a Mixpanel lookup table id (letters, digits, - and _)" })),
  source: lookupSourceSchema,
  schedule: z.string().check(
    z.refine((value) => value === ON_UPLOAD || (rateToMs(value) ?? 0) >= MIN_LOOKUP_INTERVAL_MS, {
      message: 'must be "on_upload" or an interval of at least an hour like "rate(1 day)" (Mixpanel: at most 100 replaces per 24 h, at most hourly)',
    }),
  ),
});

export const lookupTablesSchema = z.array(lookupTableSchema).check(
  z.superRefine((tables, ctx) => {
    const seen = new Map<string, number>();
    const seenTables = new Map<string, number>();
    tables.forEach((table, index) => {
      const earlier = seen.get(table.id);
      if (earlier !== undefined) ctx.addIssue({ code: "custom", path: [index, "id"], message: `repeats the id of lookup_tables.${earlier}` });
      seen.set(table.id, index);
      const earlierTable = seenTables.get(table.table_id);
      // Two entries replacing one table would undo each other's file on every run.
      if (earlierTable !== undefined) ctx.addIssue({ code: "custom", path: [index, "table_id"], message: `repeats the table_id of lookup_tables.${earlierTable}` });
      seenTables.set(table.table_id, index);
    });
  }),
);

export type LookupTable = z.infer<typeof lookupTableSchema>;
