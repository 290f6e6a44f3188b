import * as z from "zod";
import type { CohortFixture } from "./peers/mixpanel-query.js";

/**
 * The local Mixpanel's cohorts: computed from the profiles it has received, so
 * a `$set` sent to the local intake moves a user in or out of a cohort and the
 * next export tick sends `add_members` / `remove_members` to the local receiver.
 */
export const LOCAL_COHORTS: CohortFixture[] = [
  {
    id: 1,
    name: "Pro users",
    description: "Profiles whose plan is pro (local sandbox cohort)",
    where: (properties) => properties.plan === "pro",
  },
  {
    id: 2,
    name: "Everyone with an email",
    description: "Profiles with $email (local sandbox cohort)",
    where: (properties) => typeof properties.$email === "string",
  },
];

/** Where the local stack takes a cohort-export invoke (`npm run cohorts:export -- --stage local`). */
export const LOCAL_COHORT_EXPORT_PATH = "/_local/cohort-export";

/** Secret the local webhook sync signs with (config/local.json names it). */
export const LOCAL_WEBHOOK_SIGNING_SECRET_NAME = "mixpanel-relay/local/destinations/webhook-signing";
export const LOCAL_WEBHOOK_SIGNING_SECRET = "local-webhook-signing-secret";

/** The receiver port config/local.json names; `npm start` moves it to WEBHOOK_RECEIVER_PORT. */
export const DEFAULT_LOCAL_RECEIVER_PORT = 3002;

const localConfigShape = z.looseObject({
  cohort_syncs: z
    .array(z.looseObject({ destination: z.looseObject({ type: z.string(), url: z.string().optional() }) }))
    .optional(),
});

/**
 * Points every webhook destination of the local config that targets the local
 * receiver (loopback, default port) at `port`, so changing
 * WEBHOOK_RECEIVER_PORT keeps the README demo working instead of sending the
 * pages to a port nobody listens on. Pure; returns the config unchanged when
 * it has no such destination.
 */
export function retargetLocalReceiver(raw: unknown, port: number): { config: unknown; moved: string[] } {
  const parsed = localConfigShape.safeParse(raw);
  if (!parsed.success || port === DEFAULT_LOCAL_RECEIVER_PORT) return { config: raw, moved: [] };
  const moved: string[] = [];
  for (const sync of parsed.data.cohort_syncs ?? []) {
    const { destination } = sync;
    if (destination.type !== "webhook" || destination.url === undefined) continue;
    let url: URL;
    try {
      url = new URL(destination.url);
    } catch {
      continue;
    }
    if (!["127.0.0.1", "localhost"].includes(url.hostname) || url.port !== String(DEFAULT_LOCAL_RECEIVER_PORT)) continue;
    url.port = String(port);
    destination.url = url.toString();
    moved.push(destination.url);
  }
  return { config: parsed.data, moved };
}
