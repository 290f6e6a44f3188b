import * as z from "zod";
import type { StageConfig } from "../../lib/config/stage.js";
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

/** The local Braze fake's REST API key (BRAZE_API_KEY overrides it; the fake then takes that key). */
export const LOCAL_BRAZE_API_KEY = "local-braze-rest-api-key";
/** Basic-auth credentials served for a webhook sync's `basic_auth_secret` on the local stack. */
export const LOCAL_WEBHOOK_BASIC_AUTH = { username: "relay-local", password: "local-webhook-password" };
/** HMAC key served for `pii.hash_key_secret` on the local stack (PII_HASH_KEY overrides it; ≥ 32 characters). */
export const LOCAL_PII_HASH_KEY = "local-pii-hash-key-not-for-production-use";

/** The ports config/local.json names for the local peers; `npm start` moves them to the *_PORT variables. */
export const DEFAULT_LOCAL_RECEIVER_PORT = 3002;
export const DEFAULT_LOCAL_BREVO_PORT = 3003;
export const DEFAULT_LOCAL_BRAZE_PORT = 3004;

export interface LocalPeerPorts {
  readonly webhook?: number;
  readonly brevo?: number;
  readonly braze?: number;
}

const localConfigShape = z.looseObject({
  cohort_syncs: z
    .array(
      z.looseObject({
        destination: z.optional(z.looseObject({ type: z.string() })),
        destinations: z.optional(z.array(z.looseObject({ type: z.string() }))),
      }),
    )
    .optional(),
});

/** The URL key of each destination type that can point at a local peer, and that peer's default port. */
const PEER_KEYS: Record<string, { key: string; peer: keyof LocalPeerPorts; port: number }> = {
  webhook: { key: "url", peer: "webhook", port: DEFAULT_LOCAL_RECEIVER_PORT },
  brevo: { key: "base_url", peer: "brevo", port: DEFAULT_LOCAL_BREVO_PORT },
  braze: { key: "rest_endpoint", peer: "braze", port: DEFAULT_LOCAL_BRAZE_PORT },
};

/**
 * Points every cohort destination of the local config that targets a local peer (loopback,
 * that peer's default port) at the port the peer really listens on, so moving
 * WEBHOOK_RECEIVER_PORT, BREVO_SANDBOX_PORT or BRAZE_SANDBOX_PORT keeps the README demo
 * working instead of sending pages to a port nobody listens on. Pure; returns the config
 * unchanged when no destination moves.
 */
export function retargetLocalPeers(raw: unknown, ports: LocalPeerPorts): { config: unknown; moved: string[] } {
  const parsed = localConfigShape.safeParse(raw);
  if (!parsed.success) return { config: raw, moved: [] };
  const moved: string[] = [];
  for (const sync of parsed.data.cohort_syncs ?? []) {
    for (const destination of [...(sync.destination ? [sync.destination] : []), ...(sync.destinations ?? [])]) {
      const peer = PEER_KEYS[destination.type];
      const port = peer ? ports[peer.peer] : undefined;
      const current = peer ? destination[peer.key] : undefined;
      if (!peer || port === undefined || port === peer.port || typeof current !== "string") continue;
      let url: URL;
      try {
        url = new URL(current);
      } catch {
        continue;
      }
      if (!["127.0.0.1", "localhost"].includes(url.hostname) || url.port !== String(peer.port)) continue;
      url.port = String(port);
      const next = current.endsWith("/") ? url.toString() : url.toString().replace(/\/$/, "");
      destination[peer.key] = next;
      moved.push(next);
    }
  }
  return { config: moved.length > 0 ? parsed.data : raw, moved };
}

/** The webhook receiver only (WEBHOOK_RECEIVER_PORT). */
export function retargetLocalReceiver(raw: unknown, port: number): { config: unknown; moved: string[] } {
  return retargetLocalPeers(raw, { webhook: port });
}

export interface LocalSecret {
  readonly name: string;
  readonly value: Record<string, string>;
  /** What the value is: an environment variable or the documented local default. */
  readonly source: string;
}

/**
 * Every secret the stage config names, with the value the local stack serves for it
 * (pure). A Brevo key is the local Brevo sandbox's key while that sandbox runs, else
 * BREVO_API_KEY; a Braze key is BRAZE_API_KEY or the local Braze fake's key; a webhook
 * signing secret is the local receiver's; basic auth and the PII hash key have local
 * defaults. A secret with no value to serve is listed in `missing` with the variable to set.
 */
export function localSecrets(
  config: StageConfig,
  env: Readonly<Record<string, string | undefined>>,
  options: { brevoSandboxKey: string | undefined; brazeKey: string; signingSecret: string },
): { secrets: LocalSecret[]; missing: string[] } {
  const secrets = new Map<string, LocalSecret>();
  const missing: string[] = [];
  const brevoKey = (name: string) => {
    const key = options.brevoSandboxKey ?? env.BREVO_API_KEY;
    if (key === undefined) missing.push(`${name} (set BREVO_API_KEY)`);
    else secrets.set(name, { name, value: { api_key: key }, source: options.brevoSandboxKey ? "local Brevo sandbox" : "BREVO_API_KEY" });
  };
  if (config.brevo) brevoKey(config.brevo.api_key_secret);
  for (const sync of config.cohort_syncs) {
    const destination = sync.destination;
    switch (destination.type) {
      case "webhook":
        secrets.set(destination.signing_secret, { name: destination.signing_secret, value: { secret: options.signingSecret }, source: "local webhook receiver" });
        if (destination.basic_auth_secret) {
          secrets.set(destination.basic_auth_secret, { name: destination.basic_auth_secret, value: { ...LOCAL_WEBHOOK_BASIC_AUTH }, source: "local default" });
        }
        break;
      case "brevo":
        brevoKey(destination.api_key_secret);
        break;
      case "braze":
        secrets.set(destination.api_key_secret, {
          name: destination.api_key_secret,
          value: { api_key: options.brazeKey },
          source: env.BRAZE_API_KEY ? "BRAZE_API_KEY" : "local Braze fake",
        });
        break;
    }
  }
  const piiSecret = config.pii?.hash_key_secret;
  if (piiSecret) secrets.set(piiSecret, { name: piiSecret, value: { key: env.PII_HASH_KEY ?? LOCAL_PII_HASH_KEY }, source: env.PII_HASH_KEY ? "PII_HASH_KEY" : "local default" });
  return { secrets: [...secrets.values()], missing: [...new Set(missing)] };
}
