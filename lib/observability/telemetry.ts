import { Logger } from "@aws-lambda-powertools/logger";
import { Metrics, MetricUnit } from "@aws-lambda-powertools/metrics";

/**
 * Structured JSON logs and CloudWatch Embedded Metric Format metrics via
 * Powertools. One instance per container; handlers go through
 * `withTelemetry` (./handler.ts), which adds the Lambda context and the
 * correlation id to every line and flushes the metrics after each invocation.
 */
export const SERVICE_NAME = "mixpanel-relay";

export const logger = new Logger({ serviceName: SERVICE_NAME });

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
