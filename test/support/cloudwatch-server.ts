import type { Server } from "node:http";
import { awsError, createAwsJsonServer } from "./aws-json-server.js";
import { closeServer, listenOnLoopback } from "../../infra/local/peers/local-server.js";

/**
 * A strict local stand-in for the two CloudWatch calls `npm run status` makes,
 * over the AWS JSON 1.0 protocol the SDK uses (target GraniteServiceVersion20100801):
 * - DescribeAlarms: filters by AlarmNamePrefix like CloudWatch, times in epoch seconds;
 * - GetMetricData: answers ApproximateAgeOfOldestMessage (AWS/SQS, Maximum) per
 *   QueueName from a table, checks ids, periods and the time window.
 */
export interface StoredAlarm {
  readonly AlarmName: string;
  readonly StateValue: "OK" | "ALARM" | "INSUFFICIENT_DATA";
  readonly StateReason: string;
  readonly StateUpdatedTimestamp: Date;
}

export class CloudWatchServer {
  private server: Server | undefined;
  readonly calls: string[] = [];
  url = "";

  constructor(
    private readonly alarms: readonly StoredAlarm[],
    /** Queue name → oldest message age in seconds (absent = no datapoints). */
    private readonly oldestAges: Readonly<Record<string, number>>,
  ) {}

  async start(): Promise<string> {
    this.server = createAwsJsonServer("1.0", (target, body) => {
      this.calls.push(target);
      const invalid = (message: string) => awsError(400, "InvalidParameterValue", message);
      if (target === "GraniteServiceVersion20100801.DescribeAlarms") {
        const prefix = typeof body.AlarmNamePrefix === "string" ? body.AlarmNamePrefix : "";
        const alarms = this.alarms
          .filter((alarm) => alarm.AlarmName.startsWith(prefix))
          .map((alarm) => ({ ...alarm, StateUpdatedTimestamp: alarm.StateUpdatedTimestamp.getTime() / 1000 }));
        return { status: 200, payload: { MetricAlarms: alarms, CompositeAlarms: [] } };
      }
      if (target === "GraniteServiceVersion20100801.GetMetricData") {
        const { StartTime, EndTime, MetricDataQueries } = body;
        if (typeof StartTime !== "number" || typeof EndTime !== "number" || StartTime >= EndTime) return invalid("StartTime/EndTime");
        if (!Array.isArray(MetricDataQueries) || MetricDataQueries.length === 0 || MetricDataQueries.length > 500) return invalid("MetricDataQueries");
        const results = [];
        for (const query of MetricDataQueries as { Id?: string; MetricStat?: { Metric?: { Namespace?: string; MetricName?: string; Dimensions?: { Name: string; Value: string }[] }; Period?: number; Stat?: string } }[]) {
          if (!query.Id || !/^[a-z][A-Za-z0-9_]*$/.test(query.Id)) return invalid(`Id ${query.Id}`);
          const stat = query.MetricStat;
          if (stat?.Metric?.Namespace !== "AWS/SQS" || stat.Metric.MetricName !== "ApproximateAgeOfOldestMessage" || stat.Stat !== "Maximum" || !stat.Period || stat.Period % 60 !== 0) {
            return invalid(`unexpected metric in ${query.Id}`);
          }
          const queue = stat.Metric.Dimensions?.find((dimension) => dimension.Name === "QueueName")?.Value ?? "";
          const age = this.oldestAges[queue];
          results.push({ Id: query.Id, Label: queue, StatusCode: "Complete", Timestamps: age === undefined ? [] : [EndTime - 300], Values: age === undefined ? [] : [age] });
        }
        return { status: 200, payload: { MetricDataResults: results, Messages: [] } };
      }
      return awsError(400, "UnknownOperationException", target);
    });
    const port = await listenOnLoopback(this.server);
    this.url = `http://127.0.0.1:${port}`;
    return this.url;
  }

  async stop(): Promise<void> {
    await closeServer(this.server);
  }
}
