import { afterAll, beforeAll } from "vitest";
import type { SenderDeps } from "../../lib/destinations/http.js";
import { createDestinationNetwork } from "../../lib/destinations/send.js";
import { createSecretReader } from "../../lib/secrets/secrets.js";
import { SecretsManagerServer } from "../../infra/local/peers/secrets-manager-server.js";

/** The setup the cohort destination senders' tests share: their secrets, and their deps on a test clock. */

/**
 * A local Secrets Manager holding `values` (secret id → JSON) for the tests of one file: started
 * before them, stopped after. Answers its endpoint once started.
 */
export function localSecrets(values: Readonly<Record<string, unknown>>): () => string {
  const server = new SecretsManagerServer();
  let endpoint = "";
  beforeAll(async () => {
    endpoint = await server.start();
    for (const [id, value] of Object.entries(values)) server.setSecret(id, value);
    process.env.AWS_ACCESS_KEY_ID ??= "test";
    process.env.AWS_SECRET_ACCESS_KEY ??= "test";
  });
  afterAll(() => server.stop());
  return () => endpoint;
}

export interface TestTime {
  now(): number;
  advance(ms: number): void;
}

/**
 * A sender's deps on `time`: the local stage's network rule, a 5 s request timeout, each retry
 * wait recorded in `sleeps` and passed on the clock instead of slept, `remainingMs` as the
 * invocation's time left, secrets read from `secretsEndpoint`.
 */
export function sendersOnTestTime(time: TestTime, sleeps: number[], remainingMs: () => number, secretsEndpoint: string): SenderDeps {
  return {
    network: createDestinationNetwork({ localStage: true }),
    timeoutMs: 5_000,
    retryDeps: {
      sleep: async (ms) => {
        sleeps.push(ms);
        time.advance(ms);
      },
      random: () => 0.5,
      remainingMs,
    },
    now: () => time.now(),
    secrets: createSecretReader({ region: "us-east-1", endpoint: secretsEndpoint, ttlSeconds: 300 }),
    warn: () => {},
  };
}
