import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * Start/stop shared by the strict local peers (Mixpanel, Secrets Manager, webhook
 * receiver, Brevo, Braze) and the local stack: loopback only, port 0 = any free port.
 */
export async function listenOnLoopback(server: Server, port = 0, host = "127.0.0.1"): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("server is not listening on a TCP port");
  return (address satisfies AddressInfo).port;
}

/**
 * A loopback port that was free a moment ago (listened on, then closed): for a peer that must
 * be told its port before it starts, or for a port nothing listens on (connections refused).
 */
export async function freeLoopbackPort(): Promise<number> {
  const server = createServer();
  const port = await listenOnLoopback(server);
  await closeServer(server);
  return port;
}

/** Closes the server and any kept-alive connections, so tests end promptly. */
export async function closeServer(server: Server | undefined): Promise<void> {
  if (!server) return;
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** An HTTP server whose async route failing answers a 500 JSON error instead of hanging the client. */
export function createRoutedServer(route: (request: IncomingMessage, response: ServerResponse) => Promise<void>): Server {
  return createServer((request, response) => {
    route(request, response).catch((error: unknown) => {
      response.writeHead(500, { "content-type": "application/json" });
      response.end(JSON.stringify({ error: String(error) }));
    });
  });
}
