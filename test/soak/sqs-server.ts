import { buildApp } from "fauxqs";

/**
 * The soak's queue and rejected store: a fauxqs SQS/S3 server in its own process, on
 * 127.0.0.1 only, so it outlives the intake and forwarder processes the soak kills.
 * Prints `{"address": …}` once listening; stops on SIGTERM.
 */
const app = buildApp({ logger: false });
const address = await app.listen({ port: 0, host: "127.0.0.1" });
process.stdout.write(`${JSON.stringify({ address })}\n`);
const stop = () => {
  void app.close().then(() => process.exit(0));
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
