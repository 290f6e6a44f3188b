import { afterEach } from "vitest";
import { type BrevoClient, type BrevoClientOptions, createBrevoClient } from "../../lib/brevo/client.js";
import { type BrevoConfig, brevoConfigSchema } from "../../lib/config/brevo.js";
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

/** The connector syncing profiles and their companies (group key `company_id`), first names as FIRSTNAME. */
export const PROFILES_WITH_COMPANIES: BrevoConfig = brevoConfigSchema.parse({
  api_key_secret: "s",
  sync: { profiles: true, groups: true },
  identifiers: { ext_id: "distinct_id" },
  property_mapping: { $first_name: "FIRSTNAME" },
  companies: { group_keys: ["company_id"] },
});

/**
 * A local Brevo on the clock `now` whose "all other endpoints" bucket (companies, link-unlink)
 * takes `otherLimit` calls an hour, holding the company of group `company_id:acme`.
 */
export async function startBrevoWithAcme(
  start: ReturnType<typeof localBrevos>,
  options: { readonly apiKey: string; readonly otherLimit: number; readonly now: () => number },
): Promise<BrevoServer> {
  const server = await start({ ...options, windowMs: 1000, otherWindowMs: 3_600_000 });
  server.companies.set("c-acme", { id: "c-acme", name: "Acme", attributes: { mixpanel_group: "company_id:acme" }, linkedContactsIds: [] });
  return server;
}
