import * as z from "zod";
import { isBannedId } from "../mixpanel/event-rules.js";
import type { MapContext, MappedItem } from "./types.js";
import {
  completeUpdate,
  describeFirstIssue,
  modifiersSchema,
  readUpdateObject,
  rejectUnknownField,
  rejectUpdate as reject,
  unsafeNumericId,
  unwrapUpdates,
} from "./updates.js";

/**
 * POST /v1/profiles → /engage updates (docs/vendors/mixpanel-api.md §6, §10): every /engage
 * operation, one per update; `property_mapping` renames the profile property names;
 * `$ip: "0"` unless the sender set `$ip`, so profiles are not geolocated to the Lambda's
 * region (§5). A sent `$token` is dropped: the forwarder adds the project's own.
 */
const profileUpdateSchema = modifiersSchema.extend({
  $distinct_id: z.union([z.string(), z.number()]).transform(String).pipe(z.string().trim().min(1, "must not be empty")),
  $ignore_alias: z.boolean().optional(),
});

const PROFILE_FIELDS = new Set([...Object.keys(profileUpdateSchema.shape), "$token"]);

export function mapProfileUpdate(item: unknown, index: number, ctx: MapContext): MappedItem {
  const raw = readUpdateObject(item, index, "profile");
  if (!raw.ok) return raw;
  const unknownField = rejectUnknownField(index, item, raw.fields, PROFILE_FIELDS, "/engage");
  if (unknownField) return unknownField;
  const unsafeId = unsafeNumericId("$distinct_id", raw.fields.$distinct_id);
  if (unsafeId !== undefined) return reject(index, item, "invalid_distinct_id", unsafeId);
  const parsed = profileUpdateSchema.safeParse(raw.fields);
  if (!parsed.success) return reject(index, item, "invalid_shape", describeFirstIssue(parsed.error));
  const { $distinct_id, ...modifiers } = parsed.data;
  if (isBannedId($distinct_id)) return reject(index, item, "banned_distinct_id", `$distinct_id "${$distinct_id}" is a placeholder Mixpanel refuses`);
  return completeUpdate(index, item, raw.fields, { $distinct_id, $ip: "0", ...modifiers }, "profile", ctx.config.property_mapping);
}

export function mapProfileUpdates(body: unknown, ctx: MapContext): MappedItem[] {
  return unwrapUpdates(body, "/v1/profiles").map((item, index) => mapProfileUpdate(item, index, ctx));
}
