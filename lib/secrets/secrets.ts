import { SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { SecretsProvider } from "@aws-lambda-powertools/parameters/secrets";
import type * as z from "zod";
import { ConfigError, RetryableError } from "../errors.js";
import { formatZodIssues } from "../config/env.js";

/**
 * Reads JSON secrets from Secrets Manager through Powertools' provider, which
 * caches each value per container for `ttlSeconds` (cold-start fetch, then at
 * most one call per TTL). Values are validated with the caller's zod schema and
 * never logged.
 */
export interface SecretReader {
  getJson<T>(secretId: string, schema: z.ZodType<T>): Promise<T>;
}

export interface SecretReaderOptions {
  readonly region: string;
  /** Explicit endpoint so tests and the local stack reach local servers. */
  readonly endpoint?: string;
  readonly ttlSeconds: number;
}

const TRANSIENT_SDK_ERRORS = new Set(["ThrottlingException", "InternalServiceError", "TimeoutError", "RequestTimeout"]);

function errorName(error: unknown): string {
  if (error instanceof Error) return error.name;
  return "";
}

export function createSecretReader(options: SecretReaderOptions): SecretReader {
  const client = new SecretsManagerClient({
    region: options.region,
    ...(options.endpoint ? { endpoint: options.endpoint } : {}),
    maxAttempts: 2,
  });
  const provider = new SecretsProvider({ awsSdkV3Client: client });
  return {
    async getJson<T>(secretId: string, schema: z.ZodType<T>): Promise<T> {
      let raw: unknown;
      try {
        raw = await provider.get(secretId, { maxAge: options.ttlSeconds, transform: "json" });
      } catch (error) {
        const cause = error instanceof Error && error.cause !== undefined ? error.cause : error;
        const name = errorName(cause);
        const transient = TRANSIENT_SDK_ERRORS.has(name) || /ECONNREFUSED|socket|timeout|5\d\d/i.test(String(cause));
        const message = `cannot read secret ${secretId}: ${name || String(cause)}`;
        throw transient ? new RetryableError(message) : new ConfigError(message);
      }
      const parsed = schema.safeParse(raw);
      if (!parsed.success) {
        throw new ConfigError(`secret ${secretId} has the wrong shape: ${formatZodIssues(parsed.error)}`);
      }
      return parsed.data;
    },
  };
}
