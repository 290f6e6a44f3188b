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
 * The records are already serialized (`line`), so the keys are found by string search instead of
 * a second JSON.parse per record (a tenth of its cost): in JSON text a `name":` with an unescaped
 * quote can only end a key, never sit inside a string value. Each distinct value is hashed at most
 * once per batch (and once per container while the list is unchanged); an empty list costs nothing.
 */
const MIXPANEL_ID_KEYS = ["distinct_id", "$distinct_id", "$user_id", "$device_id", "$group_id", "external_user_id"];

export interface ErasedMatcher {
  /** True when the serialized record names an erased person. */
  readonly isErased: (json: string) => boolean;
}

interface KeyPlan {
  /** Key names ending in `_id`: found by one search for `_id":`, then compared in place. */
  readonly idKeys: readonly string[];
  /** Other key names, each searched as `"name":`. */
  readonly otherKeys: readonly string[];
  readonly emailKeys: ReadonlySet<string>;
}

const plans = new WeakMap<object, KeyPlan>();
const NO_BREVO = {};
const ID_SUFFIX = '_id":';
const QUOTE = 0x22;
const OPEN_BRACE = 0x7b;
const COMMA = 0x2c;

function keyPlan(brevo: BrevoConfig | undefined): KeyPlan {
  const cacheKey = brevo ?? NO_BREVO;
  const known = plans.get(cacheKey);
  if (known) return known;
  const keys = new Set(MIXPANEL_ID_KEYS);
  const emailKeys = new Set<string>();
  for (const [type, source] of Object.entries(brevo?.identifiers ?? {})) {
    if (typeof source !== "string") continue;
    // As JSON.stringify writes the name in the record.
    const written = JSON.stringify(source).slice(1, -1);
    keys.add(written);
    if (type === "email_id") emailKeys.add(written);
  }
  const idKeys = [...keys].filter((key) => key.endsWith("_id") && !key.includes('"'));
  const otherKeys = [...keys].filter((key) => !idKeys.includes(key)).map((key) => `"${key}":`);
  const plan = { idKeys, otherKeys, emailKeys };
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
 * Answers per value, kept for as long as the container holds the same list (the cached list is one
 * Set until its next read), so the ids a container sees again and again are hashed once, not once
 * per request; bounded, and cleared when full.
 */
const MAX_REMEMBERED_ANSWERS = 50_000;
const answersByList = new WeakMap<ReadonlySet<string>, Map<string, boolean>>();
function answersFor(digests: ReadonlySet<string>): Map<string, boolean> {
  let answers = answersByList.get(digests);
  if (answers === undefined) {
    answers = new Map();
    answersByList.set(digests, answers);
  }
  return answers;
}

/**
 * A matcher for one batch against the digests on the list, or undefined when the list is empty
 * (then no record is even scanned).
 */
export function erasedMatcher(digests: ReadonlySet<string> | undefined, brevo: BrevoConfig | undefined): ErasedMatcher | undefined {
  if (digests === undefined || digests.size === 0) return undefined;
  const { idKeys, otherKeys, emailKeys } = keyPlan(brevo);
  const answers = answersFor(digests);
  const listed = (value: string): boolean => {
    let erased = answers.get(value);
    if (erased === undefined) {
      erased = digests.has(idDigest(value));
      if (answers.size >= MAX_REMEMBERED_ANSWERS) answers.clear();
      answers.set(value, erased);
    }
    return erased;
  };
  const valueListed = (key: string, json: string, at: number): boolean => {
    const value = valueAt(json, at);
    if (value === undefined || value === "") return false;
    return listed(value) || (emailKeys.has(key) && listed(value.trim().toLowerCase()));
  };
  return {
    isErased(json) {
      // `_id":` (unescaped quote) only ever ends a key. The records are JSON.stringify's text, so a key
      // starts right after `{` or `,`: each wanted key of the right length is compared where it would
      // start, without cutting the key out (records from Braze or Adobe hold many `*_id` keys).
      for (let at = json.indexOf(ID_SUFFIX); at !== -1; at = json.indexOf(ID_SUFFIX, at + ID_SUFFIX.length)) {
        for (let k = 0; k < idKeys.length; k++) {
          const key = idKeys[k] as string;
          const start = at + 3 - key.length;
          if (start < 2 || json.charCodeAt(start - 1) !== QUOTE) continue;
          const before = json.charCodeAt(start - 2);
          if ((before === OPEN_BRACE || before === COMMA) && json.startsWith(key, start) && valueListed(key, json, at + ID_SUFFIX.length)) return true;
        }
      }
      for (const needle of otherKeys) {
        for (let at = json.indexOf(needle); at !== -1; at = json.indexOf(needle, at + needle.length)) {
          if (valueListed(needle.slice(1, -2), json, at + needle.length)) return true;
        }
      }
      return false;
    },
  };
}
