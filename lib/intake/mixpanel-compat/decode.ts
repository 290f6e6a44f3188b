import { gunzipSync } from "node:zlib";
import { parseJsonBounded } from "../../util/json.js";
import { declaredCharset, decodeText, decodeUtf8 } from "../../util/text.js";

/**
 * Turns a request to a Mixpanel-compatible endpoint into records, whatever form the SDK
 * chose (docs/vendors/mixpanel-wire.md §1, §2): `data=` in the query or in a form /
 * text/plain body (base64 or JSON), a JSON body, NDJSON, optionally gzipped. Pure:
 * no clock, no I/O.
 */

/** Mixpanel's documented per-request cap on /track and /import (docs/vendors/mixpanel-wire.md §7). */
export const MAX_RECORDS_PER_REQUEST = 2000;
/** /import's uncompressed cap (docs/vendors/mixpanel-api.md §3); also bounds what a gzip body may expand to. */
export const MAX_DECOMPRESSED_BYTES = 10_000_000;

/** How the records came in, which decides how the answer is written (docs/vendors/mixpanel-wire.md §3). */
export type RequestStyle = "legacy" | "json";

export interface CompatFlags {
  /** `verbose=1`: answer `{status, error}` instead of `1`/`0`. */
  readonly verbose: boolean;
  /** `ip` as sent ("1" or "0"), undefined when absent (each endpoint has its own default). */
  readonly ip: string | undefined;
  /** `strict=1` on /import: a 400 when any record fails validation. */
  readonly strict: boolean;
}

export interface DecodeInput {
  readonly headers: Readonly<Record<string, string | undefined>>;
  /** Query parameters, already split and decoded (see `queryParams`). */
  readonly query: FormFields;
  readonly body: Buffer | undefined;
  readonly maxBodyBytes: number;
  readonly maxDecompressedBytes: number;
}

export type DecodeResult =
  | {
      readonly ok: true;
      readonly style: RequestStyle;
      readonly records: readonly unknown[];
      readonly flags: CompatFlags;
      /** Surrogate halves without a partner, turned into U+FFFD (counted by the caller). */
      readonly loneSurrogates: number;
    }
  | {
      readonly ok: false;
      readonly status: 400 | 413 | 415;
      readonly code: string;
      readonly message: string;
      readonly style: RequestStyle;
      readonly flags: CompatFlags;
    };

/** Form or query fields, first value per name, decoded without silent replacement. */
export interface FormFields {
  readonly values: ReadonlyMap<string, string>;
  readonly loneSurrogates: number;
}

type Refusal = { readonly ok: false; readonly status: 400 | 413 | 415; readonly code: string; readonly message: string };

const PERCENT_RUN = /(?:%[0-9A-Fa-f]{2})+/g;

/**
 * `application/x-www-form-urlencoded` text split into fields. Percent-escapes are turned into
 * bytes and read in `charset` (UTF-8 when none is declared, with decodeUtf8's surrogate-pair
 * repair), so a field that is not valid text is refused instead of being replaced the way
 * URLSearchParams replaces it.
 */
export function parseFormFields(text: string, charset?: string): { ok: true; fields: FormFields } | Refusal {
  const values = new Map<string, string>();
  let loneSurrogates = 0;
  let failure: Refusal | undefined;
  const decodeComponent = (component: string): string =>
    component.replace(/\+/g, " ").replace(PERCENT_RUN, (run) => {
      const bytes = Buffer.from(run.replace(/%/g, ""), "hex");
      const decoded = decodeText(bytes, charset);
      if (!decoded.ok) {
        failure ??= { ok: false, status: decoded.code === "unsupported_charset" ? 415 : 400, code: decoded.code, message: `a form field: ${decoded.message}` };
        return "";
      }
      loneSurrogates += decoded.loneSurrogates;
      return decoded.text;
    });
  for (const pair of text.split("&")) {
    if (pair === "") continue;
    const equals = pair.indexOf("=");
    const name = decodeComponent(equals < 0 ? pair : pair.slice(0, equals));
    const value = equals < 0 ? "" : decodeComponent(pair.slice(equals + 1));
    if (failure) return failure;
    if (!values.has(name)) values.set(name, value);
  }
  return { ok: true, fields: { values, loneSurrogates } };
}

/** The raw query string when API Gateway gives it (keeps a raw `+` and the bytes of each escape), else the parsed parameters. */
export function queryParams(rawQuery: string | undefined, parsed: Readonly<Record<string, string | undefined>>): { ok: true; fields: FormFields } | Refusal {
  if (rawQuery !== undefined) return parseFormFields(rawQuery);
  const values = new Map<string, string>();
  for (const [name, value] of Object.entries(parsed)) if (value !== undefined) values.set(name, value);
  return { ok: true, fields: { values, loneSurrogates: 0 } };
}

function flagsFrom(...sources: FormFields[]): CompatFlags {
  const read = (name: string) => {
    for (const source of sources) {
      const value = source.values.get(name);
      if (value !== undefined) return value.trim();
    }
    return undefined;
  };
  return { verbose: read("verbose") === "1", ip: read("ip"), strict: read("strict") === "1" };
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

type Decoded = { ok: true; value: unknown; loneSurrogates: number } | { ok: false; code: string; message: string };

/** JSON text, refused without building it when it nests too deep. */
function parseBody(text: string, what: string, loneSurrogates: number): Decoded {
  const parsed = parseJsonBounded(text);
  if (parsed.ok) return { ok: true, value: parsed.value, loneSurrogates };
  if ("code" in parsed) return { ok: false, code: parsed.code, message: `${what}: ${parsed.error}` };
  return { ok: false, code: "invalid_data", message: `${what} is not JSON` };
}

/**
 * A `data` value: JSON when it starts like JSON, else padded or unpadded base64 of JSON.
 * Form decoding turned a raw `+` (the Node SDK does not escape its base64) into a space;
 * base64 never contains spaces, so they are turned back (docs/vendors/mixpanel-wire.md §1).
 * The base64 bytes are the SDK's own UTF-8 (mixpanel-browser's writes surrogate pairs as two
 * 3-byte sequences, repaired by decodeUtf8), whatever charset the request declared.
 */
export function decodeDataValue(value: string): Decoded {
  const trimmed = value.trim();
  if (trimmed === "") return { ok: false, code: "invalid_data", message: "data is empty" };
  if (trimmed.startsWith("{") || trimmed.startsWith("[")) return parseBody(trimmed, "data", 0);
  const base64 = trimmed.replace(/ /g, "+").replace(/[\r\n]/g, "");
  if (!BASE64.test(base64) || base64.length % 4 === 1) return { ok: false, code: "invalid_data", message: "data is neither JSON nor base64" };
  const text = decodeUtf8(Buffer.from(base64, "base64"));
  if (!text.ok) return { ok: false, code: text.code, message: `data, once base64-decoded, ${text.message.replace(/^body /, "")}` };
  return parseBody(text.text, "data, once base64-decoded,", text.loneSurrogates);
}

/** NDJSON (or a single JSON document): one record per non-empty line. */
function parseJsonBody(text: string, loneSurrogates: number): Decoded {
  const whole = parseBody(text, "body", loneSurrogates);
  if (whole.ok || whole.code === "too_deep" || whole.code === "too_many_values") return whole;
  const lines = text.split(/\r?\n/).filter((line) => line.trim() !== "");
  if (lines.length < 2) return { ok: false, code: "invalid_data", message: "body is not valid JSON" };
  const records: unknown[] = [];
  for (const [number, line] of lines.entries()) {
    const record = parseBody(line, `line ${number + 1}`, 0);
    if (!record.ok) return { ok: false, code: "invalid_data", message: `body is neither JSON nor NDJSON (line ${number + 1} is not JSON)` };
    records.push(record.value);
  }
  return { ok: true, value: records, loneSurrogates };
}

function bodyBytes(input: DecodeInput): { ok: true; bytes: Buffer } | { ok: false; status: 400 | 413 | 415; code: string; message: string } {
  const raw = input.body ?? Buffer.alloc(0);
  if (raw.length > input.maxBodyBytes) {
    return { ok: false, status: 413, code: "payload_too_large", message: `body is ${raw.length} bytes; the limit is ${input.maxBodyBytes}` };
  }
  const encoding = (input.headers["content-encoding"] ?? "").trim().toLowerCase();
  if (encoding === "" || encoding === "identity" || raw.length === 0) return { ok: true, bytes: raw };
  if (encoding !== "gzip" && encoding !== "x-gzip") {
    return { ok: false, status: 415, code: "unsupported_content_encoding", message: `Content-Encoding ${encoding} is not supported; use gzip` };
  }
  try {
    // maxOutputLength stops inflating at the cap, so a gzip bomb costs at most that much memory.
    return { ok: true, bytes: gunzipSync(raw, { maxOutputLength: input.maxDecompressedBytes }) };
  } catch (error) {
    if (error instanceof RangeError) {
      return { ok: false, status: 413, code: "payload_too_large", message: `gzip body expands beyond ${input.maxDecompressedBytes} bytes` };
    }
    return { ok: false, status: 400, code: "invalid_gzip", message: "body is not valid gzip" };
  }
}

export function decodeCompatRequest(input: DecodeInput): DecodeResult {
  let style: RequestStyle = input.query.values.has("data") ? "legacy" : "json";
  let flags = flagsFrom(input.query);
  const fail = (status: 400 | 413 | 415, code: string, message: string): DecodeResult => ({ ok: false, status, code, message, style, flags });

  let decoded: Decoded;
  const queryData = input.query.values.get("data");
  if (queryData !== undefined) {
    decoded = decodeDataValue(queryData);
  } else {
    const bytes = bodyBytes(input);
    if (!bytes.ok) return fail(bytes.status, bytes.code, bytes.message);
    const charset = declaredCharset(input.headers["content-type"]);
    const body = decodeText(bytes.bytes, charset);
    if (!body.ok) return fail(body.code === "unsupported_charset" ? 415 : 400, body.code, body.message);
    const text = body.text.trim();
    if (text === "") return fail(400, "invalid_body", "no data: send data=<base64 or JSON> in the query or body, or a JSON body");
    const contentType = (input.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
    if (contentType === "application/json" || contentType.endsWith("ndjson") || contentType.endsWith("jsonl") || text.startsWith("[") || text.startsWith("{")) {
      decoded = parseJsonBody(text, body.loneSurrogates);
    } else {
      // Form bodies, and sendBeacon's text/plain body (`data=…`), whatever the Content-Type says.
      const form = parseFormFields(text, charset);
      if (!form.ok) return fail(form.status, form.code, form.message);
      style = "legacy";
      flags = flagsFrom(input.query, form.fields);
      const formData = form.fields.values.get("data");
      if (formData === undefined) return fail(400, "invalid_body", "body has no data= parameter");
      const data = decodeDataValue(formData);
      decoded = data.ok ? { ...data, loneSurrogates: data.loneSurrogates + body.loneSurrogates + form.fields.loneSurrogates } : data;
    }
  }
  if (!decoded.ok) return fail(decoded.code === "too_many_values" ? 413 : 400, decoded.code, decoded.message);
  const value = decoded.value;
  const records = Array.isArray(value) ? value : value !== null && typeof value === "object" ? [value] : undefined;
  if (records === undefined) return fail(400, "invalid_data", "data must be one JSON object or an array of them");
  if (records.length > MAX_RECORDS_PER_REQUEST) {
    return fail(413, "too_many_records", `${records.length} records in one request; the limit is ${MAX_RECORDS_PER_REQUEST}`);
  }
  return { ok: true, style, records, flags, loneSurrogates: decoded.loneSurrogates + input.query.loneSurrogates };
}
