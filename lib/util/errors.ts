/**
 * The small error set that decides what is retried. Every module that talks to
 * the outside world throws (or returns) one of these, and the handlers map them
 * to HTTP status codes, SQS batchItemFailures or rejected-store writes in one place.
 */

/** Bad input. Permanent: retrying the same data can never succeed. */
export class ValidationError extends Error {
  override readonly name: string = "ValidationError";
}

/**
 * An object the relay wrote itself and still needs (a staged page, a partition
 * chunk, an outbox, a delivery page) is not in the store. S3 reads are strongly
 * consistent after a write (https://docs.aws.amazon.com/AmazonS3/latest/userguide/Welcome.html#ConsistencyModel),
 * so asking again reads the same absence: permanent, like other bad input.
 */
export class MissingObjectError extends ValidationError {
  override readonly name = "MissingObjectError";
  /** `what` names the object for an operator (its kind and key). */
  constructor(what: string) {
    super(`${what} is missing`);
  }
}

/** Transient trouble (429, 5xx, network, timeouts). Safe to retry later. */
export class RetryableError extends Error {
  override readonly name = "RetryableError";
  constructor(
    message: string,
    readonly retryAfterMs?: number,
    readonly status?: number,
  ) {
    super(message);
  }
}

/**
 * Credentials or settings are wrong (401/403, missing secret, bad config).
 * Never dropped: surfaced loudly and left for redelivery / the DLQ until an
 * operator fixes the configuration.
 */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

/** The vendor looked at the data and refused it for good; carries its answer. */
export class UpstreamRejectedError extends Error {
  override readonly name = "UpstreamRejectedError";
  constructor(
    message: string,
    readonly status: number,
    readonly body: string,
  ) {
    super(message);
  }
}

export function describeError(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}
