import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "vitest";
import { LOCAL_WEBHOOK_SIGNING_SECRET_NAME } from "../../infra/local/cohorts.js";
import { freeLoopbackPort } from "../../infra/local/peers/local-server.js";
import { type LocalStack, startLocalStack } from "../../infra/local/stack.js";

/** The setup the tests of `npm start`'s local stack share. */

/** Writes `config` as a stage config file in a folder of its own; answers the file's path. */
export function writeStageConfig(config: unknown, folderPrefix: string): string {
  const configFile = join(mkdtempSync(join(tmpdir(), folderPrefix)), "local.json");
  writeFileSync(configFile, JSON.stringify(config));
  return configFile;
}

/** POSTs profile updates to the stack's intake, which must take them all (202). */
export async function sendProfiles(stack: LocalStack, updates: readonly unknown[]): Promise<void> {
  const response = await fetch(`${stack.intakeUrl}/v1/profiles`, {
    method: "POST",
    headers: { authorization: `Bearer ${stack.intakeToken}`, "content-type": "application/json" },
    body: JSON.stringify(updates),
  });
  expect(response.status).toBe(202);
}

/** The cohort side of a stack started with it (cohort syncs or query syncs configured). */
export function cohortSideOf(stack: LocalStack): NonNullable<LocalStack["cohorts"]> {
  if (!stack.cohorts) throw new Error("cohort side not started");
  return stack.cohorts;
}

/**
 * The local stack with one cohort sync (cohort 1) to the local webhook receiver, signed with the
 * secret the local stack serves; the cohort ticks every `tickMs`.
 */
export async function startWebhookCohortStack(sync: { readonly id: string; readonly schedule: string; readonly properties?: readonly string[] }, tickMs: number): Promise<LocalStack> {
  const webhookPort = await freeLoopbackPort();
  const configFile = writeStageConfig(
    {
      residency: "us",
      cohort_syncs: [
        {
          id: sync.id,
          cohort_id: 1,
          destination: { type: "webhook", url: `http://127.0.0.1:${webhookPort}/hook`, signing_secret: LOCAL_WEBHOOK_SIGNING_SECRET_NAME },
          ...(sync.properties ? { properties: sync.properties } : {}),
          schedule: sync.schedule,
        },
      ],
    },
    "relay-cohorts-",
  );
  return startLocalStack({ configFile, cohorts: { webhookPort, tickMs } });
}
