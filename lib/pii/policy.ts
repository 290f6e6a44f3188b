import { createHmac } from "node:crypto";
import { ConfigError } from "../errors.js";
import type { RecordKind } from "../records/envelope.js";
import { setOwn } from "../sources/renames.js";
import { type PiiAction, type PiiConfig, needsHashKey } from "../config/pii.js";
import { parseJson } from "../util/json.js";

/**
 * Personal-data controls applied at the edge (README "Personal data"). Pure: the key comes in.
 * A rule names a property; it applies wherever a property of that name appears, at any depth:
 * - `hash`: HMAC-SHA256 hex of the value (strings as they are, numbers and booleans as their
 *   text, each item of a list on its own, an object as its canonical JSON); null stays null;
 * - `drop`: the property is removed.
 */
export interface PiiPolicy {
  readonly rules: ReadonlyMap<string, PiiAction>;
  /** Raw input names that map to a rule's (Mixpanel) name: property_mapping and Braze's prefixes. */
  readonly inputAliases: readonly ((name: string) => string)[];
  readonly hash: (text: string) => string;
}

export function createPiiPolicy(
  config: PiiConfig | undefined,
  key: string | undefined,
  inputAliases: readonly ((name: string) => string)[] = [],
): PiiPolicy | undefined {
  if (config === undefined || Object.keys(config.properties).length === 0) return undefined;
  if (needsHashKey(config) && (key === undefined || key.length < 32)) {
    throw new ConfigError("pii: hashing needs a key of at least 32 characters (pii.hash_key_secret, or PII_HASH_KEY locally)");
  }
  return {
    rules: new Map(Object.entries(config.properties)),
    inputAliases,
    hash: (text) => createHmac("sha256", key ?? "").update(text, "utf8").digest("hex"),
  };
}

/** Deeper than any record the mappers let through (16 levels); raw rejected payloads can be deeper. */
const MAX_DEPTH = 40;
const TOO_DEEP_TO_CHECK = "[removed: nested too deeply to check for personal data]";

function canonical(value: unknown, depth: number): string {
  if (depth > MAX_DEPTH) return JSON.stringify(TOO_DEEP_TO_CHECK);
  if (Array.isArray(value)) return `[${value.map((item) => canonical(item, depth + 1)).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value)
      .filter(([, inner]) => inner !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, inner]) => `${JSON.stringify(k)}:${canonical(inner, depth + 1)}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "null";
}

function hashValue(value: unknown, policy: PiiPolicy, depth: number): unknown {
  if (value === null || value === undefined) return value;
  if (typeof value === "string") return policy.hash(value);
  if (typeof value === "number" || typeof value === "boolean") return policy.hash(String(value));
  if (Array.isArray(value)) return depth > MAX_DEPTH ? TOO_DEEP_TO_CHECK : value.map((item) => hashValue(item, policy, depth + 1));
  return policy.hash(canonical(value, depth));
}

type RuleLookup = (name: string) => PiiAction | undefined;

/**
 * Copies a JSON value with every rule applied at any depth. `lookup` says which rule a property
 * name falls under. Past MAX_DEPTH the rest is replaced by a note rather than copied unchecked.
 */
function protectValue(value: unknown, policy: PiiPolicy, lookup: RuleLookup, depth: number, scrubText: boolean): unknown {
  if (depth > MAX_DEPTH) return TOO_DEEP_TO_CHECK;
  if (typeof value === "string") return scrubText ? scrubJsonText(value, policy, depth) : value;
  if (Array.isArray(value)) return value.map((item) => protectValue(item, policy, lookup, depth + 1, scrubText));
  if (value === null || typeof value !== "object") return value;
  const copy: Record<string, unknown> = {};
  const row = scrubText ? keyValueRowName(value) : undefined;
  for (const [name, inner] of Object.entries(value)) {
    const action = lookup(name) ?? (row !== undefined && name === "value" ? lookup(row) : undefined);
    if (action === "drop") continue;
    const next = action === "hash" ? hashValue(inner, policy, depth + 1) : protectValue(inner, policy, lookup, depth + 1, scrubText);
    setOwn(copy, name, next);
  }
  return copy;
}

/** Adobe's extension sends properties as `{key, value}` rows; `key` may be a dotted path (its first segment is the property). */
function keyValueRowName(value: object): string | undefined {
  if (!("key" in value) || !("value" in value) || typeof value.key !== "string") return undefined;
  return value.key.split(/[.[]/)[0];
}

/** JSON text inside a raw payload (Braze Avro `properties`, Adobe `custom_properties` text) is checked too. */
function scrubJsonText(text: string, policy: PiiPolicy, depth: number): string {
  const trimmed = text.trim();
  if (!trimmed.startsWith("{") && !trimmed.startsWith("[")) return text;
  const json = parseJson(trimmed);
  if (!json.ok) return text;
  return JSON.stringify(protectValue(json.value, policy, inputLookup(policy), depth + 1, true));
}

const exactLookup =
  (policy: PiiPolicy): RuleLookup =>
  (name) =>
    policy.rules.get(name);

function inputLookup(policy: PiiPolicy): RuleLookup {
  return (name) => {
    const direct = policy.rules.get(name);
    if (direct !== undefined) return direct;
    for (const alias of policy.inputAliases) {
      const action = policy.rules.get(alias(name));
      if (action !== undefined) return action;
    }
    return undefined;
  };
}

/** A Mixpanel property object (event properties, a cohort member's `$properties`) with the rules applied. */
export function protectProperties(properties: Record<string, unknown>, policy: PiiPolicy): Record<string, unknown> {
  const protectedValue = protectValue(properties, policy, exactLookup(policy), 0, false);
  return protectedValue !== null && typeof protectedValue === "object" && !Array.isArray(protectedValue) ? { ...protectedValue } : {};
}

/** Operations whose object values are property → value (docs/vendors/mixpanel-api.md §6). */
const PROPERTY_OPERATIONS = new Set(["$set", "$set_once", "$union", "$append", "$remove"]);

/**
 * A mapped Mixpanel record with the rules applied: an /import event's properties, or an
 * /engage or /groups update's operation values. `$add` drops a ruled property (a hash cannot be
 * summed); `$unset` names and `$delete` carry no values and stay as they are; `$distinct_id`
 * and `$group_id` are hashed when a rule of that name says so.
 */
export function protectRecord(kind: RecordKind, record: Record<string, unknown>, policy: PiiPolicy): Record<string, unknown> {
  if (kind === "event") {
    const properties = record.properties;
    if (properties === null || typeof properties !== "object" || Array.isArray(properties)) return record;
    return { ...record, properties: protectProperties({ ...properties }, policy) };
  }
  const result: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(record)) {
    let next = value;
    if (PROPERTY_OPERATIONS.has(field) && value !== null && typeof value === "object" && !Array.isArray(value)) {
      next = protectProperties({ ...value }, policy);
    } else if (field === "$add" && value !== null && typeof value === "object" && !Array.isArray(value)) {
      next = Object.fromEntries(Object.entries(value).filter(([name]) => !policy.rules.has(name)));
    } else if ((field === "$distinct_id" || field === "$group_id") && policy.rules.get(field) === "hash") {
      next = hashValue(value, policy, 0);
    }
    setOwn(result, field, next);
  }
  return result;
}

/** protectRecord on a serialized record line; answers the line to queue. */
export function protectLine(kind: RecordKind, line: string, policy: PiiPolicy): string {
  const parsed: unknown = JSON.parse(line);
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) return line;
  return JSON.stringify(protectRecord(kind, { ...parsed }, policy));
}

/**
 * A raw input item (what a sender sent, kept in the rejected store) with the rules applied as
 * far as its shape can be known: names are matched as sent and under the names the mappers give
 * them (property_mapping, Braze's prefixes), `{key, value}` rows by their key, and JSON text
 * inside strings is checked too.
 */
export function scrubPayload(payload: unknown, policy: PiiPolicy): unknown {
  return protectValue(payload, policy, inputLookup(policy), 0, true);
}
