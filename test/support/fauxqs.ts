import { buildApp } from "fauxqs";

/**
 * An in-process SQS/S3 protocol server (fauxqs) on 127.0.0.1 only: fauxqs 1.x's own
 * startFauxqs() listens on 0.0.0.0, which would expose it to the network.
 */
export async function startLocalAws(): Promise<{ address: string; stop(): Promise<void> }> {
  const app = buildApp({ logger: false });
  const address = await app.listen({ port: 0, host: "127.0.0.1" });
  return { address, stop: () => app.close() };
}
