import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as z from "zod";
import { ConfigError, RetryableError } from "../../lib/util/errors.js";
import { mixpanelCredentialsSource } from "../../lib/mixpanel/credentials.js";
import { readEnv } from "../../lib/config/env.js";
import { createSecretReader } from "../../lib/secrets/secrets.js";
import { intakeTokenSource } from "../../lib/intake/auth.js";
import { SecretsManagerServer } from "../../infra/local/peers/secrets-manager-server.js";

const server = new SecretsManagerServer();
beforeAll(async () => {
  process.env.AWS_ACCESS_KEY_ID ??= "test";
  process.env.AWS_SECRET_ACCESS_KEY ??= "test";
  await server.start();
  server.setSecret("relay/test/mixpanel", {
    project_id: 1234,
    project_token: "tok",
    service_account_username: "sa.user",
    service_account_secret: "sa-secret",
  });
  server.setSecret("relay/test/intake", { tokens: ["a-very-long-intake-token-0001"] });
  server.setSecret("relay/test/bad-shape", { tokens: [] });
});
afterAll(() => server.stop());

describe("secret reader", () => {
  it("reads JSON secrets over the real protocol and caches them per container for the TTL", async () => {
    const reader = createSecretReader({ region: "us-east-1", endpoint: server.url, ttlSeconds: 300 });
    const env = readEnv({ MIXPANEL_SECRET_ID: "relay/test/mixpanel" });
    const source = mixpanelCredentialsSource(env, reader);
    const before = server.calls.length;
    const first = await source();
    const second = await source();
    expect(first).toEqual({
      project_id: "1234",
      project_token: "tok",
      service_account_username: "sa.user",
      service_account_secret: "sa-secret",
    });
    expect(second).toEqual(first);
    expect(server.calls.length - before).toBe(1);
  });

  it("reads intake tokens from their secret", async () => {
    const reader = createSecretReader({ region: "us-east-1", endpoint: server.url, ttlSeconds: 1 });
    const tokens = intakeTokenSource(readEnv({ INTAKE_TOKEN_SECRET_ID: "relay/test/intake" }), reader);
    expect(await tokens()).toEqual(["a-very-long-intake-token-0001"]);
  });

  it("turns a missing secret into a ConfigError and a wrongly shaped one into a ConfigError naming the key", async () => {
    const reader = createSecretReader({ region: "us-east-1", endpoint: server.url, ttlSeconds: 1 });
    await expect(reader.getJson("relay/test/missing", z.object({}))).rejects.toBeInstanceOf(ConfigError);
    const error = await reader
      .getJson("relay/test/bad-shape", z.object({ tokens: z.array(z.string()).min(1) }))
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect(String(error)).toContain("tokens");
  });

  it("treats throttling as retryable", async () => {
    const reader = createSecretReader({ region: "us-east-1", endpoint: server.url, ttlSeconds: 1 });
    server.throttleNext = 5;
    await expect(reader.getJson("relay/test/intake", z.unknown())).rejects.toBeInstanceOf(RetryableError);
    server.throttleNext = 0;
  });

  it("falls back to MIXPANEL_* env vars locally and refuses incomplete ones", async () => {
    const reader = createSecretReader({ region: "us-east-1", endpoint: server.url, ttlSeconds: 1 });
    const ok = mixpanelCredentialsSource(readEnv({ MIXPANEL_PROJECT_TOKEN: "abc" }), reader);
    expect(await ok()).toEqual({ project_token: "abc" });
    const incomplete = mixpanelCredentialsSource(readEnv({ MIXPANEL_SERVICE_ACCOUNT_USERNAME: "u" }), reader);
    await expect(incomplete()).rejects.toBeInstanceOf(ConfigError);
  });
});
