import * as z from "zod";
import { ConfigError } from "../errors.js";

/**
 * Every environment variable the functions read, validated once at cold start.
 * In AWS, serverless.yml sets these; locally infra/local/start.ts does.
 */
const optionalUrl = z.url().optional();
const positiveInt = (fallback: number) => z.coerce.number().int().positive().default(fallback);

export const envSchema = z.object({
  RELAY_STAGE: z.string().min(1).default("local"),
  /** Path of the per-stage config file (see config/*.json and README "Configuration"). */
  RELAY_CONFIG_FILE: z.string().min(1).optional(),

  /** Endpoint override for every AWS SDK client (the local stack's in-process SQS/S3). */
  AWS_ENDPOINT_URL: optionalUrl,
  AWS_REGION: z.string().min(1).default("us-east-1"),
  /** Endpoint override for Secrets Manager only (tests run a local Secrets Manager server). */
  SECRETS_ENDPOINT_URL: optionalUrl,

  EVENTS_QUEUE_URL: z.string().min(1).optional(),
  DELIVERIES_QUEUE_URL: z.string().min(1).optional(),
  /** Events DLQ: the forwarder dead-letters re-queued records that keep failing (lib/forwarder/process.ts). */
  EVENTS_DLQ_URL: z.string().min(1).optional(),
  /** Re-queues of a message's unsent records before they go to the events DLQ. */
  FORWARDER_MAX_REQUEUES: z.coerce.number().int().min(1).max(20).default(6),
  /** Bucket for the rejected-events store (S3 prefix `rejected/`). */
  REJECTED_BUCKET: z.string().min(1).optional(),
  REJECTED_PREFIX: z.string().default("rejected/"),
  SNAPSHOT_BUCKET: z.string().min(1).optional(),

  /** Secrets Manager secret (JSON) with the Mixpanel credentials; unset = read MIXPANEL_* below. */
  MIXPANEL_SECRET_ID: z.string().min(1).optional(),
  MIXPANEL_PROJECT_ID: z.string().min(1).optional(),
  MIXPANEL_PROJECT_TOKEN: z.string().min(1).optional(),
  MIXPANEL_SERVICE_ACCOUNT_USERNAME: z.string().min(1).optional(),
  MIXPANEL_SERVICE_ACCOUNT_SECRET: z.string().min(1).optional(),
  /** Overrides the ingestion host chosen by the data residency. */
  MIXPANEL_API_URL: optionalUrl,
  /** Overrides the Query API base chosen by the data residency. */
  MIXPANEL_QUERY_URL: optionalUrl,

  /** Secrets Manager secret (JSON `{"tokens":[…]}`) with the intake bearer tokens; unset = INTAKE_TOKEN. */
  INTAKE_TOKEN_SECRET_ID: z.string().min(1).optional(),
  /** Comma-separated bearer tokens, for the local stack. */
  INTAKE_TOKEN: z.string().min(1).optional(),
  /** HMAC key for the stage's `pii` hash rules when `pii.hash_key_secret` is unset (the local stack). */
  PII_HASH_KEY: z.string().min(32).optional(),

  SECRETS_TTL_SECONDS: positiveInt(300),
  /** Byte cap per /import request, uncompressed (reference/mixpanel-api.md §3: 10 MB; older docs 2 MB). */
  IMPORT_MAX_BYTES: positiveInt(10_000_000),
  /** Requests in flight per forwarder invocation. */
  IMPORT_CONCURRENCY: z.coerce.number().int().min(1).max(10).default(3),
  /** Largest SQS message we build; the queues set MaximumMessageSize to the same value. */
  SQS_MAX_MESSAGE_BYTES: z.coerce.number().int().min(1024).max(1_048_576).default(262_144),
  /** Body cap at intake; API Gateway → Lambda tops out at 6 MB. */
  INTAKE_MAX_BODY_BYTES: positiveInt(5_000_000),
  HTTP_TIMEOUT_MS: positiveInt(15_000),
});

export type Env = z.infer<typeof envSchema>;

export function formatZodIssues(error: z.ZodError): string {
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
