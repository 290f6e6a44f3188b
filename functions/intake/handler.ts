import { randomUUID } from "node:crypto";
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from "aws-lambda";
import { describeError } from "../../lib/errors.js";
import { correlationIdFor, crashResponse, handleIntake, type HttpRequest } from "../../lib/intake/process.js";
import { intakeDepsFrom } from "../../lib/intake/runtime.js";
import { count, logger, publishMetrics } from "../../lib/observability/telemetry.js";
import { createRuntimeContext, once } from "../../lib/runtime/context.js";

const deps = once(() => intakeDepsFrom(createRuntimeContext()));

function toRequest(event: APIGatewayProxyEventV2): HttpRequest {
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
  };
}

/**
 * Metric names for CloudWatch alarms (keep them stable): every 5xx the intake answers (our own
 * dependency failed or we crashed) and every 401 (a sender with a wrong or rotated-out token).
 */
export const INTAKE_5XX_METRIC = "Intake5xx";
export const INTAKE_UNAUTHORIZED_METRIC = "IntakeUnauthorized";

export async function handler(event: APIGatewayProxyEventV2): Promise<APIGatewayProxyStructuredResultV2> {
  let request: HttpRequest | undefined;
  try {
    request = toRequest(event);
    const result = await handleIntake(request, deps());
    logger.appendKeys({ correlationId: result.correlationId });
    count("IntakeRequests", 1);
    const status = result.response.statusCode;
    if (result.summary) {
      count("EventsAccepted", result.summary.accepted);
      count("EventsRejected", result.summary.rejected);
      count("EventsDropped", result.summary.dropped);
      logger.info("intake batch", { source: result.source, ...result.summary });
    } else if (status >= 500) {
      count(INTAKE_5XX_METRIC, 1);
      logger.error("intake answered 5xx", { status, path: request.path, cause: result.cause ?? "unknown" });
    } else if (status >= 400) {
      if (status === 401) count(INTAKE_UNAUTHORIZED_METRIC, 1);
      logger.warn("intake refused request", { status, path: request.path });
    }
    return result.response;
  } catch (error) {
    // Only our own faults or bad configuration reach here; senders retry 5xx.
    const correlationId = request ? correlationIdFor(request, randomUUID) : randomUUID();
    count(INTAKE_5XX_METRIC, 1);
    logger.error("intake failed", {
      correlationId,
      status: 503,
      path: request?.path ?? String(event.rawPath),
      error: describeError(error),
      stack: error instanceof Error ? error.stack : undefined,
    });
    return crashResponse(correlationId);
  } finally {
    publishMetrics();
    logger.removeKeys(["correlationId"]);
  }
}
