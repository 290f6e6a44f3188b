import * as z from "../util/zod.js";
import { AwsCallError, type AwsTarget, asAwsCallError } from "../aws/aws-call.js";
import { ConfigError, RetryableError } from "../util/errors.js";
import { formatZodIssues } from "../config/env.js";
import { parseJson } from "../util/json.js";

/**
 * Reads JSON secrets from Secrets Manager through Powertools' SecretsProvider
 * (secrets-provider.ts), which keeps each value per container for `maxAge` = `ttlSeconds`: a
 * cold-start fetch, then at most one GetSecretValue per TTL. The text is parsed here, not by the
 * provider's `json` transform, because JSON.parse's error quotes the text it failed on and the
 * provider would put that in its error; values are validated with the caller's zod schema and
 * never logged.
 */
export interface SecretReader {
  getJson<T>(secretId: string, schema: z.core.$ZodType<T>): Promise<T>;
}

export interface SecretReaderOptions {
  readonly region: string;
  /** Explicit endpoint so tests and the local stack reach local servers. */
  readonly endpoint?: string;
  readonly ttlSeconds: number;
}

/** Secrets Manager's passing failures (https://docs.aws.amazon.com/secretsmanager/latest/apireference/CommonErrors.html). */
const TRANSIENT_CODES = new Set(["ThrottlingException", "InternalServiceError", "InternalFailure", "ServiceUnavailable", "RequestTimeout", "RequestTimeoutException"]);

function describeCause(error: unknown): { transient: boolean; name: string } {
  if (error instanceof AwsCallError) return { transient: error.status >= 500 || TRANSIENT_CODES.has(error.code), name: error.code };
  // Missing credentials: a setup problem, not a passing one.
  if (error instanceof Error && error.name === "CredentialsProviderError") return { transient: false, name: error.message };
  // No answer at all (connection refused, timeout): the store may be back in a moment.
  return { transient: true, name: error instanceof Error ? `${error.name}: ${error.message}` : String(error) };
}

export function createSecretReader(options: SecretReaderOptions): SecretReader {
  const target: AwsTarget = { region: options.region, ...(options.endpoint ? { endpoint: options.endpoint } : {}) };
  let provider: Promise<{ get(name: string, options: { maxAge: number }): Promise<unknown> }> | undefined;

  async function fetchText(secretId: string): Promise<unknown> {
    provider ??= import("./secrets-provider.js").then(({ createSecretsProvider }) => createSecretsProvider(target));
    try {
      return await (await provider).get(secretId, { maxAge: options.ttlSeconds });
    } catch (error) {
      // Powertools wraps the SDK's error (GetParameterError, the SDK's in `cause`).
      const cause = error instanceof Error && error.cause !== undefined ? error.cause : error;
      const { transient, name } = describeCause(asAwsCallError(cause));
      const message = `cannot read secret ${secretId}: ${name}`;
      throw transient ? new RetryableError(message) : new ConfigError(message);
    }
  }

  return {
    async getJson<T>(secretId: string, schema: z.core.$ZodType<T>): Promise<T> {
      const text = await fetchText(secretId);
      if (typeof text !== "string") throw new ConfigError(`secret ${secretId} has no SecretString (binary secrets are not supported)`);
      const json = parseJson(text);
      if (!json.ok) throw new ConfigError(`secret ${secretId} is not JSON`);
      const parsed = z.safeParse(schema, json.value);
      if (!parsed.success) {
        throw new ConfigError(`secret ${secretId} has the wrong shape: ${formatZodIssues(parsed.error)}`);
      }
      return parsed.data;
    },
  };
}
