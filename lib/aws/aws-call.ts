import type { NodeHttpHandlerOptions } from "@smithy/node-http-handler";

/**
 * What the relay's AWS clients share (lib/aws/sqs.ts, s3.ts, s3-bucket.ts and
 * lib/secrets/secrets.ts): the region and endpoint, the relay's rules as client
 * configuration, and the AWS error as the one type lib/ modules check.
 *
 * Every call goes through the official AWS SDK v3 clients (@aws-sdk/client-sqs, client-s3,
 * client-secrets-manager), bundled into each function, so signing, clock-skew correction,
 * checksums, credentials (environment, container endpoint, …), endpoints and retries are the
 * vendor's. This file imports no SDK code at run time (types only), so a function whose S3
 * client is off its hot path does not load S3 at cold start.
 */
export interface AwsTarget {
  readonly region: string;
  /** Explicit endpoint (e.g. http://127.0.0.1:4566); absent = the SDK's endpoint rules. */
  readonly endpoint?: string;
}

/** An AWS error answer, named by AWS's error code like the SDK's errors (`error.name`). */
export class AwsCallError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status: number,
  ) {
    super(`${code}: ${message}`);
    this.name = code;
  }
}

/** S3's answer for an object that is not there: NoSuchKey, or a bare 404 (HEAD answers carry no error body). */
export function isMissingObject(error: unknown): boolean {
  return error instanceof AwsCallError && (error.code === "NoSuchKey" || error.status === 404);
}

/**
 * The SDK's `NodeHttpHandler` options every client gets. The SDK's default is no timeout at all
 * (https://github.com/smithy-lang/smithy-typescript/blob/main/packages/types/src/http/httpHandlerInitialization.ts),
 * so a stalled connection would hold a Lambda until its own timeout; `throwOnRequestTimeout`
 * makes a breach an error the retry strategy sees instead of a logged warning.
 */
export function httpHandlerOptions(requestTimeoutMs: number): NodeHttpHandlerOptions {
  return { connectionTimeout: CONNECTION_TIMEOUT_MS, requestTimeout: requestTimeoutMs, throwOnRequestTimeout: true };
}

/** A TCP/TLS handshake to an AWS endpoint in the function's own region takes milliseconds. */
export const CONNECTION_TIMEOUT_MS = 3_000;
/** SQS and Secrets Manager answers are small. */
export const SMALL_CALL_TIMEOUT_MS = 10_000;

/**
 * Attempts per call (the SDK's standard retry strategy: exponential backoff from 100 ms with
 * jitter, 1 s base for throttling, a shared retry-token budget, and one extra attempt after it
 * corrected its clock offset from the server's `Date` header):
 *  - the intake answers API Gateway, which gives up after 30 s
 *    (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-quotas.html):
 *    3 attempts of ≤ 10 s each, the SDK's default count, is the most that fits;
 *  - the queue consumers (forwarder, Brevo forwarder, webhook delivery) and the cohort export
 *    run for minutes, and what they cannot write makes SQS redeliver the whole batch, so they
 *    get 5.
 */
export const MAX_ATTEMPTS = { intake: 3, consumer: 5 } as const;
export type CallPath = keyof typeof MAX_ATTEMPTS;

/** The SDK's client settings shared by every client of one target. */
export function clientConfig(target: AwsTarget, path: CallPath): { region: string; endpoint?: string; maxAttempts: number } {
  return { region: target.region, ...(target.endpoint ? { endpoint: target.endpoint } : {}), maxAttempts: MAX_ATTEMPTS[path] };
}

/**
 * The SDK's service error (it carries `$metadata.httpStatusCode` and `$fault`) as an
 * AwsCallError; anything else (no answer: timeout, refused connection; a checksum mismatch)
 * unchanged. Only the code, the message and the status are kept: never the request.
 */
export function asAwsCallError(error: unknown): unknown {
  if (error instanceof Error && "$fault" in error && "$metadata" in error) {
    const metadata = error.$metadata as { httpStatusCode?: number } | undefined;
    return new AwsCallError(error.name, error.message, metadata?.httpStatusCode ?? 0);
  }
  return error;
}

/** Runs one SDK call; its service errors come out as AwsCallError. */
export async function awsCall<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw asAwsCallError(error);
  }
}
