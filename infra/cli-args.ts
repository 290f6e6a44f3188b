import { parseArgs } from "node:util";
import { assertStageName } from "./stack-layout.js";

/**
 * Options every operator CLI takes. The endpoint is explicit (flag or
 * AWS_ENDPOINT_URL) so the same commands run against the local stack or a test
 * server (fauxqs) as against AWS.
 */
export interface AwsTarget {
  readonly stage: string;
  readonly region: string;
  readonly endpoint?: string;
}

export const awsTargetOptions = {
  stage: { type: "string", short: "s" },
  region: { type: "string" },
  endpoint: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

export function resolveAwsTarget(values: { stage?: string; region?: string; endpoint?: string }, env: NodeJS.ProcessEnv): AwsTarget {
  if (!values.stage) throw new UsageError("--stage is required");
  const region = values.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION;
  if (!region) throw new UsageError("no region: pass --region <region> or set AWS_REGION (the stage's params.region in serverless.yml)");
  const endpoint = values.endpoint ?? env.AWS_ENDPOINT_URL;
  return { stage: assertStageName(values.stage), region, ...(endpoint ? { endpoint } : {}) };
}

export class UsageError extends Error {
  override readonly name = "UsageError";
}

export function parsePositiveInt(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed <= 0) throw new UsageError(`${flag} must be a positive integer, got "${value}"`);
  return parsed;
}

export { parseArgs };
