import * as z from "../util/zod.js";
import type { MapContext, MappedItem } from "./types.js";
import { completeUpdate, modifiersSchema, parseUpdate, rejectUpdate as reject, unwrapUpdates } from "./updates.js";

/**
 * POST /v1/groups → /groups updates (docs/vendors/mixpanel-api.md §6): `$group_key` (which must
 * already exist in the project's settings) and `$group_id`, one operation. Mixpanel does not
 * support `$add` or `$append` on groups, so those are refused here with that reason rather
 * than failing later at Mixpanel. `$ip: "0"` by default like profiles; `$token` is dropped
 * (the forwarder adds it). `property_mapping` is for profiles only and is not applied.
 */
export const UNSUPPORTED_GROUP_OPERATIONS = new Set(["$add", "$append"]);

const groupUpdateSchema = z.extend(modifiersSchema, {
  $group_key: z.string().check(z.trim(), z.minLength(1, "must not be empty")),
  $group_id: z.union([z.string().check(z.trim(), z.minLength(1, "must not be empty")), z.number()]),
});

const GROUP_FIELDS = new Set([...Object.keys(groupUpdateSchema.shape), "$token"]);

export function mapGroupUpdate(item: unknown, index: number, _ctx: MapContext): MappedItem {
  const update = parseUpdate(item, index, {
    what: "group",
    endpoint: "/groups",
    schema: groupUpdateSchema,
    knownFields: GROUP_FIELDS,
    id: { field: "$group_id", code: "invalid_group_id" },
    refuse: (fields) => {
      const unsupported = Object.keys(fields).find((key) => UNSUPPORTED_GROUP_OPERATIONS.has(key));
      return unsupported === undefined
        ? undefined
        : reject(index, item, "unsupported_group_operation", `${unsupported} is not supported on group profiles by Mixpanel's /groups API`);
    },
  });
  if (!update.ok) return update;
  const { $group_key, $group_id, ...modifiers } = update.data;
  return completeUpdate(index, item, update.fields, { $group_key, $group_id, $ip: "0", ...modifiers }, "group", {});
}

export function mapGroupUpdates(body: unknown, ctx: MapContext): MappedItem[] {
  return unwrapUpdates(body, "/v1/groups").map((item, index) => mapGroupUpdate(item, index, ctx));
}
