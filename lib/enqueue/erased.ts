import type { BrevoConfig } from "../config/brevo.js";
import { idDigest } from "../privacy/suppression.js";

/**
 * Which records belong to erased people (lib/privacy/suppression.ts): the edges drop them before
 * anything is queued or stored, because Mixpanel's deletion does not stop future collection — a
 * late SDK event would create the person again (docs/vendors/mixpanel-api.md "GDPR deletion").
 *
 * A record is erased when any of these keys, at any depth of the record, holds a value whose
 * SHA-256 is on the list: the Mixpanel ids (`distinct_id`, `$distinct_id`, `$user_id`,
 * `$device_id`, a group's `$group_id`, Braze's `external_user_id` in a rejected payload) and the
 * properties the stage's Brevo connector reads its identifiers from (`brevo.identifiers`; email
 * values compared lower-cased, as gdpr:delete lists them and Brevo matches them).
 *
 * The records are already serialized (`line`), so the keys are found by one regex pass instead of
 * a second JSON.parse per record: in JSON text a `"name":` with unescaped quotes can only be a
 * key, never part of a string value. Each distinct value is hashed once per batch.
 */
const MIXPANEL_ID_KEYS = ["distinct_id", "$distinct_id", "$user_id", "$device_id", "$group_id", "external_user_id"];

export interface ErasedMatcher {
  /** True when the serialized record names an erased person. */
  readonly isErased: (json: string) => boolean;
}

interface KeyPlan {
  readonly pattern: RegExp;
  readonly emailKeys: ReadonlySet<string>;
}

const plans = new WeakMap<object, KeyPlan>();
const NO_BREVO = {};

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

function keyPlan(brevo: BrevoConfig | undefined): KeyPlan {
  const cacheKey = brevo ?? NO_BREVO;
  const known = plans.get(cacheKey);
  if (known) return known;
  const keys = new Set(MIXPANEL_ID_KEYS);
  const emailKeys = new Set<string>();
  for (const [type, source] of Object.entries(brevo?.identifiers ?? {})) {
    if (typeof source !== "string") continue;
    keys.add(source);
    if (type === "email_id") emailKeys.add(source);
  }
  // JSON.stringify writes key names with JSON escapes; names the relay matches never need one.
  const alternatives = [...keys].map((key) => escapeRegExp(JSON.stringify(key).slice(1, -1))).join("|");
  const plan = { pattern: new RegExp(`"(${alternatives})":`, "g"), emailKeys };
  plans.set(cacheKey, plan);
  return plan;
}

const NUMBER_CHARS = new Set([..."0123456789eE+-."].map((char) => char.charCodeAt(0)));

/** The scalar JSON value starting at `start`, as text (a string's content or a number), or undefined. */
function valueAt(json: string, start: number): string | undefined {
  const first = json.charCodeAt(start);
  if (first === 0x22 /* " */) {
    let end = start + 1;
    let escaped = false;
    while (end < json.length) {
      const code = json.charCodeAt(end);
      if (code === 0x5c /* \ */) {
        escaped = true;
        end += 2;
        continue;
      }
      if (code === 0x22) break;
      end++;
    }
    if (end >= json.length) return undefined;
    if (!escaped) return json.slice(start + 1, end);
    try {
      return JSON.parse(json.slice(start, end + 1)) as string;
    } catch {
      return undefined;
    }
  }
  if (first === 0x2d /* - */ || (first >= 0x30 && first <= 0x39)) {
    let end = start + 1;
    while (end < json.length && NUMBER_CHARS.has(json.charCodeAt(end))) end++;
    return json.slice(start, end);
  }
  return undefined;
}

/**
 * A matcher for one batch against the digests on the list, or undefined when the list is empty
 * (then no record is even scanned).
 */
export function erasedMatcher(digests: ReadonlySet<string> | undefined, brevo: BrevoConfig | undefined): ErasedMatcher | undefined {
  if (digests === undefined || digests.size === 0) return undefined;
  const { pattern, emailKeys } = keyPlan(brevo);
  const seen = new Map<string, boolean>();
  const listed = (value: string): boolean => {
    let erased = seen.get(value);
    if (erased === undefined) {
      erased = digests.has(idDigest(value));
      seen.set(value, erased);
    }
    return erased;
  };
  return {
    isErased(json) {
      pattern.lastIndex = 0;
      for (let match = pattern.exec(json); match !== null; match = pattern.exec(json)) {
        const value = valueAt(json, pattern.lastIndex);
        if (value === undefined || value === "") continue;
        if (listed(value)) return true;
        if (emailKeys.has(match[1] ?? "") && listed(value.trim().toLowerCase())) return true;
      }
      return false;
    },
  };
}
