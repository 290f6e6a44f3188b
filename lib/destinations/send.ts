import { RetryableError } from "../util/errors.js";
import { type FetchLike, type HttpResult, fetchText } from "../http/fetch.js";
import { type Resolver, createGuardedFetch } from "../http/guarded-fetch.js";
import { withRetry } from "../http/retry.js";
import { type DestinationNetwork, type SenderDeps, throwForDestinationStatus } from "./http.js";

/**
 * The one send path of every destination (webhook, Brevo, Braze). It owns:
 *
 *  - the address rule: the request goes through the guarded fetch of the
 *    destination's policy (DNS answers checked, connection pinned to the checked
 *    address, see lib/http/guarded-fetch.ts);
 *  - redirects: never followed, a 3xx is a permanent refusal naming `Location`
 *    (lib/http/fetch.ts);
 *  - the timeout of one request (deps.timeoutMs) and the shared retry policy;
 *  - the deadline: no attempt starts without time left in the invocation
 *    (deps.retryDeps.remainingMs); a wait that does not fit hands the page back
 *    to SQS as a RetryableError;
 *  - the status meaning (throwForDestinationStatus).
 *
 * The senders are body builders plus calls to `sendToDestination`; vendor quirks
 * ride on the hooks.
 */
export function createDestinationNetwork(options: { localStage: boolean; resolve?: Resolver }): DestinationNetwork {
  const cache = new Map<boolean, FetchLike>();
  return {
    fetchFor(allowPrivate) {
      let fetchImpl = cache.get(allowPrivate);
      if (!fetchImpl) {
        fetchImpl = createGuardedFetch({
          policy: { allowPrivate, localStage: options.localStage },
          ...(options.resolve ? { resolve: options.resolve } : {}),
        });
        cache.set(allowPrivate, fetchImpl);
      }
      return fetchImpl;
    },
  };
}

/** Thrown by a hook when a wait or a call no longer fits in the invocation: the page goes back to SQS. */
export class OutOfTime extends Error {
  override readonly name = "OutOfTime";
  constructor(
    message: string,
    readonly retryAfterMs: number | undefined,
  ) {
    super(message);
  }
}

export interface DestinationCall {
  /** For messages: "webhook hooks.example.com", "Brevo contact import". */
  readonly what: string;
  readonly url: string;
  readonly allowPrivate: boolean;
  /** POST (default) with `body`, or GET (a status follow-up) without one. */
  readonly method?: "POST" | "GET";
  /** Built per attempt (a webhook signature carries the attempt's timestamp). */
  readonly headers: () => Record<string, string>;
  readonly body?: string;
  /** Before every attempt (Brevo's rate gate); may throw OutOfTime. */
  readonly beforeAttempt?: () => Promise<void>;
  /**
   * Reads every answer before the status rule (rate-limit headers, harmless
   * refusals). "accept" = delivered whatever the status; may throw.
   */
  readonly inspect?: (result: HttpResult) => "accept" | undefined;
  /** Reads a 2xx answer (a webhook's `status: "failure"` reply); may throw. */
  readonly onSuccess?: (result: HttpResult) => void;
}

export async function sendToDestination(call: DestinationCall, deps: SenderDeps): Promise<HttpResult> {
  const fetchImpl = deps.network.fetchFor(call.allowPrivate);
  try {
    return await withRetry(
      async () => {
        await call.beforeAttempt?.();
        if (deps.retryDeps.remainingMs() <= 0) {
          throw new OutOfTime(`${call.what}: no time left in this invocation for another call; left for redelivery`, undefined);
        }
        const result = await fetchText(
          fetchImpl,
          call.url,
          { method: call.method ?? "POST", headers: call.headers(), ...(call.body !== undefined ? { body: call.body } : {}) },
          deps.timeoutMs,
        );
        if (call.inspect?.(result) === "accept") return result;
        throwForDestinationStatus(result, call.what, deps.now());
        call.onSuccess?.(result);
        return result;
      },
      deps.retryDeps,
      deps.retryPolicy,
    );
  } catch (error) {
    if (error instanceof OutOfTime) throw new RetryableError(error.message, error.retryAfterMs);
    throw error;
  }
}
