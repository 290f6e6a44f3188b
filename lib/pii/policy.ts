import { createHmac } from "node:crypto";
import { ConfigError } from "../util/errors.js";
import type { RecordKind } from "../records/envelope.js";
import { setOwn } from "../util/renames.js";
import { type PiiAction, type PiiConfig, needsHashKey } from "../config/pii.js";
import { parseJson, parseJsonOrThrow } from "../util/json.js";
import { SOURCE_PROPERTY_PREFIXES } from "../vocabulary/braze-property-prefixes.js";

/**
 * Personal-data controls applied at the edge (docs/pii.md). Pure: the key comes in.
 * A rule names a property; it applies wherever a property of that name appears, at any depth:
 * - `hash`: HMAC-SHA256 hex of the value (strings as they are, numbers and booleans as their
 *   text, each item of a list on its own, an object as its canonical JSON); null stays null;
 * - `drop`: the property is removed.
 */
export interface PiiPolicy {
  readonly rules: ReadonlyMap<string, PiiAction>;
  /** Raw input names that map to a rule's (Mixpanel) name: property_mapping. */
  readonly inputAliases: readonly ((name: string) => string)[];
  /** The names the input aliases map to a ruled name; unset = unknown (JSON text is then always parsed to be checked). */
  readonly aliasedNames?: readonly string[];
  /** Prefixes the relay's mappers put before a sender's names (Braze's, lib/vocabulary): a rule on a name covers it under each. */
  readonly sourcePrefixes: readonly string[];
  readonly hash: (text: string) => string;
}

export function createPiiPolicy(
  config: PiiConfig | undefined,
  key: string | undefined,
  inputAliases: readonly ((name: string) => string)[] = [],
  aliasedNames?: readonly string[],
): PiiPolicy | undefined {
  if (config === undefined || Object.keys(config.properties).length === 0) return undefined;
  if (needsHashKey(config) && (key === undefined || key.length < 32)) {
    throw new ConfigError("pii: hashing needs a key of at least 32 characters (pii.hash_key_secret, or PII_HASH_KEY locally)");
  }
  return {
    rules: new Map(Object.entries(config.properties)),
    inputAliases,
    ...(aliasedNames !== undefined ? { aliasedNames } : {}),
    sourcePrefixes: SOURCE_PROPERTY_PREFIXES,
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

/** When two rules reach one value (a prefixed name and its alias, two segments of an Adobe key), dropping wins. */
function strictest(a: PiiAction | undefined, b: PiiAction | undefined): PiiAction | undefined {
  return a === "drop" || b === "drop" ? "drop" : (a ?? b);
}

/**
 * The rule a property name falls under, the one decision every copy shares (accepted records,
 * the Brevo queue built from them, rejected payloads, cohort members): the name as it is, the
 * name without a source prefix the relay adds (`[Custom event property] email` is `email`) or
 * with one (a rule on the prefixed name covers the name as sent), and each of those under the
 * input aliases (a name property_mapping renames to a ruled one). The strictest rule wins.
 */
export function ruleFor(name: string, policy: PiiPolicy): PiiAction | undefined {
  let action = ruleForBareName(name, policy);
  // Every source prefix starts with "[": one character test keeps ordinary names on the fast path.
  if (name.charCodeAt(0) === 0x5b) {
    for (const prefix of policy.sourcePrefixes) {
      if (name.startsWith(prefix)) action = strictest(action, ruleForBareName(name.slice(prefix.length), policy));
    }
  }
  return action;
}

function ruleForBareName(name: string, policy: PiiPolicy): PiiAction | undefined {
  const effective = effectiveRules(policy);
  let action = effective.get(name);
  if (policy.aliasedNames === undefined) {
    for (const alias of policy.inputAliases) action = strictest(action, effective.get(alias(name)));
  }
  return action;
}

const effectiveByPolicy = new WeakMap<PiiPolicy, ReadonlyMap<string, PiiAction>>();

/**
 * The rules as one map from every name they cover to the strictest action, built once per
 * policy (the lookup runs for every property of every record): each rule's name, the bare name
 * of a rule written with a source prefix, and each name the input aliases map to a covered one.
 */
function effectiveRules(policy: PiiPolicy): ReadonlyMap<string, PiiAction> {
  const cached = effectiveByPolicy.get(policy);
  if (cached !== undefined) return cached;
  const effective = new Map<string, PiiAction>();
  const add = (name: string, action: PiiAction | undefined) => {
    const merged = strictest(effective.get(name), action);
    if (merged !== undefined) effective.set(name, merged);
  };
  for (const [name, action] of policy.rules) {
    add(name, action);
    for (const prefix of policy.sourcePrefixes) if (name.startsWith(prefix)) add(name.slice(prefix.length), action);
  }
  const direct = new Map(effective);
  for (const name of policy.aliasedNames ?? []) {
    for (const alias of policy.inputAliases) add(name, direct.get(alias(name)));
  }
  effectiveByPolicy.set(policy, effective);
  return effective;
}

/** Whether any rule touched the value being copied, so untouched JSON text is kept byte for byte. */
interface ScrubState {
  changed: boolean;
  /** The scalar values a rule hashed or dropped, as text, so a rejection's reason can be kept from quoting them. */
  readonly removedTexts?: string[];
}

/** Enough for any reason the mappers write (they quote one id); a hostile payload cannot grow it. */
const MAX_REMEMBERED_TEXTS = 256;

function remember(state: ScrubState, value: unknown): void {
  const texts = state.removedTexts;
  if (texts === undefined || texts.length >= MAX_REMEMBERED_TEXTS) return;
  if (typeof value === "string" || typeof value === "number") texts.push(String(value));
  else if (Array.isArray(value)) for (const item of value) remember(state, item);
}

/**
 * Copies a JSON value with every rule applied at any depth: properties by name (ruleFor),
 * `{key, value}` rows by their key, JSON text inside strings. Past MAX_DEPTH the rest is
 * replaced by a note rather than copied unchecked.
 */
function protectValue(value: unknown, policy: PiiPolicy, depth: number, state: ScrubState): unknown {
  if (depth > MAX_DEPTH) {
    state.changed = true;
    return TOO_DEEP_TO_CHECK;
  }
  if (typeof value === "string") return scrubJsonText(value, policy, depth, state);
  if (Array.isArray(value)) return value.map((item) => protectValue(item, policy, depth + 1, state));
  if (value === null || typeof value !== "object") return value;
  const copy: Record<string, unknown> = {};
  const rowAction = keyValueRowRule(value, policy);
  for (const [name, inner] of Object.entries(value)) {
    const action = name === "value" && rowAction !== undefined ? strictest(rowAction, ruleFor(name, policy)) : ruleFor(name, policy);
    if (action !== undefined) {
      state.changed = true;
      remember(state, inner);
    }
    if (action === "drop") continue;
    const next = action === "hash" ? hashValue(inner, policy, depth + 1) : protectValue(inner, policy, depth + 1, state);
    setOwn(copy, name, next);
  }
  return copy;
}

/**
 * Adobe's extension sends properties as `{key, value}` rows whose `key` is a dotted / `[n]`
 * path (`user.email`, `list[1].phone`): the mapper turns it into nested objects, where a rule on
 * any segment reaches the value, so a rule on any named segment applies to the row's `value`.
 */
function keyValueRowRule(value: object, policy: PiiPolicy): PiiAction | undefined {
  if (!("key" in value) || !("value" in value) || typeof value.key !== "string") return undefined;
  let action = ruleFor(value.key, policy);
  for (const segment of value.key.split(/[.[\]]/)) {
    if (segment !== "" && !/^\d+$/.test(segment)) action = strictest(action, ruleFor(segment, policy));
  }
  return action;
}

/**
 * JSON text inside a string (a sender's serialized object, Braze Avro `properties`, Adobe
 * `custom_properties` text) is checked with the same rules. Text no rule touches is kept exactly
 * as sent; text a rule touched is written back as compact JSON.
 */
function scrubJsonText(text: string, policy: PiiPolicy, depth: number, state: ScrubState): string {
  const trimmed = text.trim();
  if (!trimmed.startsWith("{") && !trimmed.startsWith("[")) return text;
  if (!mayHoldRuledName(trimmed, policy)) return text;
  // A string's text is not part of the body's nesting check: it is measured before it is parsed.
  if (nestingDepthExceeds(trimmed, MAX_DEPTH - depth)) {
    state.changed = true;
    return TOO_DEEP_TO_CHECK;
  }
  const json = parseJson(trimmed);
  if (!json.ok) return text;
  const inner: ScrubState = { changed: false, ...(state.removedTexts !== undefined ? { removedTexts: state.removedTexts } : {}) };
  const scrubbed = protectValue(json.value, policy, depth + 1, inner);
  if (!inner.changed) return text;
  state.changed = true;
  return JSON.stringify(scrubbed);
}

/**
 * Whether a ruled property could be named in the text: a rule's name (without its source
 * prefix), a name an alias maps to one, or any JSON escape (`\\u0065mail` is `email`). Text with
 * none of them is left as it is without being parsed.
 */
function mayHoldRuledName(text: string, policy: PiiPolicy): boolean {
  if (policy.inputAliases.length > 0 && policy.aliasedNames === undefined) return true;
  if (text.includes("\\")) return true;
  for (const name of ruledNeedles(policy)) if (text.includes(name)) return true;
  return false;
}

const needlesByPolicy = new WeakMap<PiiPolicy, readonly string[]>();
function ruledNeedles(policy: PiiPolicy): readonly string[] {
  const cached = needlesByPolicy.get(policy);
  if (cached !== undefined) return cached;
  const needles = new Set<string>(policy.aliasedNames ?? []);
  for (const name of policy.rules.keys()) {
    const prefix = policy.sourcePrefixes.find((candidate) => name.startsWith(candidate));
    needles.add(prefix !== undefined ? name.slice(prefix.length) : name);
  }
  const list = [...needles];
  needlesByPolicy.set(policy, list);
  return list;
}

/** Whether brackets outside strings nest deeper than `limit`, in one pass without building anything. */
function nestingDepthExceeds(text: string, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (inString) {
      if (code === 0x5c) i++;
      else if (code === 0x22) inString = false;
    } else if (code === 0x22) inString = true;
    else if (code === 0x5b || code === 0x7b) {
      if (++depth > limit) return true;
    } else if (code === 0x5d || code === 0x7d) depth--;
  }
  return false;
}

/** A Mixpanel property object (event properties, a cohort member's `$properties`) with the rules applied. */
export function protectProperties(properties: Record<string, unknown>, policy: PiiPolicy): Record<string, unknown> {
  const protectedValue = protectValue(properties, policy, 0, { changed: false });
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
      next = Object.fromEntries(Object.entries(value).filter(([name]) => ruleFor(name, policy) === undefined));
    } else if ((field === "$distinct_id" || field === "$group_id") && policy.rules.get(field) === "hash") {
      next = hashValue(value, policy, 0);
    }
    setOwn(result, field, next);
  }
  return result;
}

/** protectRecord on a serialized record line; answers the line to queue. */
export function protectLine(kind: RecordKind, line: string, policy: PiiPolicy): string {
  const parsed = parseJsonOrThrow(line, (reason) => new Error(`mapped record line is not JSON: ${reason}`));
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) return line;
  return JSON.stringify(protectRecord(kind, { ...parsed }, policy));
}

/**
 * A raw input item (what a sender sent, kept in the rejected store) with the same rules as an
 * accepted record: the one scrubber (protectValue) with names matched as sent, under the
 * relay's source prefixes and input aliases, `{key, value}` rows by their key, JSON text inside strings.
 */
export function scrubPayload(payload: unknown, policy: PiiPolicy): unknown {
  return protectValue(payload, policy, 0, { changed: false });
}

/**
 * A rejected item's payload scrubbed, and its reason with every value a rule removed from the
 * payload replaced by `[removed]` (reasons quote an id that could not be used, for one).
 */
export function scrubRejection(payload: unknown, reason: string, policy: PiiPolicy): { payload: unknown; reason: string } {
  const removedTexts: string[] = [];
  const scrubbed = protectValue(payload, policy, 0, { changed: false, removedTexts });
  let safeReason = reason;
  for (const text of removedTexts.sort((a, b) => b.length - a.length)) {
    if (text.length > 0) safeReason = safeReason.split(text).join("[removed]");
  }
  return { payload: scrubbed, reason: safeReason };
}
