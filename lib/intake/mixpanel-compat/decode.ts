import { gunzipSync } from "node:zlib";
import { parseJson } from "../../util/json.js";

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
  /** Query parameters, already split (see `queryParams`). */
  readonly query: URLSearchParams;
  readonly body: Buffer | undefined;
  readonly maxBodyBytes: number;
  readonly maxDecompressedBytes: number;
}

export type DecodeResult =
  | { readonly ok: true; readonly style: RequestStyle; readonly records: readonly unknown[]; readonly flags: CompatFlags }
  | {
      readonly ok: false;
      readonly status: 400 | 413 | 415;
      readonly code: string;
      readonly message: string;
      readonly style: RequestStyle;
      readonly flags: CompatFlags;
    };

/** The raw query string when API Gateway gives it (keeps a raw `+`), else the parsed parameters. */
export function queryParams(rawQuery: string | undefined, parsed: Readonly<Record<string, string | undefined>>): URLSearchParams {
  if (rawQuery !== undefined) return new URLSearchParams(rawQuery);
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(parsed)) if (value !== undefined) params.append(name, value);
  return params;
}

function flagsFrom(...sources: URLSearchParams[]): CompatFlags {
  const read = (name: string) => {
    for (const source of sources) {
      const value = source.get(name);
      if (value !== null) return value.trim();
    }
    return undefined;
  };
  return { verbose: read("verbose") === "1", ip: read("ip"), strict: read("strict") === "1" };
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/**
 * A `data` value: JSON when it starts like JSON, else padded or unpadded base64 of JSON.
 * Form decoding turned a raw `+` (the Node SDK does not escape its base64) into a space;
 * base64 never contains spaces, so they are turned back (docs/vendors/mixpanel-wire.md §1).
 */
export function decodeDataValue(value: string): { ok: true; value: unknown } | { ok: false; message: string } {
  const trimmed = value.trim();
  if (trimmed === "") return { ok: false, message: "data is empty" };
  let json = trimmed;
  if (!trimmed.startsWith("{") && !trimmed.startsWith("[")) {
    const base64 = trimmed.replace(/ /g, "+").replace(/[\r\n]/g, "");
    if (!BASE64.test(base64) || base64.length % 4 === 1) return { ok: false, message: "data is neither JSON nor base64" };
    json = Buffer.from(base64, "base64").toString("utf8");
  }
  const parsed = parseJson(json);
  return parsed.ok ? parsed : { ok: false, message: "data does not decode to JSON" };
}

/** NDJSON (or a single JSON document): one record per non-empty line. */
function parseJsonBody(text: string): { ok: true; value: unknown } | { ok: false; message: string } {
  const whole = parseJson(text);
  if (whole.ok) return whole;
  const lines = text.split(/\r?\n/).filter((line) => line.trim() !== "");
  if (lines.length < 2) return { ok: false, message: "body is not valid JSON" };
  const records: unknown[] = [];
  for (const [number, line] of lines.entries()) {
    const record = parseJson(line);
    if (!record.ok) return { ok: false, message: `body is neither JSON nor NDJSON (line ${number + 1} is not JSON)` };
    records.push(record.value);
  }
  return { ok: true, value: records };
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
  let style: RequestStyle = input.query.has("data") ? "legacy" : "json";
  let flags = flagsFrom(input.query);
  const fail = (status: 400 | 413 | 415, code: string, message: string): DecodeResult => ({ ok: false, status, code, message, style, flags });

  let decoded: { ok: true; value: unknown } | { ok: false; message: string };
  const queryData = input.query.get("data");
  if (queryData !== null) {
    decoded = decodeDataValue(queryData);
  } else {
    const bytes = bodyBytes(input);
    if (!bytes.ok) return fail(bytes.status, bytes.code, bytes.message);
    const text = bytes.bytes.toString("utf8").trim();
    if (text === "") return fail(400, "invalid_body", "no data: send data=<base64 or JSON> in the query or body, or a JSON body");
    const contentType = (input.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
    if (contentType === "application/json" || contentType.endsWith("ndjson") || contentType.endsWith("jsonl") || text.startsWith("[") || text.startsWith("{")) {
      decoded = parseJsonBody(text);
    } else {
      // Form bodies, and sendBeacon's text/plain body (`data=…`), whatever the Content-Type says.
      const form = new URLSearchParams(text);
      style = "legacy";
      flags = flagsFrom(input.query, form);
      const formData = form.get("data");
      if (formData === null) return fail(400, "invalid_body", "body has no data= parameter");
      decoded = decodeDataValue(formData);
    }
  }
  if (!decoded.ok) return fail(400, "invalid_data", decoded.message);
  const value = decoded.value;
  const records = Array.isArray(value) ? value : value !== null && typeof value === "object" ? [value] : undefined;
  if (records === undefined) return fail(400, "invalid_data", "data must be one JSON object or an array of them");
  if (records.length > MAX_RECORDS_PER_REQUEST) {
    return fail(413, "too_many_records", `${records.length} records in one request; the limit is ${MAX_RECORDS_PER_REQUEST}`);
  }
  return { ok: true, style, records, flags };
}
