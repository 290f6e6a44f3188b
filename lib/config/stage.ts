import { readFileSync } from "node:fs";
import * as z from "zod";
import { ConfigError } from "../errors.js";
import { formatZodIssues } from "./env.js";
import { mappingConfigSchema } from "./mapping.js";
import { cohortSyncsSchema } from "../cohorts/sync-config.js";
import { piiConfigSchema } from "../pii/config.js";

/**
 * The per-stage config file (config/<stage>.json): one zod schema, validated by
 * `npm run build` for every stage and again at cold start. Errors name the bad key.
 * Every key is documented in README "Configuration".
 */
export const residencySchema = z.enum(["us", "eu", "in"]);
export type Residency = z.infer<typeof residencySchema>;

export const stageConfigSchema = z
  .object({
    /** Where the Mixpanel project lives; never falls back to the US host (reference/mixpanel-api.md §1). */
    residency: residencySchema.default("us"),
    cohort_syncs: cohortSyncsSchema.default([]),
    /** Personal-data rules applied at the edge (lib/pii/config.ts, README "Personal data"). */
    pii: piiConfigSchema.optional(),
  })
  .extend(mappingConfigSchema.shape)
  .strict();

export type StageConfig = z.infer<typeof stageConfigSchema>;

export function parseStageConfig(raw: unknown, origin: string): StageConfig {
  const parsed = stageConfigSchema.safeParse(raw);
  if (!parsed.success) throw new ConfigError(`invalid stage config ${origin}: ${formatZodIssues(parsed.error)}`);
  return parsed.data;
}

export function loadStageConfig(path: string): StageConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    throw new ConfigError(`cannot read stage config ${path}: ${String(error)}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`stage config ${path} is not valid JSON: ${String(error)}`);
  }
  return parseStageConfig(raw, path);
}

export function stageConfigPath(stage: string, explicit?: string): string {
  return explicit ?? `config/${stage}.json`;
}
