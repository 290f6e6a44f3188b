import * as z from "../util/zod.js";
import { ConfigError } from "../util/errors.js";

/**
 * Every environment variable the functions read, validated once at cold start.
 * In AWS, serverless.yml sets these; locally infra/local/start.ts does.
 */
const optionalUrl = z.optional(z.url());
const positiveInt = (fallback: number) => z._default(z.coerce.number().check(z.int(), z.positive()), fallback);
const nonEmpty = z.string().check(z.minLength(1));
const optionalNonEmpty = z.optional(nonEmpty);

export const envSchema = z.object({
  RELAY_STAGE: z._default(nonEmpty, "local"),
  /** Path of the per-stage config file (see config/*.json and docs/configuration.md). */
  RELAY_CONFIG_FILE: optionalNonEmpty,

  /** Endpoint override for every AWS SDK client (the local stack's in-process SQS/S3). */
  AWS_ENDPOINT_URL: optionalUrl,
  AWS_REGION: z._default(nonEmpty, "us-east-1"),
  /** Endpoint override for Secrets Manager only (tests run a local Secrets Manager server). */
  SECRETS_ENDPOINT_URL: optionalUrl,

  EVENTS_QUEUE_URL: optionalNonEmpty,
  DELIVERIES_QUEUE_URL: optionalNonEmpty,
  /** Events DLQ: the forwarder dead-letters re-queued records that keep failing (lib/queue/envelope-consumer.ts). */
  EVENTS_DLQ_URL: optionalNonEmpty,
  /** Re-queues of a message's unsent records before they go to the events DLQ. */
  FORWARDER_MAX_REQUEUES: z._default(z.coerce.number().check(z.int(), z.gte(1), z.lte(20)), 6),
  /** The Brevo connector's queue and DLQ (lib/enqueue/brevo-fanout.ts, functions/brevo-forwarder). */
  BREVO_QUEUE_URL: optionalNonEmpty,
  BREVO_DLQ_URL: optionalNonEmpty,
  /** Brevo API base; unset = https://api.brevo.com/v3. Locally the stack points it at its sandbox. */
  BREVO_API_URL: optionalUrl,
  /** Brevo API key for the local stack; unset = read brevo.api_key_secret from Secrets Manager. */
  BREVO_API_KEY: optionalNonEmpty,
  /** Events per POST /v3/events/batch (Brevo documents no maximum; docs/vendors/brevo-connector.md §1). */
  // Brevo's /v3/events/batch takes at most 200 events (developers.brevo.com/docs/event-endpoints).
  BREVO_EVENTS_BATCH_SIZE: z._default(z.coerce.number().check(z.int(), z.gte(1), z.lte(200)), 100),
  /** Bucket for the rejected-events store (S3 prefix `rejected/`). */
  REJECTED_BUCKET: optionalNonEmpty,
  REJECTED_PREFIX: z._default(z.string(), "rejected/"),
  SNAPSHOT_BUCKET: optionalNonEmpty,

  /** Secrets Manager secret (JSON) with the Mixpanel credentials; unset = read MIXPANEL_* below. */
  MIXPANEL_SECRET_ID: optionalNonEmpty,
  MIXPANEL_PROJECT_ID: optionalNonEmpty,
  MIXPANEL_PROJECT_TOKEN: optionalNonEmpty,
  MIXPANEL_SERVICE_ACCOUNT_USERNAME: optionalNonEmpty,
  MIXPANEL_SERVICE_ACCOUNT_SECRET: optionalNonEmpty,
  /** Overrides the ingestion host chosen by the data residency. */
  MIXPANEL_API_URL: optionalUrl,
  /** Overrides the Query API base chosen by the data residency. */
  MIXPANEL_QUERY_URL: optionalUrl,

  /** Secrets Manager secret (JSON `{"tokens":[…]}`) with the intake bearer tokens; unset = INTAKE_TOKEN. */
  INTAKE_TOKEN_SECRET_ID: optionalNonEmpty,
  /** Comma-separated bearer tokens, for the local stack. */
  INTAKE_TOKEN: optionalNonEmpty,
  /** HMAC key for the stage's `pii` hash rules when `pii.hash_key_secret` is unset (the local stack). */
  PII_HASH_KEY: z.optional(z.string().check(z.minLength(32))),

  SECRETS_TTL_SECONDS: positiveInt(300),
  /** Byte cap per /import request, uncompressed (docs/vendors/mixpanel-api.md §3: 10 MB; older docs 2 MB). */
  IMPORT_MAX_BYTES: positiveInt(10_000_000),
  /** Requests in flight per forwarder invocation. */
  IMPORT_CONCURRENCY: z._default(z.coerce.number().check(z.int(), z.gte(1), z.lte(10)), 5),
  /** Largest SQS message we build; the queues set MaximumMessageSize to the same value. */
  SQS_MAX_MESSAGE_BYTES: z._default(z.coerce.number().check(z.int(), z.gte(1024), z.lte(1_048_576)), 262_144),
  /** Body cap at intake; API Gateway → Lambda tops out at 6 MB. */
  INTAKE_MAX_BODY_BYTES: positiveInt(5_000_000),
  HTTP_TIMEOUT_MS: positiveInt(15_000),
});

export type Env = z.infer<typeof envSchema>;

/** Any zod error (classic or functional API): each issue as `<path>: <message>`. */
export function formatZodIssues(error: { readonly issues: readonly { readonly path: readonly PropertyKey[]; readonly message: string }[] }): string {
  return error.issues
    .map((issue) => `${issue.path.length > 0 ? issue.path.join(".") : "(root)"}: ${issue.message}`)
    .join("; ");
}

export function readEnv(source: NodeJS.ProcessEnv = process.env): Env {
  const parsed = envSchema.safeParse(source);
  if (!parsed.success) throw new ConfigError(`invalid environment: ${formatZodIssues(parsed.error)}`);
  return parsed.data;
}

export function requireSetting<K extends keyof Env>(env: Env, key: K): NonNullable<Env[K]> {
  const value = env[key];
  if (value === undefined || value === null) throw new ConfigError(`environment variable ${String(key)} is required`);
  return value;
}
