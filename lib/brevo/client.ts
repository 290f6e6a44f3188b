import { ConfigError, RetryableError, ValidationError } from "../util/errors.js";
import { parseJsonOrUndefined } from "../util/json.js";
import type { FetchLike, HttpResult } from "../http/fetch.js";
import { createGuardedFetch } from "../http/guarded-fetch.js";
import { type RetryDeps, type RetryPolicy, withRetry } from "../http/retry.js";
import { type BrevoBucket, type BrevoRateGates, bucketOf, newBrevoRateGates, noteRateLimit } from "./rate-limits.js";
import { type AddressPolicy, destinationUrlProblem } from "../util/address-policy.js";
import type { BrevoOperationCall, BrevoRawAnswer, BrevoSdk } from "./sdk.js";

/**
 * The one client of Brevo's API (the connector, `npm run gdpr:delete` and the cohort Brevo lists'
 * sender), docs/vendors/brevo-connector.md §4 and "The vendor's client".
 * Brevo's official SDK (`@getbrevo/brevo`, lib/brevo/sdk.ts) makes every call; this module keeps
 * the relay's rules around it:
 *
 * - the address policy of the cohort destinations (lib/util/address-policy.ts: https to a public
 *   host, IPv4 hidden in IPv6 forms included; plain http and loopback only on the local stage),
 *   checked on the base URL when the client is built and on every DNS answer at send time by the
 *   guarded fetch (lib/http/guarded-fetch.ts), which is the SDK's `fetch`; redirects are never
 *   followed (a 3xx is a wrong base URL, so a ConfigError);
 * - one try per SDK call (`maxRetries: 0`), a hard timeout per try (`timeoutInSeconds`), retries
 *   through the shared policy (lib/http/retry.ts) bounded by the invocation's remaining time;
 * - Brevo's status meanings, read from the SDK's answer or error (status, body, raw headers):
 *   - 429: wait `x-sib-ratelimit-reset` seconds (Brevo sends no Retry-After, §4; honoured when a
 *     proxy adds one), then retry; the wait also closes a per-bucket gate so other calls in the
 *     container do not walk into the same limit. `x-sib-ratelimit-remaining: 0` closes it too.
 *   - 408, 425 (Too Early, meaning undocumented), 5xx, network errors, timeouts: RetryableError.
 *   - 401, 402 (no credits), 403: ConfigError (kept for redelivery and alarmed, never dropped),
 *     unless the caller judges such refusals itself (`refusalsJudgedBy: "caller"`, the cohort lists).
 *   - any other status is returned to the caller, which decides what a 4xx means for its record.
 *
 * Rate limits are per bucket (§4 table): `/v3/contacts/*`, `/v3/events`, and "all other
 * endpoints" (companies, processes); one gate each.
 */
// The rate-limit gates live apart: a function's wiring builds the container's shared gates without loading this client.
export { type BrevoBucket, type BrevoRateGates, bucketOf, newBrevoRateGates, noteRateLimit } from "./rate-limits.js";

/**
 * The transport's address rule. Either the client applies it (`addressPolicy`: the base URL is
 * checked when the client is built, and the default transport is the guarded fetch of that policy),
 * or the caller hands in a guarded `fetch` of its own and has checked the base URL where it was
 * configured (a cohort destination's `base_url`, lib/config/cohort-syncs.ts).
 */
export type BrevoTransportOptions =
  | {
      /**
       * The local stage allows plain http and loopback (the local sandbox); a deployed stage
       * allows neither, nor any other non-public address.
       */
      readonly addressPolicy: AddressPolicy;
      /** The transport under the SDK (default: the guarded fetch of `addressPolicy`). Redirects are never followed, whatever it is. */
      readonly fetch?: FetchLike;
    }
  | { readonly addressPolicy?: undefined; readonly fetch: FetchLike };

export type BrevoClientOptions = BrevoTransportOptions & BrevoCallRules;

export interface BrevoCallRules {
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
  /**
   * Who judges a refusal of the request itself: a redirect (3xx), a refused key or account
   * (401, 402, 403), or an address the policy refuses at send time.
   * - "client" (default): a ConfigError naming BREVO_API_URL or the key, kept for redelivery and
   *   alarmed (the connector, `npm run gdpr:delete`);
   * - "caller": the answer is returned like any other 4xx, and the address refusal thrown as the
   *   transport's ValidationError, for a caller with a status rule of its own (the cohort Brevo
   *   list, lib/destinations/http.ts: a refused key or a redirect fails the sync's run at once, as
   *   Mixpanel pauses a sync on them).
   */
  readonly refusalsJudgedBy?: "client" | "caller";
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

/**
 * The Brevo base URL under the cohort destinations' address rule (lib/util/address-policy.ts);
 * a private address would turn the forwarder into a way into the VPC. Checked when the client is
 * built; every DNS answer is checked again at send time by the guarded fetch.
 */
export function checkBrevoBaseUrl(raw: string, policy: AddressPolicy): URL {
  const problem = destinationUrlProblem(raw, "BREVO_API_URL", policy);
  if (problem !== undefined) throw new ConfigError(problem);
  return new URL(raw);
}

/**
 * The SDK hands back parsed JSON (or the text of an answer that is not JSON); the relay's callers
 * read text. A 2xx answer that is not JSON comes back from the SDK as `{ok: false, error: {rawBody}}`.
 */
function bodyText(data: unknown): string {
  if (data === undefined || data === null) return "";
  if (typeof data === "string") return data;
  if (typeof data === "object" && "ok" in data && data.ok === false && "error" in data) {
    const error: unknown = data.error;
    if (error !== null && typeof error === "object" && "rawBody" in error && typeof error.rawBody === "string") return error.rawBody;
  }
  return JSON.stringify(data);
}

function answerOf(answer: BrevoRawAnswer): HttpResult {
  return { status: answer.rawResponse.status, headers: answer.rawResponse.headers, body: bodyText(answer.data) };
}

interface SdkError {
  readonly statusCode?: number;
  readonly body?: unknown;
  readonly rawResponse?: { readonly status: number; readonly headers: Headers };
  readonly cause?: unknown;
  readonly message: string;
}

/** The SDK's errors: BrevoError (with `statusCode`, `body`, `rawResponse`), its per-status subclasses, BrevoTimeoutError. */
function sdkError(error: unknown): SdkError | undefined {
  if (!(error instanceof Error)) return undefined;
  if (!("rawResponse" in error) && !("statusCode" in error) && error.name !== "BrevoTimeoutError") return undefined;
  return error;
}

class BrevoRequestTimeout extends Error {
  override readonly name = "BrevoRequestTimeout";
}

export function createBrevoClient(options: BrevoClientOptions): BrevoClient {
  const { baseUrl, transport } =
    options.addressPolicy === undefined
      ? { baseUrl: new URL(options.baseUrl), transport: options.fetch }
      : {
          baseUrl: checkBrevoBaseUrl(options.baseUrl, options.addressPolicy),
          transport: options.fetch ?? createGuardedFetch({ policy: options.addressPolicy }),
        };
  const base = baseUrl.toString().replace(/\/+$/, "");
  const basePath = baseUrl.pathname.replace(/\/+$/, "");
  const gates = options.gates ?? newBrevoRateGates();
  const callerJudgesRefusals = options.refusalsJudgedBy === "caller";
  // Whatever the transport, no redirect is followed: a followed 307/308 would send the api-key
  // header and the contacts' data on to a host nobody validated.
  const sdkFetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    try {
      return await transport(typeof input === "string" || input instanceof URL ? input : input.url, { ...init, redirect: "manual" });
    } catch (error) {
      if (init?.signal?.aborted && !(error instanceof ValidationError)) throw new BrevoRequestTimeout(`timed out after ${options.timeoutMs} ms`);
      throw error;
    }
  };
  let sdk: Promise<BrevoSdk> | undefined;
  // The SDK is read at the first call: a chunk of its own in the bundles (infra/build.ts).
  const loadSdk = () =>
    (sdk ??= import("./sdk.js").then(({ createBrevoSdk }) =>
      createBrevoSdk({ baseUrl: base, apiKey: options.apiKey, timeoutMs: options.timeoutMs, fetch: sdkFetch as typeof fetch }),
    ));
  let calls = 0;
  const left = () => options.retryDeps.remainingMs();

  function operationOf(method: string, path: string, body: unknown): BrevoOperationCall {
    const url = new URL(`${base}${path}`);
    const segments = url.pathname
      .slice(basePath.length)
      .split("/")
      .filter((segment) => segment !== "")
      .map((segment) => decodeURIComponent(segment));
    return { method, segments, query: Object.fromEntries(url.searchParams), body };
  }

  async function send(method: string, path: string, body: unknown): Promise<HttpResult> {
    const pending = (await loadSdk())(operationOf(method, path, body));
    // A path the relay never builds: a programming error, not Brevo's answer.
    if (pending === undefined) throw new Error(`no Brevo SDK operation for ${method} ${path}`);
    try {
      return answerOf(await pending);
    } catch (error) {
      const failure = sdkError(error);
      if (failure === undefined) throw error;
      if (failure.statusCode !== undefined && failure.rawResponse !== undefined) {
        return { status: failure.statusCode, headers: failure.rawResponse.headers, body: bodyText(failure.body) };
      }
      // No answer: the transport refused the address (configuration), or the network or the timeout failed.
      if (failure.cause instanceof ValidationError) {
        if (callerJudgesRefusals) throw failure.cause;
        throw new ConfigError(`BREVO_API_URL: ${failure.cause.message}`);
      }
      const reason = failure.cause instanceof Error ? failure.cause.message : failure.message;
      throw new RetryableError(`request to ${baseUrl.host} failed: ${reason}`);
    }
  }

  async function once(method: string, path: string, body: unknown, bucket: BrevoBucket, mayWait: boolean): Promise<HttpResult> {
    const wait = gates[bucket] - options.now();
    if (wait > 0 && !mayWait) throw new BrevoBucketWaitError(bucket, wait);
    if (wait > 0) {
      // A wait that does not fit hands the work back (SQS redelivers it) instead of sleeping past the deadline.
      if (wait >= left()) throw new RetryableError(`Brevo ${bucket} rate limit resets in ${Math.ceil(wait / 1000)} s, past this invocation's deadline`, wait, 429);
      await options.retryDeps.sleep(wait);
    }
    if (left() <= 0) throw new RetryableError("no time left in this invocation for another Brevo call");
    calls++;
    const result = await send(method, path, body);
    const status = result.status;
    const closedFor = noteRateLimit(gates, bucket, status, result.headers, options.now());
    const excerpt = result.body.slice(0, 500);
    if (status === 429) throw new RetryableError(`Brevo ${method} ${path} rate limited (429): ${excerpt}`, closedFor ?? 1000, 429);
    if (status === 408 || status === 425 || status >= 500) throw new RetryableError(`Brevo ${method} ${path} answered ${status}: ${excerpt}`, undefined, status);
    if (callerJudgesRefusals) return result;
    if (status >= 300 && status < 400) {
      throw new ConfigError(`Brevo ${method} ${path} answered a redirect (${status}) to ${result.headers.get("location") ?? "?"}; check BREVO_API_URL`, status);
    }
    if (status === 401 || status === 402 || status === 403) throw new ConfigError(`Brevo refused the API key (${status}): ${excerpt}`, status);
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
