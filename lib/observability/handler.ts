import type { Context } from "aws-lambda";
import { describeError } from "../util/errors.js";
import { createFunctionLogger, logger, metrics, publishMetrics, runWithFunctionLogger } from "./telemetry.js";

/**
 * The one telemetry wrapper every Lambda handler goes through, instead of a
 * hand-written try/catch/finally per function:
 * - every log line of the invocation carries the Lambda context (request id,
 *   cold start, function name/version/memory, X-Ray trace id when tracing is on),
 *   written through the function's own logger so that functions sharing a process
 *   (the local stack) never stamp each other's context on a line,
 * - a `ColdStart` metric on the container's first invocation,
 * - the invocation's deadline for code that must stop in time (`remainingMs`),
 * - an optional correlation id on every later log line,
 * - a failure the handler did not handle is logged with its cause, then either
 *   rethrown (Lambda retries / records the error) or turned into the answer the
 *   event source expects (e.g. every SQS message back as a batchItemFailure),
 * - metrics flushed and per-invocation log keys cleared, whatever happened.
 */
export interface Invocation {
  /** Milliseconds left before Lambda's deadline (0 outside an invocation). */
  remainingMs(): number;
  /** Adds `correlationId` to every later log line of this invocation. */
  correlate(correlationId: string): void;
}

/**
 * The deadline of a handler's running invocation. One per handler module: a
 * Lambda container serves one invocation at a time, but the local stack runs
 * several handlers in one process, so they must not share a slot.
 */
export interface InvocationClock {
  /** Milliseconds left before Lambda's deadline (0 outside an invocation). */
  readonly remainingMs: () => number;
  begin(context: Pick<Context, "getRemainingTimeInMillis"> | undefined): void;
  end(): void;
}

export function invocationClock(): InvocationClock {
  let running: Pick<Context, "getRemainingTimeInMillis"> | undefined;
  return {
    remainingMs: () => running?.getRemainingTimeInMillis() ?? 0,
    begin(context) {
      running = context;
    },
    end() {
      running = undefined;
    },
  };
}

export interface TelemetryOptions<E, R> {
  /** Logged (level error, with the cause) when the body throws. */
  readonly failureMessage: string;
  /** Keys logged with the failure (e.g. the correlation id the answer will carry); also given to onFailure. */
  readonly failureKeys?: (event: E) => Record<string, unknown>;
  /** The answer for a failure the body did not handle; absent = rethrow. */
  readonly onFailure?: (event: E, error: unknown, keys: Record<string, unknown>) => R;
}

export function withTelemetry<E, R>(
  clock: InvocationClock,
  body: (event: E, invocation: Invocation, context: Context | undefined) => Promise<R>,
  options: TelemetryOptions<E, R>,
): (event: E, context?: Context) => Promise<R> {
  const functionLogger = createFunctionLogger();
  const invocation: Invocation = {
    remainingMs: clock.remainingMs,
    correlate(correlationId) {
      functionLogger.appendKeys({ correlationId });
    },
  };
  const invoke = async (event: E, context: Context | undefined): Promise<R> => {
    clock.begin(context);
    if (context) {
      functionLogger.addContext(context);
      metrics.captureColdStartMetric(context.functionName);
    }
    try {
      return await body(event, invocation, context);
    } catch (error) {
      const keys = options.failureKeys?.(event) ?? {};
      logger.error(options.failureMessage, { ...keys, error: describeError(error), stack: error instanceof Error ? error.stack : undefined });
      if (options.onFailure) return options.onFailure(event, error, keys);
      throw error;
    } finally {
      publishMetrics();
      functionLogger.resetKeys();
      clock.end();
    }
  };
  return (event, context) => runWithFunctionLogger(functionLogger, () => invoke(event, context));
}
