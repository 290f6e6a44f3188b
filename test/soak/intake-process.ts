import { createServer } from "node:http";
import { toApiGatewayEvent } from "../../infra/local/stack.js";

/**
 * One intake "Lambda container" for the soak: the real intake handler behind a loopback
 * HTTP front that builds the API Gateway v2 event (as the local stack does). Its
 * configuration comes from the environment the soak sets, read at the first invocation.
 * INTAKE_PORT is fixed so a restarted process takes over the same address.
 */
const { handler } = await import("../../functions/intake/handler.js");

const server = createServer((request, response) => {
  void (async () => {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
    const result = await handler(toApiGatewayEvent(request, Buffer.concat(chunks)));
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(result.headers ?? {})) headers[name] = String(value);
    response.writeHead(result.statusCode ?? 200, headers);
    response.end(result.body ?? "");
  })().catch((error: unknown) => {
    response.writeHead(502, { "content-type": "application/json" });
    response.end(JSON.stringify({ error: "local_invoke_failed", message: String(error) }));
  });
});
server.listen(Number(process.env.INTAKE_PORT), "127.0.0.1", () => process.stdout.write(`${JSON.stringify({ ready: true })}\n`));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
