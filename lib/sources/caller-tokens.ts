import { setOwn } from "../util/renames.js";

/**
 * A sender's own project token inside a record's properties (`token`, `$token`). The relay
 * authenticates to Mixpanel with the stage's credentials and adds the project's token itself
 * (docs/vendors/mixpanel-api.md §3, §6, §10 and "A caller's project token"), so a token a
 * caller put in the properties, possibly another project's, is never forwarded. How many were
 * removed is counted (metric CallerTokensRemoved).
 */
export const CALLER_TOKEN_NAMES: readonly string[] = ["token", "$token"];

export interface WithoutCallerTokens {
  readonly properties: Record<string, unknown>;
  readonly removed: number;
}

/** A shallow copy of `properties` without `token` / `$token` (own keys only), and how many were removed. */
export function withoutCallerTokens(properties: Readonly<Record<string, unknown>>): WithoutCallerTokens {
  let removed = 0;
  for (const name of CALLER_TOKEN_NAMES) if (Object.hasOwn(properties, name)) removed++;
  if (removed === 0) return { properties: properties as Record<string, unknown>, removed };
  const copy: Record<string, unknown> = {};
  for (const key of Object.keys(properties)) {
    if (!CALLER_TOKEN_NAMES.includes(key)) setOwn(copy, key, properties[key]);
  }
  return { properties: copy, removed };
}
