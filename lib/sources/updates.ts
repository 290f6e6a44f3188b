import * as z from "../util/zod.js";
import { ValidationError } from "../util/errors.js";
import { INVALID_NUMBER, findNonFiniteNumber, nonFiniteReason } from "../mixpanel/event-rules.js";
import { withoutCallerTokens } from "./caller-tokens.js";
import { INVALID_PROPERTY_NAME, findProtoKey, protoKeyReason, rejectProtoKey } from "./property-names.js";
import { rejectTooDeep } from "./nesting.js";
import { renamed, setOwn } from "../util/renames.js";
import type { MappedItem, RejectedItem } from "./types.js";

/**
 * What /engage (profiles) and /groups updates have in common (docs/vendors/mixpanel-api.md §6):
 * one operation per update, a few top-level modifiers, ≤ 2000 properties, ≤ 1 MB each.
 * `$token` is never part of a mapped update: the forwarder injects it when sending.
 */
export const MAX_UPDATE_PROPERTIES = 2000;
export const MAX_UPDATE_BYTES = 1_000_000;

export const ENGAGE_OPERATIONS = ["$set", "$set_once", "$add", "$union", "$append", "$remove", "$unset", "$delete"] as const;
export type UpdateOperation = (typeof ENGAGE_OPERATIONS)[number];

export function isUpdateOperation(key: string): key is UpdateOperation {
  return (ENGAGE_OPERATIONS as readonly string[]).includes(key);
}

/** Top-level modifiers Mixpanel documents next to the operation. */
export const modifiersSchema = z.object({
  $ip: z.optional(z.string().check(z.minLength(1))),
  $ignore_time: z.optional(z.boolean()),
  $latitude: z.optional(z.number().check(z.gte(-90), z.lte(90))),
  $longitude: z.optional(z.number().check(z.gte(-180), z.lte(180))),
});

const propertiesSchema = z.record(z.string(), z.unknown());
const numericPropertiesSchema = z.record(z.string(), z.number().check(z.refine(Number.isFinite, "must be a finite number")));
const listPropertiesSchema = z.record(z.string(), z.array(z.unknown()));
const propertyNamesSchema = z.array(z.string().check(z.minLength(1)));

/**
 * Why a numeric id cannot be used, or undefined when it can. JSON.parse has already rounded an
 * integer beyond 2^53 (12345678901234567890 reads as 12345678901234567000), so sending it, as a
 * number or as its string, would address another profile; a fraction is no id either.
 */
export function unsafeNumericId(field: string, value: unknown): string | undefined {
  if (typeof value !== "number" || Number.isSafeInteger(value)) return undefined;
  return `${field} ${String(value)} is not an integer within ±(2^53-1), so it cannot be relayed exactly; send the id as a string`;
}

export type OperationResult = { ok: true; value: unknown } | { ok: false; code: string; reason: string };

function renameKeys(properties: Record<string, unknown>, mapping: Readonly<Record<string, string>>): Record<string, unknown> {
  const result: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(properties)) setOwn(result, renamed(key, mapping), value);
  return result;
}

/** Validates one operation's value and applies property renames to the property names it touches. */
export function normalizeOperation(op: UpdateOperation, value: unknown, propertyMapping: Readonly<Record<string, string>>): OperationResult {
  const invalid = (reason: string): OperationResult => ({ ok: false, code: "invalid_operation", reason: `${op}: ${reason}` });
  // The zod records below would drop a "__proto__" key, so `$set: {"__proto__": …}` would become `{}`.
  const protoKey = findProtoKey(value, op);
  if (protoKey !== undefined) return { ok: false, code: INVALID_PROPERTY_NAME, reason: protoKeyReason(protoKey) };
  let properties: Record<string, unknown>;
  switch (op) {
    case "$delete":
      // Mixpanel's documented form is `"$delete": ""`; the value carries no meaning.
      return { ok: true, value: "" };
    case "$unset": {
      const names = propertyNamesSchema.safeParse(value);
      if (!names.success) return invalid("must be an array of property names");
      return { ok: true, value: names.data.map((name) => renamed(name, propertyMapping)) };
    }
    case "$add": {
      const parsed = numericPropertiesSchema.safeParse(value);
      if (!parsed.success) return invalid("must be an object of numbers");
      properties = parsed.data;
      break;
    }
    case "$union": {
      const parsed = listPropertiesSchema.safeParse(value);
      if (!parsed.success) return invalid("must be an object of lists");
      properties = parsed.data;
      break;
    }
    default: {
      const parsed = propertiesSchema.safeParse(value);
      if (!parsed.success || Array.isArray(value)) return invalid("must be an object of properties");
      properties = parsed.data;
    }
  }
  const count = Object.keys(properties).length;
  if (count > MAX_UPDATE_PROPERTIES) {
    return { ok: false, code: "too_many_properties", reason: `${op} sets ${count} properties (max ${MAX_UPDATE_PROPERTIES} per profile)` };
  }
  return { ok: true, value: renameKeys(properties, propertyMapping) };
}

/** The single operation of an update, or why there is not exactly one. */
export function findOperation(update: Readonly<Record<string, unknown>>): { ok: true; op: UpdateOperation } | { ok: false; reason: string } {
  const ops = Object.keys(update).filter(isUpdateOperation);
  if (ops.length === 1 && ops[0] !== undefined) return { ok: true, op: ops[0] };
  if (ops.length === 0) return { ok: false, reason: `no operation: use one of ${ENGAGE_OPERATIONS.join(", ")}` };
  return { ok: false, reason: `${ops.join(" and ")} in one update: Mixpanel takes one operation per update, send them as separate updates` };
}

/** Built once per container rather than per request or item (a CPU profile showed the per-item cost). */
const updatesBatchSchema = z.object({ updates: z.array(z.unknown()) });
const updateObjectSchema = z.record(z.string(), z.unknown());

/** `[...]` or `{"updates": [...]}`; anything else is unusable as a whole. */
export function unwrapUpdates(body: unknown, route: string): unknown[] {
  if (Array.isArray(body)) return body;
  const parsed = updatesBatchSchema.safeParse(body);
  if (!parsed.success) throw new ValidationError(`${route} body must be a JSON array of updates or an object {"updates": [...]}`);
  return parsed.data.updates;
}

/** Serializes the update and enforces Mixpanel's 1 MB per-update cap. */
export function serializeUpdate(update: Record<string, unknown>): { ok: true; line: string } | { ok: false; code: string; reason: string } {
  const line = JSON.stringify(update);
  const bytes = Buffer.byteLength(line);
  if (bytes >= MAX_UPDATE_BYTES) return { ok: false, code: "update_too_large", reason: `update is ${bytes} bytes (must be under ${MAX_UPDATE_BYTES})` };
  return { ok: true, line };
}

export function rejectUpdate(index: number, payload: unknown, code: string, reason: string): RejectedItem {
  return { ok: false, index, code, reason, payload };
}

/** The first zod issue of an update, as `path: message`. */
export function describeFirstIssue(error: z.core.$ZodError): string {
  const issue = error.issues[0];
  return `${issue?.path.join(".") || "(update)"}: ${issue?.message ?? "invalid"}`;
}

/**
 * The part every update shares once its identity fields are valid: exactly one
 * operation, normalised (property_mapping applied when given), then serialized with
 * `$ip: "0"` unless a modifier sets it.
 */
export function completeUpdate(
  index: number,
  item: unknown,
  update: Readonly<Record<string, unknown>>,
  head: Readonly<Record<string, unknown>>,
  kind: "profile" | "group",
  propertyMapping: Readonly<Record<string, string>>,
): MappedItem {
  const found = findOperation(update);
  if (!found.ok) return rejectUpdate(index, item, "invalid_operation", found.reason);
  const operation = normalizeOperation(found.op, update[found.op], propertyMapping);
  if (!operation.ok) return rejectUpdate(index, item, operation.code, operation.reason);
  const nonFinite = findNonFiniteNumber(operation.value, found.op);
  if (nonFinite !== undefined) return rejectUpdate(index, item, INVALID_NUMBER, nonFiniteReason(nonFinite));
  // A caller's `token` / `$token` as a property is never forwarded (lib/sources/caller-tokens.ts).
  const isPropertyObject = operation.value !== null && typeof operation.value === "object" && !Array.isArray(operation.value);
  const { properties: value, removed } = isPropertyObject ? withoutCallerTokens(operation.value as Record<string, unknown>) : { properties: operation.value, removed: 0 };
  const serialized = serializeUpdate({ ...head, [found.op]: value });
  if (!serialized.ok) return rejectUpdate(index, item, serialized.code, serialized.reason);
  return { ok: true, index, kind, line: serialized.line, ...(removed > 0 ? { callerTokensRemoved: removed } : {}) };
}

/**
 * The update as an object of fields, or why it is not one. Runs before any zod parse:
 * z.record would drop a "__proto__" key, at the top level (skipping the unknown_field
 * check) or inside an operation (turning `$set: {"__proto__": …}` into `{}`).
 */
export function readUpdateObject(
  item: unknown,
  index: number,
  what: "profile" | "group",
): { ok: true; fields: Record<string, unknown> } | RejectedItem {
  const protoKey = rejectProtoKey(item, index);
  if (protoKey) return protoKey;
  // Before the serializer (JSON.stringify) recurses over the operation's values.
  const tooDeep = rejectTooDeep(item, index, 2);
  if (tooDeep) return tooDeep;
  const raw = updateObjectSchema.safeParse(item);
  if (!raw.success || Array.isArray(item)) return rejectUpdate(index, item, "invalid_shape", `a ${what} update must be an object`);
  return { ok: true, fields: raw.data };
}

/** A top-level key that is neither a known field nor an operation: properties belong inside an operation. */
export function rejectUnknownField(
  index: number,
  item: unknown,
  fields: Readonly<Record<string, unknown>>,
  known: ReadonlySet<string>,
  endpoint: "/engage" | "/groups",
): RejectedItem | undefined {
  const unknownField = Object.keys(fields).find((key) => !known.has(key) && !isUpdateOperation(key));
  if (unknownField === undefined) return undefined;
  const article = endpoint === "/engage" ? "an" : "a";
  return rejectUpdate(index, item, "unknown_field", `${unknownField} is not ${article} ${endpoint} field; properties go inside an operation such as $set`);
}

export interface UpdateSpec<T> {
  readonly what: "profile" | "group";
  readonly endpoint: "/engage" | "/groups";
  readonly schema: z.ZodType<T>;
  /** Top-level fields besides the operations. */
  readonly knownFields: ReadonlySet<string>;
  /** The id field JSON.parse may have rounded, and the code it is refused with. */
  readonly id: { readonly field: string; readonly code: string };
  /** The endpoint's own refusal, checked before unknown fields (e.g. operations /groups lacks). */
  readonly refuse?: (fields: Readonly<Record<string, unknown>>) => RejectedItem | undefined;
}

/**
 * The checks every update endpoint makes, in this order: an object, the endpoint's own
 * refusal, no unknown top-level field, an id JSON.parse kept exact, then the endpoint's schema.
 */
export function parseUpdate<T>(item: unknown, index: number, spec: UpdateSpec<T>): { ok: true; fields: Record<string, unknown>; data: T } | RejectedItem {
  const raw = readUpdateObject(item, index, spec.what);
  if (!raw.ok) return raw;
  const refused = spec.refuse?.(raw.fields);
  if (refused) return refused;
  const unknownField = rejectUnknownField(index, item, raw.fields, spec.knownFields, spec.endpoint);
  if (unknownField) return unknownField;
  const unsafeId = unsafeNumericId(spec.id.field, raw.fields[spec.id.field]);
  if (unsafeId !== undefined) return rejectUpdate(index, item, spec.id.code, unsafeId);
  const parsed = spec.schema.safeParse(raw.fields);
  if (!parsed.success) return rejectUpdate(index, item, "invalid_shape", describeFirstIssue(parsed.error));
  return { ok: true, fields: raw.fields, data: parsed.data };
}
