import type { IncomingMessage, ServerResponse } from "node:http";

/**
 * Strict local Mixpanel raw event export (https://docs.mixpanel.com/reference/raw-event-export),
 * mounted in the Mixpanel sandbox (`extraRoutes`) over the events the sandbox has received:
 *
 *  - `GET {basePath}/export?project_id=&from_date=YYYY-MM-DD&to_date=YYYY-MM-DD`, both dates
 *    inclusive, UTC (projects created since 2023); optional `event` (a JSON array of names),
 *    `limit` (≤ 100000), `time_in_ms` (`true` = ms times, else whole seconds).
 *  - Basic auth with the service account and its `project_id`, else 401; a missing or malformed
 *    date, a bad `event` or `limit` → 400; other methods → 405.
 *  - 200 `text/plain`, one JSON event per line (JSONL), written event by event; Mixpanel adds
 *    `mp_processing_time_ms`, and so does the sandbox. No dedup: the export shows every copy.
 *  - 429 past `requestsPerHour` (60) in the rolling hour, `requestsPerSecond` (3) in the rolling
 *    second, or `concurrent` (3) answers still being written.
 *
 * `basePath` defaults to `/api/2.0`, the path of Mixpanel's data export hosts.
 */
export interface ExportedSandboxEvent {
  readonly event: string;
  readonly properties: Record<string, unknown>;
}

export interface ExportApiOptions {
  readonly events: () => readonly ExportedSandboxEvent[];
  readonly projectId: string;
  readonly username: string;
  readonly secret: string;
  readonly basePath?: string;
  readonly requestsPerHour?: number;
  readonly requestsPerSecond?: number;
  readonly concurrent?: number;
  readonly now?: () => number;
  readonly onCall?: (call: { readonly query: Record<string, string>; readonly status: number; readonly lines: number }) => void;
}

export interface ExportApi {
  handle(request: IncomingMessage, response: ServerResponse, url: URL): Promise<boolean>;
  /** Every answered call, for tests. */
  readonly calls: { readonly query: Record<string, string>; readonly status: number; readonly lines: number }[];
}

const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
const MAX_LIMIT = 100_000;
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;

function dayStart(value: string | null): number | undefined {
  const match = value === null ? null : DATE.exec(value);
  if (!match) return undefined;
  const at = Date.UTC(Number(match[1]), Number(match[2]) - 1, Number(match[3]));
  return new Date(at).toISOString().slice(0, 10) === value ? at : undefined;
}

/** An event's time in ms: the relay sends ms; seconds (< 1e11) are read as seconds. */
function timeMs(properties: Record<string, unknown>): number | undefined {
  const time = properties.time;
  if (typeof time !== "number" || !Number.isFinite(time)) return undefined;
  return time < 1e11 ? time * 1000 : time;
}

export function createExportApi(options: ExportApiOptions): ExportApi {
  const base = options.basePath ?? "/api/2.0";
  const now = options.now ?? Date.now;
  const starts: number[] = [];
  const calls: ExportApi["calls"] = [];
  let open = 0;

  const answer = (response: ServerResponse, query: Record<string, string>, status: number, body: unknown, headers: Record<string, string> = {}) => {
    calls.push({ query, status, lines: 0 });
    options.onCall?.({ query, status, lines: 0 });
    response.writeHead(status, { "content-type": "application/json", ...headers });
    response.end(JSON.stringify(body));
  };

  const authorized = (request: IncomingMessage, url: URL): boolean => {
    const header = request.headers.authorization ?? "";
    if (!header.startsWith("Basic ")) return false;
    const [user, ...rest] = Buffer.from(header.slice(6), "base64").toString("utf8").split(":");
    return user === options.username && rest.join(":") === options.secret && url.searchParams.get("project_id") === options.projectId;
  };

  return {
    calls,
    async handle(request, response, url) {
      if (url.pathname !== `${base}/export`) return false;
      const query = Object.fromEntries(url.searchParams);
      if (request.method !== "GET") {
        answer(response, query, 405, { error: "method not allowed" });
        return true;
      }
      if (!authorized(request, url)) {
        answer(response, query, 401, { error: "Invalid credentials: a service account with its project_id is required", status: "error" });
        return true;
      }
      const at = now();
      while (starts.length > 0 && at - (starts[0] ?? 0) >= HOUR_MS) starts.shift();
      const lastSecond = starts.filter((start) => at - start < 1000).length;
      const overHour = starts.length >= (options.requestsPerHour ?? 60);
      if (overHour || lastSecond >= (options.requestsPerSecond ?? 3) || open >= (options.concurrent ?? 3)) {
        // When the rolling window frees a place (Mixpanel documents no Retry-After for the export; a client must cope without).
        const retryAfter = overHour ? Math.ceil(((starts[0] ?? at) + HOUR_MS - at) / 1000) : 1;
        answer(response, query, 429, { error: "rate limit exceeded: 60 queries per hour, 3 per second, 3 at once", status: "error" }, { "retry-after": String(retryAfter) });
        return true;
      }
      starts.push(at);
      const from = dayStart(url.searchParams.get("from_date"));
      const to = dayStart(url.searchParams.get("to_date"));
      if (from === undefined || to === undefined || to < from) {
        answer(response, query, 400, { error: "from_date and to_date are required, as yyyy-mm-dd, from_date ≤ to_date", status: "error" });
        return true;
      }
      let names: Set<string> | undefined;
      const eventParam = url.searchParams.get("event");
      if (eventParam !== null) {
        let parsed: unknown;
        try {
          parsed = JSON.parse(eventParam);
        } catch {
          parsed = undefined;
        }
        if (!Array.isArray(parsed) || !parsed.every((name) => typeof name === "string")) {
          answer(response, query, 400, { error: "event must be a JSON array of event names", status: "error" });
          return true;
        }
        names = new Set(parsed);
      }
      const limitParam = url.searchParams.get("limit");
      const limit = limitParam === null ? MAX_LIMIT : Number(limitParam);
      if (!Number.isInteger(limit) || limit <= 0 || limit > MAX_LIMIT) {
        answer(response, query, 400, { error: `limit must be an integer from 1 to ${MAX_LIMIT}`, status: "error" });
        return true;
      }
      const inMs = url.searchParams.get("time_in_ms") === "true";
      open += 1;
      let lines = 0;
      try {
        response.writeHead(200, { "content-type": "text/plain; charset=utf-8" });
        for (const event of options.events()) {
          if (lines >= limit) break;
          const ms = timeMs(event.properties);
          if (ms === undefined || ms < from || ms >= to + DAY_MS) continue;
          if (names && !names.has(event.event)) continue;
          const properties = { ...event.properties, time: inMs ? ms : Math.floor(ms / 1000), mp_processing_time_ms: ms };
          lines += 1;
          // Written event by event, as a stream: a reader that buffers a day whole is not helped.
          if (!response.write(`${JSON.stringify({ event: event.event, properties })}\n`)) {
            await new Promise((resume) => {
              response.once("drain", resume);
              response.once("close", resume);
            });
          }
          if (response.destroyed) break;
        }
        response.end();
      } finally {
        open -= 1;
        calls.push({ query, status: 200, lines });
        options.onCall?.({ query, status: 200, lines });
      }
      return true;
    },
  };
}
