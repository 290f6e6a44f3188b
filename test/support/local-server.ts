import type { Server } from "node:http";
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

/** Closes the server and any kept-alive connections, so tests end promptly. */
export async function closeServer(server: Server | undefined): Promise<void> {
  if (!server) return;
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}
