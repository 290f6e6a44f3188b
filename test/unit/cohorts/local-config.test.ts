import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  DEFAULT_LOCAL_BRAZE_PORT,
  DEFAULT_LOCAL_BREVO_PORT,
  DEFAULT_LOCAL_RECEIVER_PORT,
  LOCAL_WEBHOOK_BASIC_AUTH,
  localSecrets,
  retargetLocalPeers,
  retargetLocalReceiver,
} from "../../../infra/local/cohorts.js";
import { destinationEndpoint } from "../../../lib/config/cohort-syncs.js";
import { parseStageConfig } from "../../../lib/config/stage.js";

/** `npm start` with WEBHOOK_RECEIVER_PORT: the cohort target of config/local.json follows the receiver. */
describe("config/local.json follows WEBHOOK_RECEIVER_PORT", () => {
  const raw: unknown = JSON.parse(readFileSync("config/local.json", "utf8"));

  it("names the receiver on its default port", () => {
    const config = parseStageConfig(raw, "config/local.json", "local");
    const destination = config.cohort_syncs[0]?.destination;
    expect(destination?.type === "webhook" && destination.url).toBe(`http://127.0.0.1:${DEFAULT_LOCAL_RECEIVER_PORT}/hook`);
  });

  it("moves the local receiver's URL to another port, and the result is still a valid local config", () => {
    const { config, moved } = retargetLocalReceiver(JSON.parse(JSON.stringify(raw)), 3999);
    expect(moved).toEqual(["http://127.0.0.1:3999/hook"]);
    const parsed = parseStageConfig(config, "moved", "local");
    const destination = parsed.cohort_syncs[0]?.destination;
    expect(destination?.type === "webhook" && destination.url).toBe("http://127.0.0.1:3999/hook");
  });

  it("leaves other destinations alone", () => {
    const other = { cohort_syncs: [{ destination: { type: "webhook", url: "https://hooks.example.com:3002/hook" } }, { destination: { type: "brevo" } }] };
    expect(retargetLocalReceiver(other, 4000).moved).toEqual([]);
    expect(retargetLocalReceiver(raw, DEFAULT_LOCAL_RECEIVER_PORT).moved).toEqual([]);
  });
});

describe("config/local.json: one cohort sync of each destination kind, every secret served", () => {
  const raw: unknown = JSON.parse(readFileSync("config/local.json", "utf8"));
  const config = parseStageConfig(raw, "config/local.json", "local");

  it("has a webhook, a Brevo list and a Braze sync, pointing at the local peers' default ports", () => {
    expect(config.cohort_syncs.map((sync) => sync.destination.type).sort()).toEqual(["braze", "brevo", "webhook"]);
    const endpoints = config.cohort_syncs.map((sync) => destinationEndpoint(sync.destination).url);
    expect(endpoints).toEqual([
      `http://127.0.0.1:${DEFAULT_LOCAL_RECEIVER_PORT}/hook`,
      `http://127.0.0.1:${DEFAULT_LOCAL_BREVO_PORT}/v3`,
      `http://127.0.0.1:${DEFAULT_LOCAL_BRAZE_PORT}`,
    ]);
  });

  it("moves every local peer to its port; a valid local config results", () => {
    const { config: moved, moved: urls } = retargetLocalPeers(JSON.parse(JSON.stringify(raw)), { webhook: 4001, brevo: 4002, braze: 4003 });
    expect(urls).toEqual(["http://127.0.0.1:4001/hook", "http://127.0.0.1:4002/v3", "http://127.0.0.1:4003"]);
    const parsed = parseStageConfig(moved, "moved", "local");
    expect(parsed.cohort_syncs.map((sync) => destinationEndpoint(sync.destination).url)).toEqual(urls);
  });

  it("serves a value for every secret the config names: local defaults, or the variables that override them", () => {
    const options = { brevoSandboxKey: "sandbox-key", brazeKey: "braze-key", signingSecret: "signing-secret-0123456789" };
    const named = [
      config.brevo?.api_key_secret,
      ...config.cohort_syncs.flatMap((sync) => {
        const d = sync.destination;
        return d.type === "webhook" ? [d.signing_secret, d.basic_auth_secret] : [d.api_key_secret];
      }),
    ].filter((name): name is string => name !== undefined);
    const { secrets, missing } = localSecrets(config, {}, options);
    expect(missing).toEqual([]);
    expect(secrets.map((s) => s.name).sort()).toEqual([...new Set(named)].sort());
    const byName = new Map(secrets.map((s) => [s.name, s.value]));
    expect(byName.get("mixpanel-relay/local/destinations/braze")).toEqual({ api_key: "braze-key" });
    expect(byName.get("mixpanel-relay/local/destinations/brevo")).toEqual({ api_key: "sandbox-key" });
    expect(byName.get("mixpanel-relay/local/destinations/webhook-signing")).toEqual({ secret: "signing-secret-0123456789" });
  });

  it("without the Brevo sandbox the Brevo key comes from BREVO_API_KEY, and its absence is named", () => {
    const options = { brevoSandboxKey: undefined, brazeKey: "k", signingSecret: "s" };
    expect(localSecrets(config, {}, options).missing).toEqual(["mixpanel-relay/local/destinations/brevo (set BREVO_API_KEY)"]);
    const served = localSecrets(config, { BREVO_API_KEY: "xkeysib-real" }, options).secrets.find((s) => s.name === "mixpanel-relay/local/destinations/brevo");
    expect(served).toEqual({ name: "mixpanel-relay/local/destinations/brevo", value: { api_key: "xkeysib-real" }, source: "BREVO_API_KEY" });
  });

  it("basic auth and the PII hash key get local defaults", () => {
    const withExtras = parseStageConfig(
      {
        pii: { properties: { $email: "hash" }, hash_key_secret: "local/pii" },
        cohort_syncs: [{ id: "w", cohort_id: 1, destination: { type: "webhook", url: "http://127.0.0.1:3002/hook", signing_secret: "local/sign", basic_auth_secret: "local/basic" } }],
      },
      "extras",
      "local",
    );
    const byName = new Map(localSecrets(withExtras, {}, { brevoSandboxKey: "x", brazeKey: "y", signingSecret: "z" }).secrets.map((s) => [s.name, s.value]));
    expect(byName.get("local/basic")).toEqual(LOCAL_WEBHOOK_BASIC_AUTH);
    expect(byName.get("local/pii")?.key?.length ?? 0).toBeGreaterThanOrEqual(32);
  });
});
