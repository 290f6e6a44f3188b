import { gzipSync } from "node:zlib";
import fc from "fast-check";
import { MAX_JSON_DEPTH } from "../../lib/util/json.js";
import { deepText } from "./corpus.js";
import { browserUtf8 } from "../support/browser-utf8.js";

/**
 * Requests to the Mixpanel-compatible routes (/track, /engage, /groups, /import) in every
 * encoding an SDK or a sender can use: base64 or JSON `data=` in the query, a form body or
 * sendBeacon's text/plain body; JSON and NDJSON bodies, gzipped or not; mixpanel-browser's
 * surrogate halves (each written as its own 3-byte sequence); declared charsets; bytes that are
 * not UTF-8; nesting past MAX_JSON_DEPTH. Each request says what its answer must be beyond
 * "2xx/4xx with a JSON body": `expect` names the outcome the relay owes it.
 */
export const COMPAT_PATHS = ["/track", "/engage", "/groups", "/import"] as const;
export type CompatPath = (typeof COMPAT_PATHS)[number];

export interface CompatFuzzRequest {
  readonly path: CompatPath;
  /** How the payload travels, for the per-route counts. */
  readonly form: string;
  readonly method: "GET" | "POST";
  readonly query: string;
  readonly headers: Record<string, string>;
  readonly body: Buffer | undefined;
  /** `accepted`: a valid record, answered 1; `too_deep` / `invalid_utf8`: refused whole with that code; `any`: any 2xx/4xx. */
  readonly expect: "accepted" | "too_deep" | "invalid_utf8" | "any";
  /** For `accepted`: the record's distinct id (or group id) and the label it must arrive with. */
  readonly sent?: { readonly id: string; readonly label: string };
}

const percentAll = (bytes: Buffer) => [...bytes].map((byte) => `%${byte.toString(16).padStart(2, "0")}`).join("");

/** One valid record for the path, its text values drawn from `text`. */
function validRecord(path: CompatPath, token: string, text: string, n: number): Record<string, unknown> {
  const time = Date.now() - 1000;
  switch (path) {
    case "/track":
    case "/import":
      return { event: `fuzz ${text}`, properties: { token, distinct_id: `compat-fuzz-${n}`, time, $insert_id: `cf-${n}-${time}`, label: text } };
    case "/engage":
      return { $token: token, $distinct_id: `compat-fuzz-${n}`, $set: { label: text } };
    case "/groups":
      return { $token: token, $group_key: "company", $group_id: `compat-fuzz-${n}`, $set: { label: text } };
  }
}

let requestCounter = Date.now() % 1_000_000_000;

const emojiText = fc.string({ unit: "grapheme", minLength: 1, maxLength: 12 }).map((text) => `${text} 🚀😀𝄞`);

export function compatRequest(options: { readonly projectToken: string; readonly intakeToken: string }): fc.Arbitrary<CompatFuzzRequest> {
  const importAuth = { authorization: `Basic ${Buffer.from(`${options.intakeToken}:`).toString("base64")}` };
  return fc
    .tuple(fc.constantFrom(...COMPAT_PATHS), fc.constant(0), emojiText, fc.nat(8), fc.nat(4), fc.uint8Array({ maxLength: 200 }), fc.integer({ min: MAX_JSON_DEPTH + 1, max: 50_000 }))
    .map(([path, , text, form, variant, randomBytes, depth]): CompatFuzzRequest => {
      // A fresh id per generated request (fast-check repeats small numbers often), so a record found in the sandbox is this one.
      const n = ++requestCounter;
      const auth = path === "/import" ? importAuth : {};
      const json = Buffer.from(JSON.stringify([validRecord(path, options.projectToken, text, n)]));
      // The same record as mixpanel-browser's default base64 payload encodes it.
      const browserBytes = browserUtf8(JSON.stringify([validRecord(path, options.projectToken, text, n)]));
      const sent = { id: `compat-fuzz-${n}`, label: text };
      const base = { path, method: "POST" as const, query: "verbose=1", body: undefined };
      switch (form) {
        case 0:
          return { ...base, form: "base64 form", headers: { ...auth, "content-type": "application/x-www-form-urlencoded" }, body: Buffer.from(`data=${encodeURIComponent(browserBytes.toString("base64"))}`), expect: "accepted", sent };
        case 1:
          return { ...base, form: "base64 query", method: "GET", query: `verbose=1&data=${encodeURIComponent(browserBytes.toString("base64"))}`, headers: auth, expect: "accepted", sent };
        case 2:
          return { ...base, form: "text/plain beacon", headers: { ...auth, "content-type": "text/plain;charset=UTF-8" }, body: Buffer.from(`data=${encodeURIComponent(browserBytes.toString("base64"))}`), expect: "accepted", sent };
        case 3:
          return { ...base, form: "json form", headers: { ...auth, "content-type": "application/x-www-form-urlencoded" }, body: Buffer.from(`data=${percentAll(browserBytes)}`), expect: "accepted", sent };
        case 4:
          return { ...base, form: "gzip json", headers: { ...auth, "content-type": "application/json", "content-encoding": "gzip" }, body: gzipSync(variant % 2 === 0 ? json : browserBytes), expect: "accepted", sent };
        case 5: {
          const latin = JSON.stringify([validRecord(path, options.projectToken, "Café €", n)]);
          const charset = ["iso-8859-1", "windows-1252", "utf-16", "utf-16le", "latin1"][variant] ?? "latin1";
          const bytes = charset.startsWith("utf-16") ? Buffer.from(latin, "utf16le") : Buffer.from(latin.replaceAll("€", "\x80"), "latin1");
          return { ...base, form: "declared charset", headers: { ...auth, "content-type": `application/json; charset=${charset}` }, body: bytes, expect: "accepted", sent: { ...sent, label: "Café €" } };
        }
        case 6: {
          const latin = Buffer.from(JSON.stringify([validRecord(path, options.projectToken, "Café", n)]), "latin1");
          return { ...base, form: "undeclared latin-1", headers: { ...auth, "content-type": "application/json" }, body: variant % 2 === 0 ? latin : gzipSync(latin), ...(variant % 2 === 0 ? {} : { headers: { ...auth, "content-type": "application/json", "content-encoding": "gzip" } }), expect: "invalid_utf8" };
        }
        case 7: {
          const deep = Buffer.from(deepText(depth, variant % 2 === 0 ? "array" : "object"));
          const gzip = variant > 1;
          return { ...base, form: "deep nesting", headers: { ...auth, "content-type": "application/json", ...(gzip ? { "content-encoding": "gzip" } : {}) }, body: gzip ? gzipSync(deep) : deep, expect: "too_deep" };
        }
        default:
          return { ...base, form: "random bytes", headers: { ...auth, "content-type": ["application/json", "text/plain", "application/x-www-form-urlencoded"][variant % 3] ?? "" }, body: Buffer.from(randomBytes), expect: "any" };
      }
    });
}

/** What is wrong with an answer to `request`, or undefined. */
export function compatAnswerProblem(request: CompatFuzzRequest, status: number, text: string): string | undefined {
  if (status >= 500) return `${status} ${text.slice(0, 200)}`;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return `status ${status} without a JSON body: ${text.slice(0, 200)}`;
  }
  switch (request.expect) {
    case "accepted": {
      const ok = status === 200 && (json === 1 || (typeof json === "object" && json !== null && ((json as { status?: unknown }).status === 1 || (json as { code?: unknown }).code === 200)));
      return ok ? undefined : `a valid record (${request.form}) got ${status} ${text.slice(0, 300)}`;
    }
    case "too_deep":
    case "invalid_utf8":
      return status === 400 && text.includes(request.expect) ? undefined : `expected 400 ${request.expect} (${request.form}), got ${status} ${text.slice(0, 300)}`;
    case "any":
      return status >= 200 && status < 500 ? undefined : `status ${status}`;
  }
}
