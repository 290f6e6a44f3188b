import * as z from "zod";
import { rejectProtoKey } from "./property-names.js";
import type { MapContext, MappedItem } from "./types.js";
import {
  completeUpdate,
  describeFirstIssue,
  isUpdateOperation,
  modifiersSchema,
  rejectUpdate as reject,
  unsafeNumericId,
  unwrapUpdates,
} from "./updates.js";

/**
 * POST /v1/groups → /groups updates (reference/mixpanel-api.md §6): `$group_key` (which must
 * already exist in the project's settings) and `$group_id`, one operation. Mixpanel does not
 * support `$add` or `$append` on groups, so those are refused here with that reason rather
 * than failing later at Mixpanel. `$ip: "0"` by default like profiles; `$token` is dropped
 * (the forwarder adds it). `property_mapping` is for profiles only and is not applied.
 */
export const UNSUPPORTED_GROUP_OPERATIONS = new Set(["$add", "$append"]);

const groupUpdateSchema = modifiersSchema.extend({
  $group_key: z.string().trim().min(1, "must not be empty"),
  $group_id: z.union([z.string().trim().min(1, "must not be empty"), z.number()]),
});

const GROUP_FIELDS = new Set([...Object.keys(groupUpdateSchema.shape), "$token"]);

export function mapGroupUpdate(item: unknown, index: number, _ctx: MapContext): MappedItem {
  // Before any zod parse: z.record would drop a "__proto__" key, at the top level (skipping the
  // unknown_field check) or inside an operation (turning `$set: {"__proto__": …}` into `{}`).
  const protoKey = rejectProtoKey(item, index);
  if (protoKey) return protoKey;
  const raw = z.record(z.string(), z.unknown()).safeParse(item);
  if (!raw.success || Array.isArray(item)) return reject(index, item, "invalid_shape", "a group update must be an object");
  const unsupported = Object.keys(raw.data).find((key) => UNSUPPORTED_GROUP_OPERATIONS.has(key));
  if (unsupported !== undefined) {
    return reject(index, item, "unsupported_group_operation", `${unsupported} is not supported on group profiles by Mixpanel's /groups API`);
  }
  const unknownField = Object.keys(raw.data).find((key) => !GROUP_FIELDS.has(key) && !isUpdateOperation(key));
  if (unknownField !== undefined) {
    return reject(index, item, "unknown_field", `${unknownField} is not a /groups field; properties go inside an operation such as $set`);
  }
  const unsafeId = unsafeNumericId("$group_id", raw.data.$group_id);
  if (unsafeId !== undefined) return reject(index, item, "invalid_group_id", unsafeId);
  const parsed = groupUpdateSchema.safeParse(raw.data);
  if (!parsed.success) return reject(index, item, "invalid_shape", describeFirstIssue(parsed.error));
  const { $group_key, $group_id, ...modifiers } = parsed.data;
  return completeUpdate(index, item, raw.data, { $group_key, $group_id, $ip: "0", ...modifiers }, "group", {});
}

export function mapGroupUpdates(body: unknown, ctx: MapContext): MappedItem[] {
  return unwrapUpdates(body, "/v1/groups").map((item, index) => mapGroupUpdate(item, index, ctx));
}
