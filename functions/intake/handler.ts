import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from "aws-lambda";
import { describeError } from "../../lib/errors.js";
import { handleIntake, type HttpRequest } from "../../lib/intake/process.js";
import { intakeDepsFrom } from "../../lib/intake/runtime.js";
import { count, logger, publishMetrics } from "../../lib/observability/telemetry.js";
import { createLiteRuntimeContext, once } from "../../lib/runtime/lite-context.js";

const deps = once(() => intakeDepsFrom(createLiteRuntimeContext()));

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

export async function handler(event: APIGatewayProxyEventV2): Promise<APIGatewayProxyStructuredResultV2> {
  try {
    const result = await handleIntake(toRequest(event), deps());
    logger.appendKeys({ correlationId: result.correlationId });
    count("IntakeRequests", 1);
    if (result.summary) {
      count("EventsAccepted", result.summary.accepted);
      count("EventsRejected", result.summary.rejected);
      count("EventsDropped", result.summary.dropped);
      logger.info("intake batch", { source: result.source, ...result.summary });
    } else if (result.response.statusCode >= 400) {
      logger.warn("intake refused request", { status: result.response.statusCode, path: event.rawPath });
    }
    return result.response;
  } catch (error) {
    // Only our own faults or bad configuration reach here; senders retry 5xx.
    logger.error("intake failed", { error: describeError(error) });
    return {
      statusCode: 503,
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ error: "unavailable", message: "the relay cannot accept data right now; retry later" }),
    };
  } finally {
    publishMetrics();
    logger.removeKeys(["correlationId"]);
  }
}
