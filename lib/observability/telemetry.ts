import { AsyncLocalStorage } from "node:async_hooks";
import { Logger } from "@aws-lambda-powertools/logger";
import { Metrics, MetricUnit } from "@aws-lambda-powertools/metrics";

/**
 * Structured JSON logs and CloudWatch Embedded Metric Format metrics via
 * Powertools. One instance per container; handlers go through
 * `withTelemetry` (./handler.ts), which adds the Lambda context and the
 * correlation id to every line and flushes the metrics after each invocation.
 */
export const SERVICE_NAME = "mixpanel-relay";

const rootLogger = new Logger({ serviceName: SERVICE_NAME });
const functionLoggers = new AsyncLocalStorage<Logger>();

/**
 * The logger every module writes to. Inside an invocation (`withTelemetry`) it is that
 * function's own logger, so the Lambda context and correlation id on a line are those of the
 * function that wrote it even when several functions run in one process (the local stack);
 * outside one it is the root logger. A Powertools Logger keeps the Lambda context as instance
 * state, hence one instance per function rather than one shared.
 */
export const logger: Logger = new Proxy(rootLogger, {
  get(root, key) {
    const current = functionLoggers.getStore() ?? root;
    const value: unknown = Reflect.get(current, key, current);
    return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(current) : value;
  },
});

/** A function's own logger (one per handler module), at the root logger's level. */
export function createFunctionLogger(): Logger {
  return rootLogger.createChild();
}

/** Runs `body` with `functionLogger` behind `logger`, keeping the root logger's current level. */
export function runWithFunctionLogger<R>(functionLogger: Logger, body: () => Promise<R>): Promise<R> {
  const level = rootLogger.getLevelName();
  if (functionLogger.getLevelName() !== level) functionLogger.setLogLevel(level);
  return functionLoggers.run(functionLogger, body);
}

/** The stage dimension keeps stacks that share an account and region apart in metrics and alarms. */
export const metrics = new Metrics({
  namespace: "MixpanelRelay",
  serviceName: SERVICE_NAME,
  defaultDimensions: { stage: process.env.RELAY_STAGE ?? "local" },
});

export { MetricUnit };

/** Counter helper so call sites read as the metric they bump. */
export function count(name: string, value: number): void {
  if (value > 0) metrics.addMetric(name, MetricUnit.Count, value);
}

/**
 * Flushes this invocation's metrics. An invocation that counted nothing (an
 * idle schedule tick) publishes nothing instead of logging Powertools' warning.
 */
export function publishMetrics(): void {
  if (metrics.hasStoredMetrics()) metrics.publishStoredMetrics();
}
