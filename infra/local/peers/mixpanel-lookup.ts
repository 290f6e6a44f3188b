import type { IncomingMessage, ServerResponse } from "node:http";
import { gunzipSync } from "node:zlib";

/**
 * Strict local Mixpanel Lookup Tables API (https://docs.mixpanel.com/reference/list-lookup-tables,
 * https://docs.mixpanel.com/reference/replace-lookup-table), mounted in the Mixpanel sandbox
 * (`extraRoutes`): `GET /lookup-tables?project_id=` lists the tables; `PUT /lookup-tables/{id}?project_id=`
 * with `Content-Type: text/csv` (optionally `Content-Encoding: gzip`) replaces one, all or nothing.
 * Basic service-account auth with project_id, else 401. Checks as Mixpanel documents them: RFC 4180,
 * at least 2 columns, unique header names, first column a unique non-empty key (400 with up to ten
 * `failed_records`, 0-based over the data rows); 413 over 100 MB uncompressed; fewer than 5 M rows;
 * 404 for an unknown id; 429 after 100 replace calls in a rolling 24 h (refused ones count too).
 * Tables are made by the test or the stack (Mixpanel has no create call).
 */
export interface SandboxLookupTable {
  readonly id: string;
  readonly name: string;
  header?: string[];
  rows?: string[][];
  replacedAt?: number;
}

export interface LookupApiOptions {
  readonly projectId: string;
  readonly username: string;
  readonly secret: string;
  readonly tables?: readonly { id: string; name: string }[];
  readonly now?: () => number;
  readonly onCall?: (call: { method: string; path: string; status: number }) => void;
}

const MAX_BYTES = 100_000_000;
const MAX_ROWS = 5_000_000;
const REPLACES_PER_DAY = 100;
const DAY_MS = 86_400_000;

/** RFC 4180 records of a text, or the first problem with its 0-based record number. */
function parseRfc4180(text: string): { records: string[][] } | { error: string; record: number } {
  const records: string[][] = [];
  let field = "";
  let record: string[] = [];
  let i = 0;
  let quoted = false;
  let fieldStarted = false;
  while (i < text.length) {
    const char = text[i];
    if (quoted) {
      if (char === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i += 2;
          continue;
        }
        quoted = false;
        i += 1;
        const next = text[i];
        if (next !== undefined && next !== "," && next !== "\r" && next !== "\n") return { error: "text after a closing quote", record: records.length };
        continue;
      }
      field += char;
      i += 1;
      continue;
    }
    if (char === '"') {
      if (fieldStarted) return { error: "a quote inside an unquoted field", record: records.length };
      quoted = true;
      fieldStarted = true;
      i += 1;
    } else if (char === ",") {
      record.push(field);
      field = "";
      fieldStarted = false;
      i += 1;
    } else if (char === "\r" || char === "\n") {
      record.push(field);
      records.push(record);
      record = [];
      field = "";
      fieldStarted = false;
      i += char === "\r" && text[i + 1] === "\n" ? 2 : 1;
    } else {
      field += char;
      fieldStarted = true;
      i += 1;
    }
  }
  if (quoted) return { error: "a quoted field is never closed", record: records.length };
  if (fieldStarted || record.length > 0) {
    record.push(field);
    records.push(record);
  }
  return { records };
}

export function createLookupTablesApi(options: LookupApiOptions) {
  const tables = new Map<string, SandboxLookupTable>((options.tables ?? []).map((table) => [table.id, { ...table }]));
  const replaceCalls: number[] = [];
  const calls: { method: string; path: string; status: number }[] = [];
  const now = options.now ?? Date.now;
  const expected = `Basic ${Buffer.from(`${options.username}:${options.secret}`).toString("base64")}`;

  const send = (response: ServerResponse, request: IncomingMessage, url: URL, status: number, body: unknown) => {
    const call = { method: request.method ?? "", path: url.pathname, status };
    calls.push(call);
    options.onCall?.(call);
    response.writeHead(status, { "content-type": "application/json" });
    response.end(JSON.stringify(body));
  };

  function validate(text: string): { header: string[]; rows: string[][] } | { failed: { index: number; message: string }[]; error: string } {
    const parsed = parseRfc4180(text.startsWith("\ufeff") ? text.slice(1) : text);
    if ("error" in parsed) return { error: "invalid CSV", failed: [{ index: Math.max(0, parsed.record - 1), message: parsed.error }] };
    const [header, ...rows] = parsed.records;
    if (!header || header.length < 2) return { error: "the CSV needs at least 2 columns", failed: [] };
    if (new Set(header).size !== header.length || header.some((name) => name === "")) return { error: "header names must be unique and non-empty", failed: [] };
    if (rows.length >= MAX_ROWS) return { error: "too many rows", failed: [] };
    const failed: { index: number; message: string }[] = [];
    const keys = new Set<string>();
    rows.forEach((row, index) => {
      if (failed.length >= 10) return;
      const key = row[0] ?? "";
      if (row.length !== header.length) failed.push({ index, message: `expected ${header.length} fields, got ${row.length}` });
      else if (key === "" || key === "0" || key.toLowerCase() === "false") failed.push({ index, message: "empty or falsy primary key" });
      else if (keys.has(key)) failed.push({ index, message: `duplicate primary key ${key}` });
      keys.add(key);
    });
    return failed.length > 0 ? { error: "some rows failed validation", failed } : { header, rows };
  }

  return {
    tables,
    calls,
    /** Replace calls the sandbox counted (refused ones included). */
    replaceCount: () => replaceCalls.length,
    addTable(id: string, name: string) {
      tables.set(id, { id, name });
    },
    async handle(request: IncomingMessage, response: ServerResponse, url: URL, body: Buffer): Promise<boolean> {
      if (url.pathname !== "/lookup-tables" && !url.pathname.startsWith("/lookup-tables/")) return false;
      if (request.headers.authorization !== expected || url.searchParams.get("project_id") !== options.projectId) {
        send(response, request, url, 401, { code: 401, error: "Invalid credentials", status: "Unauthorized" });
        return true;
      }
      if (request.method === "GET" && url.pathname === "/lookup-tables") {
        send(response, request, url, 200, { code: 200, status: "OK", results: [...tables.values()].map(({ id, name }) => ({ id, name })) });
        return true;
      }
      const id = decodeURIComponent(url.pathname.slice("/lookup-tables/".length));
      if (request.method !== "PUT" || id === "" || id.includes("/")) {
        send(response, request, url, 405, { code: 405, error: "method not allowed", status: "Method Not Allowed" });
        return true;
      }
      const at = now();
      while (replaceCalls.length > 0 && at - (replaceCalls[0] ?? 0) >= DAY_MS) replaceCalls.shift();
      if (replaceCalls.length >= REPLACES_PER_DAY) {
        send(response, request, url, 429, { code: 429, error: "rate limit: 100 replace calls per 24 hours", status: "Too Many Requests" });
        return true;
      }
      replaceCalls.push(at);
      const table = tables.get(id);
      if (!table) {
        send(response, request, url, 404, { code: 404, error: `no lookup table ${id}`, status: "Not Found" });
        return true;
      }
      if (!String(request.headers["content-type"] ?? "").startsWith("text/csv")) {
        send(response, request, url, 400, { code: 400, error: "Content-Type must be text/csv", status: "Bad Request" });
        return true;
      }
      let plain: Buffer;
      try {
        plain = request.headers["content-encoding"] === "gzip" ? gunzipSync(body, { maxOutputLength: MAX_BYTES + 1 }) : body;
      } catch (error) {
        // zlib stops at maxOutputLength with ERR_BUFFER_TOO_LARGE: a body past 100 MB, not a broken one.
        const tooBig = (error as { code?: string }).code === "ERR_BUFFER_TOO_LARGE";
        send(response, request, url, tooBig ? 413 : 400, tooBig ? { code: 413, error: "lookup table larger than 100 MB", status: "Payload Too Large" } : { code: 400, error: "body is not gzip", status: "Bad Request" });
        return true;
      }
      if (plain.length > MAX_BYTES) {
        send(response, request, url, 413, { code: 413, error: "lookup table larger than 100 MB", status: "Payload Too Large" });
        return true;
      }
      const checked = validate(plain.toString("utf8"));
      if ("failed" in checked) {
        send(response, request, url, 400, { code: 400, error: checked.error, failed_records: checked.failed, status: "Bad Request" });
        return true;
      }
      Object.assign(table, { header: checked.header, rows: checked.rows, replacedAt: at });
      send(response, request, url, 200, { code: 200, status: "OK" });
      return true;
    },
  };
}

export type LookupTablesApi = ReturnType<typeof createLookupTablesApi>;
