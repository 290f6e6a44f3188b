import * as z from "zod";
import { isBannedId } from "../mixpanel/event-rules.js";
import { rejectProtoKey } from "./property-names.js";
import type { MapContext, MappedItem, RejectedItem } from "./types.js";
import {
  findOperation,
  isUpdateOperation,
  modifiersSchema,
  normalizeOperation,
  serializeUpdate,
  unsafeNumericId,
  unwrapUpdates,
} from "./updates.js";

/**
 * POST /v1/profiles → /engage updates (reference/mixpanel-api.md §6, §10): every /engage
 * operation, one per update; `property_mapping` renames the profile property names;
 * `$ip: "0"` unless the sender set `$ip`, so profiles are not geolocated to the Lambda's
 * region (§5). A sent `$token` is dropped: the forwarder adds the project's own.
 */
const profileUpdateSchema = modifiersSchema.extend({
  $distinct_id: z.union([z.string(), z.number()]).transform(String).pipe(z.string().trim().min(1, "must not be empty")),
  $ignore_alias: z.boolean().optional(),
});

const PROFILE_FIELDS = new Set([...Object.keys(profileUpdateSchema.shape), "$token"]);

function reject(index: number, payload: unknown, code: string, reason: string): RejectedItem {
  return { ok: false, index, code, reason, payload };
}

export function mapProfileUpdate(item: unknown, index: number, ctx: MapContext): MappedItem {
  // Before any zod parse: z.record would drop a "__proto__" key, at the top level (skipping the
  // unknown_field check) or inside an operation (turning `$set: {"__proto__": …}` into `{}`).
  const protoKey = rejectProtoKey(item, index);
  if (protoKey) return protoKey;
  const raw = z.record(z.string(), z.unknown()).safeParse(item);
  if (!raw.success || Array.isArray(item)) return reject(index, item, "invalid_shape", "a profile update must be an object");
  const unknownField = Object.keys(raw.data).find((key) => !PROFILE_FIELDS.has(key) && !isUpdateOperation(key));
  if (unknownField !== undefined) {
    return reject(index, item, "unknown_field", `${unknownField} is not an /engage field; properties go inside an operation such as $set`);
  }
  const unsafeId = unsafeNumericId("$distinct_id", raw.data.$distinct_id);
  if (unsafeId !== undefined) return reject(index, item, "invalid_distinct_id", unsafeId);
  const parsed = profileUpdateSchema.safeParse(raw.data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return reject(index, item, "invalid_shape", `${issue?.path.join(".") || "(update)"}: ${issue?.message ?? "invalid"}`);
  }
  const { $distinct_id, ...modifiers } = parsed.data;
  if (isBannedId($distinct_id)) return reject(index, item, "banned_distinct_id", `$distinct_id "${$distinct_id}" is a placeholder Mixpanel refuses`);

  const found = findOperation(raw.data);
  if (!found.ok) return reject(index, item, "invalid_operation", found.reason);
  const operation = normalizeOperation(found.op, raw.data[found.op], ctx.config.property_mapping);
  if (!operation.ok) return reject(index, item, operation.code, operation.reason);

  const serialized = serializeUpdate({ $distinct_id, $ip: "0", ...modifiers, [found.op]: operation.value });
  if (!serialized.ok) return reject(index, item, serialized.code, serialized.reason);
  return { ok: true, index, kind: "profile", line: serialized.line };
}

export function mapProfileUpdates(body: unknown, ctx: MapContext): MappedItem[] {
  return unwrapUpdates(body, "/v1/profiles").map((item, index) => mapProfileUpdate(item, index, ctx));
}
