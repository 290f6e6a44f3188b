import { ConfigError, RetryableError, UpstreamRejectedError, ValidationError } from "../util/errors.js";
import { parseRetryAfterMs } from "./retry.js";

export type FetchLike = (input: string | URL, init?: RequestInit) => Promise<Response>;

export interface HttpResult {
  readonly status: number;
  readonly headers: Headers;
  readonly body: string;
}

/**
 * fetch with a hard timeout. Network failures and timeouts become RetryableError
 * so the shared retry policy treats them like a 503. Node's fetch keeps
 * connections alive by default, which matters for warm Lambda containers.
 *
 * Redirects are never followed (`redirect: "manual"`, whatever the caller
 * passes): every outbound call of the relay carries data or credentials, and a
 * followed 301/302 turns a signed POST into a body-less GET whose 2xx would
 * count as delivered, while a 307/308 re-posts members and an `api-key` header
 * to a host nobody validated. throwForStatus turns the 3xx into a refusal.
 */
export async function fetchText(
  fetchImpl: FetchLike,
  url: string | URL,
  init: RequestInit,
  timeoutMs: number,
): Promise<HttpResult> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    const response = await fetchImpl(url, { ...init, redirect: "manual", signal: controller.signal });
    const body = await response.text();
    return { status: response.status, headers: response.headers, body };
  } catch (error) {
    // A refusal decided before any byte left (a destination resolving to a private address) is permanent.
    if (error instanceof ValidationError) throw error;
    const reason = controller.signal.aborted ? `timed out after ${timeoutMs} ms` : String(error);
    throw new RetryableError(`request to ${new URL(url).host} failed: ${reason}`);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The shared meaning of a status code for every destination: 2xx fine;
 * 3xx a permanent refusal (redirects are never followed, see fetchText; the
 * reason names the `Location`); 408/429/5xx transient; 401/403 configuration;
 * any other 4xx a permanent refusal.
 * Callers with vendor quirks (Mixpanel's 400 partial success, 413 split) handle
 * those codes before falling back to this.
 */
export function throwForStatus(result: HttpResult, what: string, nowMs: number): void {
  const { status, body } = result;
  if (status >= 200 && status < 300) return;
  const excerpt = body.slice(0, 500);
  if (status >= 300 && status < 400) {
    const location = result.headers.get("location") ?? "(no Location header)";
    throw new UpstreamRejectedError(
      `${what} answered a redirect (${status}) to ${location}; redirects are never followed for requests that carry data or credentials`,
      status,
      body,
    );
  }
  if (status === 408 || status === 429 || status >= 500) {
    throw new RetryableError(
      `${what} answered ${status}: ${excerpt}`,
      parseRetryAfterMs(result.headers.get("retry-after"), nowMs),
      status,
    );
  }
  if (status === 401 || status === 403) {
    throw new ConfigError(`${what} refused the credentials (${status}): ${excerpt}`, status);
  }
  throw new UpstreamRejectedError(`${what} rejected the request (${status}): ${excerpt}`, status, body);
}
