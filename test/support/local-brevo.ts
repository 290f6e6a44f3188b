import { afterEach } from "vitest";
import { type BrevoClient, type BrevoClientOptions, createBrevoClient } from "../../lib/brevo/client.js";
import type { BrevoConfig } from "../../lib/config/brevo.js";
import { type BrevoSenderDeps, createBrevoSend } from "../../lib/forwarder/brevo.js";
import { BrevoServer, type BrevoServerOptions } from "../../infra/local/peers/brevo-server.js";

/**
 * The setup Brevo tests share: a local Brevo (infra/local/peers/brevo-server.ts), the relay's own
 * Brevo client pointed at it, and the connector's sender on that client.
 */

/**
 * Starts local Brevos for the tests of one file; each is closed after the test that started it.
 * Defaults: no lists, a contacts limit no test reaches.
 */
export function localBrevos(): (options: Partial<BrevoServerOptions> & { readonly apiKey: string }) => Promise<BrevoServer> {
  const open: BrevoServer[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((server) => server.close()));
  });
  return async (options) => {
    const server = new BrevoServer({ listIds: [], limit: 100_000, ...options });
    open.push(server);
    await server.start();
    return server;
  };
}

/**
 * The relay's Brevo client for `brevo`: the local stage's address rule (plain http to loopback),
 * no real waits and a minute left in the invocation unless `overrides` say otherwise.
 */
export function localBrevoClient(brevo: BrevoServer, apiKey: string, overrides: Partial<BrevoClientOptions> = {}): BrevoClient {
  return createBrevoClient({
    addressPolicy: { allowPrivate: false, localStage: true },
    baseUrl: brevo.url,
    apiKey: async () => apiKey,
    timeoutMs: 5_000,
    retryDeps: { sleep: async () => undefined, random: () => 0, remainingMs: () => 60_000 },
    now: Date.now,
    ...overrides,
  });
}

/** The connector's sender on `client`: simplified identity, events in batches of 100 unless `overrides` say otherwise. */
export function localBrevoSend(client: BrevoClient, config: BrevoConfig, overrides: Partial<BrevoSenderDeps> = {}): ReturnType<typeof createBrevoSend> {
  return createBrevoSend({ client, config, identityMode: "simplified", eventsBatchSize: 100, ...overrides });
}
