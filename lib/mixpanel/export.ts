import { RetryableError } from "../util/errors.js";
import { type FetchLike, throwForStatus } from "../http/fetch.js";
import { type RetryDeps, type RetryPolicy, DEFAULT_RETRY_POLICY, withRetry } from "../http/retry.js";
import type { QueryCredentials } from "./query.js";

/**
 * Mixpanel's raw event export (docs/vendors/mixpanel-api.md "Raw event export"):
 * `GET {base}/export?project_id=&from_date=&to_date=[&event=[…]]&time_in_ms=true` with the
 * service account's Basic auth, answered as NDJSON (one event per line), read here line by line
 * as the bytes arrive, so a day of any size is never held whole.
 *
 * Limits (https://docs.mixpanel.com/reference/rate-limits, /reference/raw-event-export): 60
 * requests per hour and 3 per second per project, 429 beyond. Every request, retries included,
 * first takes a slot from the caller's `ExportPace`; requests are made one at a time, under the
 * concurrency cap every source states (3 or 100).
 */
export interface ExportPace {
  /** Resolves when one more request fits both windows, and counts it. */
  take(): Promise<void>;
}

/**
 * The windows as the pace counts them: a request reaches Mixpanel some time after it leaves, so
 * each window is kept a little longer than Mixpanel's own, lest two requests that left a second
 * apart arrive within one.
 */
const HOUR_MS = 3_600_000 + 5_000;
const SECOND_MS = 1_000 + 250;

/**
 * Rolling windows of request starts: at most `perHour` in any hour and `perSecond` in any second.
 * `now` and `sleep` come in so tests can drive the clock.
 */
export function createExportPace(options: { perHour: number; perSecond: number; now: () => number; sleep: (ms: number) => Promise<void> }): ExportPace {
  const starts: number[] = [];
  const perHour = Math.max(1, Math.floor(options.perHour));
  const perSecond = Math.max(1, Math.floor(options.perSecond));
  return {
    async take() {
      // Each turn either returns or sleeps until the oldest start that blocks leaves its window.
      for (;;) {
        const now = options.now();
        while (starts.length > 0 && now - (starts[0] ?? 0) >= HOUR_MS) starts.shift();
        const inLastSecond = starts.filter((at) => now - at < SECOND_MS);
        let waitMs = 0;
        if (starts.length >= perHour) waitMs = (starts[starts.length - perHour] ?? now) + HOUR_MS - now;
        if (inLastSecond.length >= perSecond) waitMs = Math.max(waitMs, (inLastSecond[inLastSecond.length - perSecond] ?? now) + SECOND_MS - now);
        if (waitMs <= 0) {
          starts.push(now);
          return;
        }
        await options.sleep(waitMs);
      }
    },
  };
}

/** One line of a day's answer, or a line longer than the client keeps (skipped, its size reported). */
export type ExportLine = { readonly kind: "line"; readonly text: string } | { readonly kind: "too_long"; readonly chars: number };

export interface ExportDayRequest {
  /** UTC day, YYYY-MM-DD (from_date = to_date = day). */
  readonly day: string;
  /** Only these event names (Mixpanel's `event` filter); absent = every event. */
  readonly events?: readonly string[] | undefined;
}

export interface ExportClient {
  /** The day's events as they stream in. A failure before the first byte is retried; one after it throws. */
  day(request: ExportDayRequest): AsyncGenerator<ExportLine>;
}

export interface ExportClientOptions {
  /** `https://data.mixpanel.com/api/2.0` and its residency siblings (hosts.ts exportBaseUrl). */
  readonly baseUrl: string;
  readonly credentials: QueryCredentials;
  readonly fetch: FetchLike;
  /** Until the answer's status and headers arrive. */
  readonly timeoutMs: number;
  /** Longest silence between two pieces of the answer before the day is given up. */
  readonly idleTimeoutMs: number;
  readonly pace: ExportPace;
  readonly retryDeps: RetryDeps;
  readonly retryPolicy?: RetryPolicy;
  readonly now: () => number;
  /** Lines longer than this (characters) are skipped and reported; Mixpanel keeps events under 1 MB. */
  readonly maxLineChars?: number;
  readonly onRetry?: (error: RetryableError, delayMs: number) => void;
}

/**
 * A 429 means the hour's requests are gone (possibly to another client of the project): longer
 * waits than the ingestion policy's, capped at 5 minutes, about 25 minutes over all tries.
 */
export const EXPORT_RETRY_POLICY: RetryPolicy = { ...DEFAULT_RETRY_POLICY, baseDelayMs: 5_000, maxDelayMs: 300_000, maxAttempts: 9 };
const DEFAULT_MAX_LINE_CHARS = 2_000_000;
/** How much of a refusal's body is read for its message. */
const MAX_ERROR_BODY_CHARS = 4_000;

export function exportUrl(baseUrl: string, credentials: QueryCredentials, request: ExportDayRequest): URL {
  const url = new URL(`${baseUrl.replace(/\/+$/, "")}/export`);
  url.searchParams.set("project_id", credentials.projectId);
  if (credentials.workspaceId) url.searchParams.set("workspace_id", credentials.workspaceId);
  url.searchParams.set("from_date", request.day);
  url.searchParams.set("to_date", request.day);
  // Millisecond times, as the relay's own records carry them (the default is whole seconds).
  url.searchParams.set("time_in_ms", "true");
  if (request.events && request.events.length > 0) url.searchParams.set("event", JSON.stringify(request.events));
  return url;
}

async function boundedText(body: ReadableStream<Uint8Array> | null): Promise<string> {
  if (!body) return "";
  const decoder = new TextDecoder();
  let text = "";
  for await (const chunk of body) {
    text += decoder.decode(chunk, { stream: true });
    if (text.length >= MAX_ERROR_BODY_CHARS) break;
  }
  return text.slice(0, MAX_ERROR_BODY_CHARS);
}

export function createExportClient(options: ExportClientOptions): ExportClient {
  const { credentials } = options;
  const authorization = `Basic ${Buffer.from(`${credentials.username}:${credentials.secret}`).toString("base64")}`;
  const maxLineChars = options.maxLineChars ?? DEFAULT_MAX_LINE_CHARS;

  /** The answer to one request, once its status is 2xx; the abort controller ends it on silence. */
  async function open(request: ExportDayRequest): Promise<{ body: ReadableStream<Uint8Array>; controller: AbortController }> {
    const url = exportUrl(options.baseUrl, credentials, request);
    const what = `Mixpanel export ${request.day}`;
    return withRetry(
      async () => {
        await options.pace.take();
        const controller = new AbortController();
        const timer = setTimeout(() => controller.abort(), options.timeoutMs);
        try {
          const response = await options.fetch(url, { method: "GET", headers: { authorization, accept: "text/plain" }, redirect: "manual", signal: controller.signal });
          if (response.status < 200 || response.status >= 300) {
            throwForStatus({ status: response.status, headers: response.headers, body: await boundedText(response.body) }, what, options.now());
          }
          if (!response.body) throw new RetryableError(`${what} answered ${response.status} without a body`);
          return { body: response.body, controller };
        } catch (error) {
          controller.abort();
          if (error instanceof Error && error.name === "AbortError") throw new RetryableError(`${what} timed out after ${options.timeoutMs} ms`);
          if (error instanceof TypeError) throw new RetryableError(`${what} failed: ${error.message}`);
          throw error;
        } finally {
          clearTimeout(timer);
        }
      },
      options.retryDeps,
      options.retryPolicy ?? EXPORT_RETRY_POLICY,
      options.onRetry,
    );
  }

  return {
    async *day(request) {
      const { body, controller } = await open(request);
      const decoder = new TextDecoder();
      let partial = "";
      /** Characters of an over-long line seen so far (its text is not kept). */
      let skipping = 0;
      let idle: NodeJS.Timeout | undefined;
      const arm = () => {
        clearTimeout(idle);
        idle = setTimeout(() => controller.abort(), options.idleTimeoutMs);
      };
      const lineOf = (text: string): ExportLine | undefined => {
        const trimmed = text.endsWith("\r") ? text.slice(0, -1) : text;
        return trimmed.trim() === "" ? undefined : { kind: "line", text: trimmed };
      };
      try {
        arm();
        for await (const chunk of body) {
          arm();
          const text = decoder.decode(chunk, { stream: true });
          let from = 0;
          for (let newline = text.indexOf("\n"); newline !== -1; newline = text.indexOf("\n", from)) {
            if (skipping > 0 || partial.length + newline - from > maxLineChars) {
              yield { kind: "too_long", chars: skipping + partial.length + newline - from };
              skipping = 0;
            } else {
              const line = lineOf(partial + text.slice(from, newline));
              if (line) yield line;
            }
            partial = "";
            from = newline + 1;
          }
          const rest = text.slice(from);
          if (skipping > 0) skipping += rest.length;
          else if (partial.length + rest.length > maxLineChars) {
            skipping = partial.length + rest.length;
            partial = "";
          } else partial += rest;
        }
        const last = decoder.decode();
        if (skipping > 0 || partial.length + last.length > maxLineChars) yield { kind: "too_long", chars: skipping + partial.length + last.length };
        else {
          const line = lineOf(partial + last);
          if (line) yield line;
        }
      } catch (error) {
        const reason = controller.signal.aborted ? `no data for ${options.idleTimeoutMs} ms` : error instanceof Error ? error.message : String(error);
        throw new RetryableError(`Mixpanel export ${request.day} broke off mid-answer: ${reason}`);
      } finally {
        clearTimeout(idle);
        // A consumer that stops early (or fails) ends the request instead of leaving it open.
        controller.abort();
      }
    },
  };
}
