import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from "aws-lambda";
import { describeError } from "../../lib/errors.js";
import { type CompatHttpRequest, handleMixpanelCompat, matchCompatEndpoint } from "../../lib/intake/mixpanel-compat/handler.js";
import { handleIntake } from "../../lib/intake/process.js";
import { intakeDepsFrom } from "../../lib/intake/runtime.js";
import { count, logger, publishMetrics } from "../../lib/observability/telemetry.js";
import { createRuntimeContext, once } from "../../lib/runtime/context.js";

const deps = once(() => intakeDepsFrom(createRuntimeContext()));

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

export async function handler(event: APIGatewayProxyEventV2): Promise<APIGatewayProxyStructuredResultV2> {
  try {
    const request = toRequest(event);
    // Mixpanel's own endpoints (/track, /engage, /groups, /import) when the stage enables them.
    const compatEndpoint = matchCompatEndpoint(request.path, deps().config);
    const result = compatEndpoint
      ? await handleMixpanelCompat(request, compatEndpoint, deps())
      : await handleIntake(request, deps());
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
