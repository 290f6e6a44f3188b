import type { StageConfig } from "../config/stage.js";
import { enqueueMappedItems } from "../enqueue/enqueue.js";
import { ConfigError, RetryableError, ValidationError, describeError } from "../util/errors.js";
import type { QueueSender } from "../queue/sqs-sender.js";
import type { RejectedStore } from "../queue/rejected-store.js";
import type { MappedItem, RejectedItem } from "../sources/types.js";
import type { PiiPolicy } from "../pii/policy.js";
import type { PiiPolicySource } from "../pii/source.js";
import { bearerToken, tokenMatches, type TokenSource } from "./auth.js";
import { findRoute, type IntakeRequest } from "./routes.js";
import { parseJsonBounded } from "../util/json.js";
import { declaredCharset, decodeText } from "../util/text.js";
import { count } from "../observability/telemetry.js";
import { LONE_SURROGATES_METRIC } from "./text-metrics.js";

/**
 * The intake's whole behaviour, independent of API Gateway: auth, body limits,
 * parsing, mapping, queueing and the rejected store, and the status codes the
 * senders' retry rules expect (docs/vendors/braze-currents.md §2):
 * 2xx only once records are durably queued; 400 only for an unparseable body (not JSON, not
 * valid text in its declared charset, or nested deeper than MAX_JSON_DEPTH);
 * 401 bad token; 413 body too big; 503 when SQS, S3 or secrets fail.
 */
export interface HttpRequest extends IntakeRequest {
  readonly method: string;
  readonly path: string;
  /** Raw body bytes as received. */
  readonly body: Buffer | undefined;
}

export interface HttpResponse {
  readonly statusCode: number;
  readonly headers: Record<string, string>;
  readonly body: string;
}

export interface IntakeDeps {
  readonly config: StageConfig;
  readonly tokens: TokenSource;
  readonly queue: QueueSender;
  readonly queueUrl: string;
  /** The Brevo queue; set when the stage config has a `brevo` block (lib/enqueue/brevo-fanout.ts). */
  readonly brevoQueueUrl?: string | undefined;
  readonly rejected: RejectedStore;
  readonly maxMessageBytes: number;
  readonly maxBodyBytes: number;
  readonly nowMs: () => number;
  readonly newCorrelationId: () => string;
  /** The stage's personal-data rules, applied before anything is queued or stored; absent = none. */
  readonly pii?: PiiPolicySource;
  /** The erased-ids list (lib/privacy/suppression.ts): their records are dropped as `erased`; absent = none. */
  readonly erasedDigests?: () => Promise<ReadonlySet<string>>;
}

export interface IntakeSummary {
  readonly accepted: number;
  readonly rejected: number;
  readonly dropped: number;
}

export interface IntakeResult {
  readonly response: HttpResponse;
  readonly correlationId: string;
  readonly summary?: IntakeSummary;
  readonly source?: string;
  /** Why a 5xx was answered (our own dependency failed): logged beside the correlation id, never sent. */
  readonly cause?: string;
  /** Hashed `$insert_id`s of the events queued, for the handler's log line (`npm run trace`). */
  readonly insertIdHashes?: readonly string[];
}

function json(statusCode: number, correlationId: string, body: unknown): HttpResponse {
  return {
    statusCode,
    headers: { "content-type": "application/json", "x-correlation-id": correlationId },
    body: JSON.stringify(body),
  };
}

function errorResponse(statusCode: number, correlationId: string, error: string, message: string, cause?: string): IntakeResult {
  return {
    correlationId,
    response: json(statusCode, correlationId, { error, message, correlationId }),
    ...(cause !== undefined ? { cause } : {}),
  };
}

/**
 * The answer when the intake itself failed unexpectedly (a bug or bad configuration):
 * 503 so senders retry, with the correlation id the operator finds in the log line.
 */
export function crashResponse(correlationId: string): HttpResponse {
  return json(503, correlationId, { error: "unavailable", message: "the relay cannot accept data right now; retry later", correlationId });
}

/** A sender's correlation id is kept only when it is safe in S3 keys and logs. */
const SAFE_CORRELATION_ID = /^[A-Za-z0-9._-]{1,128}$/;

/** The sender's `x-correlation-id` when it is safe, else a new one. */
export function correlationIdFor(request: Pick<HttpRequest, "headers">, newCorrelationId: () => string): string {
  const offered = request.headers["x-correlation-id"];
  return offered && SAFE_CORRELATION_ID.test(offered) ? offered : newCorrelationId();
}

export async function handleIntake(request: HttpRequest, deps: IntakeDeps): Promise<IntakeResult> {
  const correlationId = correlationIdFor(request, deps.newCorrelationId);

  if (request.path === "/healthz") {
    if (request.method !== "GET" && request.method !== "HEAD") return errorResponse(405, correlationId, "method_not_allowed", "use GET");
    return { correlationId, response: json(200, correlationId, { status: "ok" }) };
  }
  const route = findRoute(request.path);
  if (!route) return errorResponse(404, correlationId, "not_found", `no route ${request.path}`);
  if (request.method !== "POST") return errorResponse(405, correlationId, "method_not_allowed", "use POST");

  let accepted: readonly string[];
  try {
    accepted = await deps.tokens();
  } catch (error) {
    // Braze and other senders retry 5xx; a 401 here would mark their connector failed.
    return errorResponse(
      503,
      correlationId,
      "unavailable",
      `cannot verify tokens right now: ${error instanceof ConfigError ? "intake tokens are not configured" : "secret store unavailable"}`,
      `intake token store: ${describeError(error)}`,
    );
  }
  const presented = bearerToken(request.headers.authorization);
  if (!presented || !tokenMatches(presented, accepted)) {
    return errorResponse(401, correlationId, "unauthorized", "missing or invalid Authorization: Bearer token");
  }

  const bodyBytes = request.body?.length ?? 0;
  if (bodyBytes > deps.maxBodyBytes) {
    return errorResponse(413, correlationId, "payload_too_large", `body is ${bodyBytes} bytes; the limit is ${deps.maxBodyBytes}`);
  }
  const decoded = decodeText(request.body ?? new Uint8Array(0), declaredCharset(request.headers["content-type"]));
  if (!decoded.ok) return errorResponse(decoded.code === "unsupported_charset" ? 415 : 400, correlationId, decoded.code, decoded.message);
  count(LONE_SURROGATES_METRIC, decoded.loneSurrogates);
  const text = decoded.text.trim();
  let parsed: unknown;
  if (text === "") {
    if (!route.allowEmptyBody) return errorResponse(400, correlationId, "invalid_body", "body is empty");
    parsed = undefined;
  } else {
    const json = parseJsonBounded(text);
    if (!json.ok) {
      if ("code" in json) return errorResponse(json.code === "too_deep" ? 400 : 413, correlationId, json.code, `body refused: ${json.error}`);
      return errorResponse(400, correlationId, "invalid_json", `body is not valid JSON: ${json.error}`);
    }
    parsed = json.value;
  }

  const nowMs = deps.nowMs();
  let items: MappedItem[];
  try {
    items = route.map(parsed, { nowMs, config: deps.config }, request);
  } catch (error) {
    if (error instanceof ValidationError) return errorResponse(400, correlationId, "invalid_body", error.message);
    throw error;
  }

  const enqueued = await enqueueMapped(items, route.source, correlationId, deps);
  if (!enqueued.ok) return errorResponse(503, correlationId, "unavailable", enqueued.message, enqueued.cause);
  const { accepted: acceptedCount, rejections, insertIdHashes } = enqueued;

  const dropped = rejections.filter((item) => item.dropped).length;
  const summary = { accepted: acceptedCount, rejected: rejections.length - dropped, dropped };
  return {
    correlationId,
    source: route.source,
    summary,
    insertIdHashes,
    response: json(acceptedCount > 0 ? 202 : 200, correlationId, {
      ...summary,
      errors: rejections
        .filter((item) => !item.dropped)
        .map(({ index, code, reason }) => ({ index, code, reason })),
      ...(dropped > 0
        ? { dropped_items: rejections.filter((item) => item.dropped).map(({ index, code }) => ({ index, code })) }
        : {}),
      correlationId,
    }),
  };
}

export type EnqueueOutcome =
  | { readonly ok: true; readonly accepted: number; readonly rejections: readonly RejectedItem[]; readonly insertIdHashes: readonly string[] }
  /** `message` is safe to answer; `cause` is our dependency's failure, logged beside the correlation id. */
  | { readonly ok: false; readonly message: string; readonly cause: string };

/**
 * The enqueue step every intake route shares (the /v1 routes and the Mixpanel-compatible
 * ones), lib/enqueue/enqueue.ts, as an outcome the routes answer. `ok: false` when secrets, SQS or S3
 * failed, so the caller answers 503 and the sender retries; nothing is queued unprotected.
 */
export async function enqueueMapped(
  items: readonly MappedItem[],
  source: string,
  correlationId: string,
  deps: Pick<IntakeDeps, "config" | "queue" | "queueUrl" | "brevoQueueUrl" | "rejected" | "maxMessageBytes" | "pii" | "erasedDigests">,
): Promise<EnqueueOutcome> {
  let policy: PiiPolicy | undefined;
  try {
    policy = await deps.pii?.();
  } catch (error) {
    return { ok: false, message: "cannot protect personal data right now; retry later", cause: `pii hash key: ${describeError(error)}` };
  }
  try {
    return { ok: true, ...(await enqueueMappedItems(items, { source, correlationId, stageOfFailure: "intake", policy }, deps)) };
  } catch (error) {
    if (error instanceof RetryableError || error instanceof ConfigError) {
      return { ok: false, message: "could not queue the batch; retry later", cause: `queue or rejected store: ${describeError(error)}` };
    }
    throw error;
  }
}
