import { randomUUID } from "node:crypto";
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from "aws-lambda";
import { type CompatHttpRequest, handleMixpanelCompat, matchCompatEndpoint } from "../../lib/intake/mixpanel-compat/handler.js";
import { correlationIdFor, crashResponse, handleIntake } from "../../lib/intake/process.js";
import { intakeDepsFrom } from "../../lib/runtime/intake.js";
import { invocationClock, withTelemetry } from "../../lib/observability/handler.js";
import { count, logger } from "../../lib/observability/telemetry.js";
import { logInsertIdHashes } from "../../lib/observability/trace-ids.js";
import { createLiteRuntimeContext, once } from "../../lib/runtime/lite-context.js";

const deps = once(() => intakeDepsFrom(createLiteRuntimeContext(process.env, "intake")));

function toRequest(event: APIGatewayProxyEventV2): CompatHttpRequest {
  const headers: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(event.headers ?? {})) headers[name.toLowerCase()] = value;
  const body =
    event.body === undefined ? undefined : Buffer.from(event.body, event.isBase64Encoded ? "base64" : "utf8");
  return {
    method: event.requestContext.http.method.toUpperCase(),
    path: event.rawPath,
    headers,
    query: event.queryStringParameters ?? {},
    body,
    rawQuery: event.rawQueryString,
    sourceIp: event.requestContext.http.sourceIp,
  };
}

/**
 * Metric names for CloudWatch alarms (keep them stable): every 5xx the intake answers (our own
 * dependency failed or we crashed) and every 401 (a sender with a wrong or rotated-out token).
 */
export const INTAKE_5XX_METRIC = "Intake5xx";
export const INTAKE_UNAUTHORIZED_METRIC = "IntakeUnauthorized";

const clock = invocationClock();

/** The correlation id a crash answer carries: the sender's when it is safe, else a new one. */
function crashKeys(event: APIGatewayProxyEventV2): Record<string, unknown> {
  const headers: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(event?.headers ?? {})) headers[name.toLowerCase()] = value;
  return { correlationId: correlationIdFor({ headers }, randomUUID), status: 503, path: String(event?.rawPath) };
}

export const handler = withTelemetry(
  clock,
  async (event: APIGatewayProxyEventV2, invocation): Promise<APIGatewayProxyStructuredResultV2> => {
    count("IntakeRequests", 1);
    const request = toRequest(event);
    // Mixpanel's own endpoints (/track, /engage, /groups, /import) when the stage enables them.
    const compatEndpoint = matchCompatEndpoint(request.path, deps().config);
    const result = compatEndpoint
      ? await handleMixpanelCompat(request, compatEndpoint, deps())
      : await handleIntake(request, deps());
    invocation.correlate(result.correlationId);
    const status = result.response.statusCode;
    if (result.summary) {
      count("EventsAccepted", result.summary.accepted);
      count("EventsRejected", result.summary.rejected);
      count("EventsDropped", result.summary.dropped);
      // With the queued events' hashed insert ids, for `npm run trace` (lib/observability/trace-ids.ts).
      logInsertIdHashes("intake batch", { source: result.source, ...result.summary }, result.insertIdHashes ?? [], { evenWithout: true });
    } else if (status >= 500) {
      count(INTAKE_5XX_METRIC, 1);
      logger.error("intake answered 5xx", { status, path: request.path, cause: result.cause ?? "unknown" });
    } else if (status >= 400) {
      if (status === 401) count(INTAKE_UNAUTHORIZED_METRIC, 1);
      logger.warn("intake refused request", { status, path: request.path });
    }
    return result.response;
  },
  {
    // Only our own faults or bad configuration reach here; senders retry 5xx.
    failureMessage: "intake failed",
    failureKeys: crashKeys,
    onFailure: (_event, _error, keys) => {
      count(INTAKE_5XX_METRIC, 1);
      return crashResponse(String(keys.correlationId));
    },
  },
);
