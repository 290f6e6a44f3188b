import type { Server } from "node:http";
import { createRoutedServer } from "../../infra/local/peers/local-server.js";

/** What an AWS JSON-protocol handler answers: an HTTP status and a JSON payload. */
export interface AwsJsonAnswer {
  readonly status: number;
  readonly payload: unknown;
}

/**
 * An AWS JSON 1.0/1.1 protocol server for the local stand-ins of AWS services:
 * POST only, SigV4-signed requests only (403 otherwise, as AWS), the operation
 * from `x-amz-target`, the body parsed as JSON, answers with `__type` errors.
 */
export function createAwsJsonServer(
  jsonVersion: "1.0" | "1.1",
  handle: (target: string, body: Record<string, unknown>) => AwsJsonAnswer,
): Server {
  return createRoutedServer(async (request, response) => {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
    const signed = request.method === "POST" && String(request.headers.authorization ?? "").startsWith("AWS4-HMAC-SHA256");
    const answer = signed
      ? handle(String(request.headers["x-amz-target"] ?? ""), JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}") as Record<string, unknown>)
      : { status: 403, payload: { __type: "AccessDeniedException", message: "unsigned request" } };
    response.writeHead(answer.status, { "content-type": `application/x-amz-json-${jsonVersion}` });
    response.end(JSON.stringify(answer.payload));
  });
}

export const awsError = (status: number, type: string, message: string): AwsJsonAnswer => ({ status, payload: { __type: type, message } });
