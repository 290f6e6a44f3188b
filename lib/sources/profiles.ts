import * as z from "../util/zod.js";
import { isBannedId } from "../mixpanel/event-rules.js";
import type { MapContext, MappedItem } from "./types.js";
import { completeUpdate, modifiersSchema, parseUpdate, rejectUpdate as reject, unwrapUpdates } from "./updates.js";

/**
 * POST /v1/profiles → /engage updates (docs/vendors/mixpanel-api.md §6, §10): every /engage
 * operation, one per update; `property_mapping` renames the profile property names;
 * `$ip: "0"` unless the sender set `$ip`, so profiles are not geolocated to the Lambda's
 * region (§5). A sent `$token` is dropped: the forwarder adds the project's own.
 */
const profileUpdateSchema = z.extend(modifiersSchema, {
  $distinct_id: z.pipe(
    z.pipe(z.union([z.string(), z.number()]), z.transform(String)),
    z.string().check(z.trim(), z.minLength(1, "must not be empty")),
  ),
  $ignore_alias: z.optional(z.boolean()),
});

const PROFILE_FIELDS = new Set([...Object.keys(profileUpdateSchema.shape), "$token"]);

export function mapProfileUpdate(item: unknown, index: number, ctx: MapContext): MappedItem {
  const update = parseUpdate(item, index, {
    what: "profile",
    endpoint: "/engage",
    schema: profileUpdateSchema,
    knownFields: PROFILE_FIELDS,
    id: { field: "$distinct_id", code: "invalid_distinct_id" },
  });
  if (!update.ok) return update;
  const { $distinct_id, ...modifiers } = update.data;
  if (isBannedId($distinct_id)) return reject(index, item, "banned_distinct_id", `$distinct_id "${$distinct_id}" is a placeholder Mixpanel refuses`);
  return completeUpdate(index, item, update.fields, { $distinct_id, $ip: "0", ...modifiers }, "profile", ctx.config.property_mapping);
}

export function mapProfileUpdates(body: unknown, ctx: MapContext): MappedItem[] {
  return unwrapUpdates(body, "/v1/profiles").map((item, index) => mapProfileUpdate(item, index, ctx));
}
