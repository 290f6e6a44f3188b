import * as z from "../util/zod.js";
import { AwsCallError, type AwsTarget, awsJsonCall, createAwsCaller } from "../aws/aws-call.js";
import { ConfigError, RetryableError } from "../errors.js";
import { formatZodIssues } from "../config/env.js";
import { parseJson } from "../util/json.js";

/**
 * Reads JSON secrets from Secrets Manager (GetSecretValue over its JSON 1.1 protocol,
 * lib/aws/aws-call.ts) and caches each value per container for `ttlSeconds`: a cold-start
 * fetch, then at most one call per TTL. Values are validated with the caller's zod schema
 * and never logged. (Powertools' SecretsProvider did the same caching but needs the AWS
 * SDK client, which was most of every bundle: issue 12.)
 */
export interface SecretReader {
  getJson<T>(secretId: string, schema: z.core.$ZodType<T>): Promise<T>;
}

export interface SecretReaderOptions {
  readonly region: string;
  /** Explicit endpoint so tests and the local stack reach local servers. */
  readonly endpoint?: string;
  readonly ttlSeconds: number;
  /** Clock for the cache (tests). */
  readonly nowMs?: () => number;
}

const TRANSIENT_CODES = new Set(["ThrottlingException", "InternalServiceError", "InternalFailure", "ServiceUnavailable", "RequestTimeout"]);

function describeCause(error: unknown): { transient: boolean; name: string } {
  if (error instanceof AwsCallError) return { transient: error.status >= 500 || TRANSIENT_CODES.has(error.code), name: error.code };
  // Missing credentials and the like: a setup problem, not a passing one.
  if (error instanceof ConfigError) return { transient: false, name: error.message };
  // No answer at all (connection refused, timeout): the store may be back in a moment.
  return { transient: true, name: error instanceof Error ? `${error.name}: ${error.message}` : String(error) };
}

export function createSecretReader(options: SecretReaderOptions): SecretReader {
  const target: AwsTarget = { region: options.region, ...(options.endpoint ? { endpoint: options.endpoint } : {}) };
  const caller = createAwsCaller("secretsmanager", target);
  const now = options.nowMs ?? Date.now;
  const cache = new Map<string, { value: unknown; expiresAt: number }>();

  async function fetchJson(secretId: string): Promise<unknown> {
    const cached = cache.get(secretId);
    if (cached && cached.expiresAt > now()) return cached.value;
    let answer: unknown;
    try {
      answer = await awsJsonCall(caller, "1.1", "secretsmanager.GetSecretValue", { SecretId: secretId });
    } catch (error) {
      const { transient, name } = describeCause(error);
      const message = `cannot read secret ${secretId}: ${name}`;
      throw transient ? new RetryableError(message) : new ConfigError(message);
    }
    const secretString = answer && typeof answer === "object" && "SecretString" in answer ? answer.SecretString : undefined;
    if (typeof secretString !== "string") throw new ConfigError(`secret ${secretId} has no SecretString (binary secrets are not supported)`);
    const json = parseJson(secretString);
    if (!json.ok) throw new ConfigError(`secret ${secretId} is not JSON`);
    const value = json.value;
    cache.set(secretId, { value, expiresAt: now() + options.ttlSeconds * 1000 });
    return value;
  }

  return {
    async getJson<T>(secretId: string, schema: z.core.$ZodType<T>): Promise<T> {
      const raw = await fetchJson(secretId);
      const parsed = z.safeParse(schema, raw);
      if (!parsed.success) {
        throw new ConfigError(`secret ${secretId} has the wrong shape: ${formatZodIssues(parsed.error)}`);
      }
      return parsed.data;
    },
  };
}
