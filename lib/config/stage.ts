import { readFileSync } from "node:fs";
import * as z from "../util/zod.js";
import { ConfigError } from "../util/errors.js";
import { formatZodIssues } from "./env.js";
import { mappingConfigSchema } from "./mapping.js";
import { cohortSyncsSchema, cohortSyncsSchemaFor } from "./cohort-syncs.js";
import { querySyncsSchema, querySyncsSchemaFor } from "./query-syncs.js";
import { mixpanelCompatConfigSchema } from "./mixpanel-compat.js";
import { piiConfigSchema } from "./pii.js";
import { brevoConfigSchema } from "./brevo.js";
import { lookupTablesSchema } from "./lookup-tables.js";
import { parseJson } from "../util/json.js";

/**
 * The per-stage config file (config/<stage>.json): one zod schema, validated by
 * `npm run build` for every stage and again at cold start. Errors name the bad key.
 * Every key is documented in docs/configuration.md.
 */
export const residencySchema = z.enum(["us", "eu", "in"]);
export type Residency = z.infer<typeof residencySchema>;

export const stageConfigSchema = z.strictObject({
  /** Where the Mixpanel project lives; never falls back to the US host (docs/vendors/mixpanel-api.md §1). */
  residency: z._default(residencySchema, "us"),
  cohort_syncs: z._default(cohortSyncsSchema, []),
  /** Scheduled Engage/JQL query extracts to Brevo attributes, webhooks or Braze (lib/config/query-syncs.ts). */
  query_syncs: z._default(querySyncsSchema, []),
  /** Mixpanel-compatible /track, /engage, /groups, /import for official SDKs (lib/config/mixpanel-compat.ts). */
  mixpanel_compat: z.optional(mixpanelCompatConfigSchema),
  /** Personal-data rules applied at the edge (lib/config/pii.ts, docs/pii.md). */
  pii: z.optional(piiConfigSchema),
  /** Mixpanel → Brevo connector: events, profiles, groups (docs/brevo.md). Absent = off. */
  brevo: z.optional(brevoConfigSchema),
  /** Mixpanel lookup tables kept in step with a CSV in S3 (lib/config/lookup-tables.ts, docs/configuration.md). */
  lookup_tables: z._default(lookupTablesSchema, []),
  ...mappingConfigSchema.shape,
});

/** The stage whose destinations may be plain-http loopback receivers (`npm start`, tests). */
export const LOCAL_STAGE = "local";

/** Destination address rules depend on the stage (lib/util/address-policy.ts): the local stage allows loopback receivers. */
export function stageConfigSchemaFor(stage: string) {
  if (stage !== LOCAL_STAGE) return stageConfigSchema;
  return z.extend(stageConfigSchema, {
    cohort_syncs: z._default(cohortSyncsSchemaFor({ localStage: true }), []),
    query_syncs: z._default(querySyncsSchemaFor({ localStage: true }), []),
  });
}

export type StageConfig = z.infer<typeof stageConfigSchema>;

export function parseStageConfig(raw: unknown, origin: string, stage = ""): StageConfig {
  const parsed = stageConfigSchemaFor(stage).safeParse(raw);
  if (!parsed.success) throw new ConfigError(`invalid stage config ${origin}: ${formatZodIssues(parsed.error)}`);
  return parsed.data;
}

export function loadStageConfig(path: string, stage = ""): StageConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new ConfigError(`cannot read stage config ${path}: ${String(error)}`);
  }
  const json = parseJson(text);
  if (!json.ok) throw new ConfigError(`stage config ${path} is not valid JSON: ${json.error}`);
  return parseStageConfig(json.value, path, stage);
}

export function stageConfigPath(stage: string, explicit?: string): string {
  return explicit ?? `config/${stage}.json`;
}
