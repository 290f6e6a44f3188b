import { ConfigError, RetryableError } from "../errors.js";
import { parseJsonOrUndefined } from "../util/json.js";
import { type FetchLike, type HttpResult, fetchText } from "../http/fetch.js";
import { type RetryDeps, type RetryPolicy, parseRetryAfterMs, withRetry } from "../http/retry.js";

/**
 * The one send path to Brevo's API for the connector (docs/vendors/brevo-connector.md §4):
 * `api-key` header, a hard timeout per try, no redirects followed (`redirect: "manual"`; a 3xx
 * is a wrong base URL, so a ConfigError), retries through the shared policy (lib/http/retry.ts)
 * bounded by the invocation's remaining time, and Brevo's status meanings:
 *
 * - 429: wait `x-sib-ratelimit-reset` seconds (Brevo sends no Retry-After, §4; honoured when a
 *   proxy adds one), then retry; the wait also closes a per-bucket gate so other calls in the
 *   container do not walk into the same limit. `x-sib-ratelimit-remaining: 0` closes it too.
 * - 408, 425 (Too Early, meaning undocumented), 5xx, network errors, timeouts: RetryableError.
 * - 401, 402 (no credits), 403: ConfigError (kept for redelivery and alarmed, never dropped).
 * - any other status is returned to the caller, which decides what a 4xx means for its record.
 *
 * Rate limits are per bucket (§4 table): `/v3/contacts/*`, `/v3/events`, and "all other
 * endpoints" (companies); one gate each.
 */
export type BrevoBucket = "contacts" | "events" | "other";

export interface BrevoClientOptions {
  readonly fetch: FetchLike;
  /** e.g. https://api.brevo.com/v3 */
  readonly baseUrl: string;
  readonly apiKey: () => Promise<string>;
  readonly timeoutMs: number;
  readonly retryDeps: RetryDeps;
  readonly retryPolicy?: RetryPolicy;
  readonly now: () => number;
  readonly onRetry?: (what: string, error: RetryableError, delayMs: number) => void;
  /** Shared rate-limit state (default: the client's own). */
  readonly gates?: BrevoRateGates;
}

export interface BrevoCallOptions {
  /**
   * false: when this call's rate-limit bucket is closed, or Brevo answers 429 or a transient
   * failure, throw at once (a BrevoBucketWaitError for a closed bucket) instead of waiting
   * or retrying, so the caller can hand that work back while other buckets keep flowing.
   */
  readonly wait?: boolean;
}

export interface BrevoClient {
  /** The answer for 2xx and for refusals the caller must judge; throws RetryableError / ConfigError otherwise. */
  call(method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE", path: string, body?: unknown, options?: BrevoCallOptions): Promise<HttpResult>;
  readonly calls: () => number;
}

/** A call not made because its bucket is closed until Brevo's reset. */
export class BrevoBucketWaitError extends RetryableError {
  constructor(
    readonly bucket: BrevoBucket,
    waitMs: number,
  ) {
    super(`Brevo ${bucket} rate limit resets in ${Math.ceil(waitMs / 1000)} s`, waitMs, 429);
  }
}

export const DEFAULT_BREVO_API_URL = "https://api.brevo.com/v3";

const PRIVATE_V4 = [/^10\./, /^127\./, /^169\.254\./, /^192\.168\./, /^172\.(1[6-9]|2\d|3[01])\./, /^0\./, /^100\.(6[4-9]|[7-9]\d|1[01]\d|12[0-7])\./];
const LOOPBACK_HOSTS = new Set(["127.0.0.1", "localhost", "[::1]"]);

/**
 * The Brevo base URL must be https to a public host; plain http only to a loopback host (the
 * local sandbox). A private or link-local address literal is refused (it would turn the
 * forwarder into a way into the VPC). Checked when the client is built and before every call.
 */
export function checkBrevoBaseUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(`BREVO_API_URL ${JSON.stringify(raw)} is not a URL`);
  }
  const host = url.hostname.toLowerCase();
  if (url.protocol === "http:" && LOOPBACK_HOSTS.has(host)) return url;
  if (url.protocol !== "https:") throw new ConfigError(`BREVO_API_URL must be https (http only for 127.0.0.1, localhost or [::1]), got ${url.protocol}`);
  const bare = host.replace(/^\[|\]$/g, "");
  if (PRIVATE_V4.some((range) => range.test(bare)) || LOOPBACK_HOSTS.has(host) || /^(fc|fd|fe8|fe9|fea|feb)/.test(bare) || bare === "::1" || bare.startsWith("::ffff:")) {
    throw new ConfigError(`BREVO_API_URL points at a private address (${host})`);
  }
  return url;
}

export function bucketOf(path: string): BrevoBucket {
  if (path.startsWith("/contacts")) return "contacts";
  if (path.startsWith("/events")) return "events";
  return "other";
}

function seconds(header: string | null): number | undefined {
  if (header === null || !/^\d+(\.\d+)?$/.test(header.trim())) return undefined;
  return Math.round(Number(header) * 1000);
}

/**
 * Brevo's rate-limit state, one gate per bucket (§4): the epoch ms before which no call in that
 * bucket may be made. The one gate every Brevo caller shares (the connector's client and the
 * cohort list sender), kept per container.
 */
export type BrevoRateGates = Record<BrevoBucket, number>;
export const newBrevoRateGates = (): BrevoRateGates => ({ contacts: 0, events: 0, other: 0 });

/**
 * Reads an answer's `x-sib-ratelimit-*` headers: a 429, or `remaining` 0, closes the bucket's gate
 * for `reset` seconds (Brevo sends no Retry-After; one a proxy adds is honoured; 1 s when neither).
 * Returns the wait in ms when the answer closed the gate.
 */
export function noteRateLimit(gates: BrevoRateGates, bucket: BrevoBucket, status: number, headers: Headers, now: number): number | undefined {
  const resetMs = seconds(headers.get("x-sib-ratelimit-reset"));
  const remaining = headers.get("x-sib-ratelimit-remaining");
  if (status !== 429 && (remaining === null || remaining.trim() === "" || Number(remaining) > 0)) return undefined;
  const wait = resetMs ?? parseRetryAfterMs(headers.get("retry-after"), now) ?? 1000;
  gates[bucket] = Math.max(gates[bucket], now + wait);
  return wait;
}

export function createBrevoClient(options: BrevoClientOptions): BrevoClient {
  const base = checkBrevoBaseUrl(options.baseUrl).toString().replace(/\/+$/, "");
  const gates = options.gates ?? newBrevoRateGates();
  let calls = 0;
  const left = () => options.retryDeps.remainingMs();

  async function once(method: string, path: string, body: unknown, bucket: BrevoBucket, mayWait: boolean): Promise<HttpResult> {
    const wait = gates[bucket] - options.now();
    if (wait > 0 && !mayWait) throw new BrevoBucketWaitError(bucket, wait);
    if (wait > 0) {
      // A wait that does not fit hands the work back (SQS redelivers it) instead of sleeping past the deadline.
      if (wait >= left()) throw new RetryableError(`Brevo ${bucket} rate limit resets in ${Math.ceil(wait / 1000)} s, past this invocation's deadline`, wait, 429);
      await options.retryDeps.sleep(wait);
    }
    if (left() <= 0) throw new RetryableError("no time left in this invocation for another Brevo call");
    const url = `${base}${path}`;
    checkBrevoBaseUrl(url);
    const apiKey = await options.apiKey();
    calls++;
    const result = await fetchText(
      options.fetch,
      url,
      {
        method,
        redirect: "manual",
        headers: { "api-key": apiKey, accept: "application/json", ...(body !== undefined ? { "content-type": "application/json" } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      },
      options.timeoutMs,
    );
    const status = result.status;
    const closedFor = noteRateLimit(gates, bucket, status, result.headers, options.now());
    const excerpt = result.body.slice(0, 500);
    if (status === 429) throw new RetryableError(`Brevo ${method} ${path} rate limited (429): ${excerpt}`, closedFor ?? 1000, 429);
    if (status >= 300 && status < 400) {
      throw new ConfigError(`Brevo ${method} ${path} answered a redirect (${status}) to ${result.headers.get("location") ?? "?"}; check BREVO_API_URL`, status);
    }
    if (status === 401 || status === 402 || status === 403) throw new ConfigError(`Brevo refused the API key (${status}): ${excerpt}`, status);
    if (status === 408 || status === 425 || status >= 500) throw new RetryableError(`Brevo ${method} ${path} answered ${status}: ${excerpt}`, undefined, status);
    return result;
  }

  return {
    calls: () => calls,
    async call(method, path, body, callOptions) {
      const bucket = bucketOf(path);
      if (callOptions?.wait === false) return once(method, path, body, bucket, false);
      return withRetry(() => once(method, path, body, bucket, true), options.retryDeps, options.retryPolicy, (error, delayMs) =>
        options.onRetry?.(`${method} ${path}`, error, delayMs),
      );
    },
  };
}

/** Brevo's error body `{code, message}` as one line for the rejected store. */
export function brevoMessage(result: HttpResult): string {
  const parsed = parseJsonOrUndefined(result.body);
  if (parsed !== null && typeof parsed === "object" && "message" in parsed) {
    const code = "code" in parsed ? String(parsed.code) : "";
    return `Brevo ${result.status}${code ? ` ${code}` : ""}: ${String(parsed.message)}`;
  }
  return `Brevo ${result.status}: ${result.body.slice(0, 500)}`;
}
