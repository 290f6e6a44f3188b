import type { IdentityMode } from "../config/mapping.js";

/**
 * Which id becomes the Brevo contact's `ext_id` (README "Brevo" → Identity), following the
 * stage's `identity_mode` (docs/vendors/mixpanel-api.md §7):
 * - simplified: the canonical id is `$user_id` when the record carries one; a record that
 *   only has a device (`$device_id` without `$user_id`, or a `$device:` distinct id) is
 *   anonymous and gets no ext_id, so an anonymous device never creates a stray contact.
 * - original: the distinct id as sent (identity events have already merged ids in Mixpanel).
 */
const DEVICE_PREFIX = "$device:";

function nonEmpty(value: unknown): string | undefined {
  if (typeof value === "string" && value.trim() !== "") return value;
  if (typeof value === "number" && Number.isFinite(value)) return String(value);
  return undefined;
}

export function canonicalContactId(distinctId: unknown, properties: Readonly<Record<string, unknown>>, mode: IdentityMode): string | undefined {
  const id = nonEmpty(distinctId);
  if (mode === "original") return id;
  const userId = nonEmpty(properties.$user_id);
  if (userId !== undefined) return userId;
  if (id === undefined || id.startsWith(DEVICE_PREFIX)) return undefined;
  if (nonEmpty(properties.$device_id) !== undefined) return undefined;
  return id;
}

/**
 * The value of a configured identifier source: `distinct_id` means the canonical id above;
 * any other name is read from the record's properties.
 */
export function identifierValue(
  source: string,
  distinctId: unknown,
  properties: Readonly<Record<string, unknown>>,
  mode: IdentityMode,
): string | undefined {
  if (source === "distinct_id" || source === "$distinct_id") return canonicalContactId(distinctId, properties, mode);
  return nonEmpty(Object.hasOwn(properties, source) ? properties[source] : undefined);
}
