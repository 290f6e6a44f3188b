import type { IdentityMode } from "../config/mapping.js";

/**
 * The stage's ID-merge mode decides which identity records may reach /import
 * (docs/vendors/mixpanel-api.md §7, docs/vendors/adobe-forwarding.md §4):
 * - simplified: `$identify`, `$create_alias` and `$merge` are ignored by Mixpanel, so
 *   they are rejected here with a code that says why instead of silently vanishing;
 *   ordinary events carry `$device_id` / `$user_id` through unchanged.
 * - original: the identity events are passed through once their required fields are there.
 */
export const IDENTITY_EVENTS = ["$identify", "$create_alias", "$merge"] as const;

export function isIdentityEvent(event: string): boolean {
  return (IDENTITY_EVENTS as readonly string[]).includes(event);
}

export type IdentityResult =
  | { readonly ok: true; readonly properties: Record<string, unknown> }
  | { readonly ok: false; readonly code: string; readonly reason: string };

function nonEmptyString(value: unknown): value is string {
  return typeof value === "string" && value.trim() !== "";
}

function missingDistinctId(properties: Record<string, unknown>): boolean {
  return properties.distinct_id === undefined || properties.distinct_id === null || properties.distinct_id === "";
}

/**
 * Checks an event against the identity mode and fills `distinct_id` where Mixpanel
 * defines it from other fields; /import validates `distinct_id` on every event (§7).
 */
export function applyIdentityMode(event: string, properties: Record<string, unknown>, mode: IdentityMode): IdentityResult {
  if (isIdentityEvent(event)) {
    if (mode !== "original") {
      return {
        ok: false,
        code: "identity_event_requires_original_mode",
        reason: `${event} is ignored by Mixpanel under Simplified ID Merge; send $device_id/$user_id on events instead, or set identity_mode: "original" for this stage`,
      };
    }
    return checkOriginalIdentityEvent(event, properties);
  }
  if (mode === "simplified" && missingDistinctId(properties)) {
    // Simplified ID Merge resolves distinct_id to $user_id, else "$device:<id>" (§7).
    if (nonEmptyString(properties.$user_id)) return { ok: true, properties: { ...properties, distinct_id: properties.$user_id } };
    if (nonEmptyString(properties.$device_id)) {
      return { ok: true, properties: { ...properties, distinct_id: `$device:${properties.$device_id}` } };
    }
  }
  return { ok: true, properties };
}

function checkOriginalIdentityEvent(event: string, properties: Record<string, unknown>): IdentityResult {
  const invalid = (reason: string): IdentityResult => ({ ok: false, code: "invalid_identity_event", reason });
  if (event === "$identify") {
    if (!nonEmptyString(properties.$identified_id)) return invalid("$identify needs properties.$identified_id (the known user id)");
    if (!nonEmptyString(properties.$anon_id)) return invalid("$identify needs properties.$anon_id (the anonymous id to merge)");
    // Mixpanel's SDKs send $identify with distinct_id = the identified id.
    return { ok: true, properties: missingDistinctId(properties) ? { ...properties, distinct_id: properties.$identified_id } : properties };
  }
  if (event === "$create_alias") {
    if (!nonEmptyString(properties.alias)) return invalid("$create_alias needs properties.alias");
    if (missingDistinctId(properties)) return invalid("$create_alias needs properties.distinct_id (the id the alias points to)");
    if (String(properties.distinct_id) === properties.alias) return invalid("$create_alias: alias and distinct_id must differ");
    return { ok: true, properties };
  }
  // $merge: exactly two ids, irreversible (§7).
  const ids = properties.$distinct_ids;
  if (!Array.isArray(ids) || ids.length !== 2 || !ids.every(nonEmptyString)) {
    return invalid("$merge needs properties.$distinct_ids: exactly 2 non-empty ids");
  }
  return { ok: true, properties: missingDistinctId(properties) ? { ...properties, distinct_id: ids[0] } : properties };
}
