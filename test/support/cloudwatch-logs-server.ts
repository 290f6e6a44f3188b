import type { Server } from "node:http";
import { randomUUID } from "node:crypto";
import { awsError, createAwsJsonServer } from "./aws-json-server.js";
import { closeServer, listenOnLoopback } from "../../infra/local/peers/local-server.js";

/**
 * A strict local stand-in for CloudWatch Logs Insights (the AWS JSON 1.1
 * protocol the SDK speaks): StartQuery checks its inputs (known log groups,
 * a query string, an epoch-seconds window) and GetQueryResults answers
 * "Running" once, then "Complete" with the stored lines that match.
 *
 * Matching covers what `npm run trace` writes: `@message like "<text>"` terms
 * joined by `or`, over the raw JSON line (as Logs Insights does), and the
 * fields of the `fields` command, read from the JSON (arrays flattened as
 * `name.0`, `name.1`, … like Logs Insights).
 */
export interface StoredLogLine {
  readonly logGroup: string;
  readonly timestamp: string;
  readonly message: Record<string, unknown>;
}

interface RunningQuery {
  readonly logGroups: string[];
  readonly queryString: string;
  polls: number;
}

function flatten(value: unknown, prefix: string, into: Map<string, string>): void {
  if (Array.isArray(value)) value.forEach((item, index) => flatten(item, `${prefix}.${index}`, into));
  else if (value !== null && typeof value === "object") for (const [key, child] of Object.entries(value)) flatten(child, prefix ? `${prefix}.${key}` : key, into);
  else into.set(prefix, String(value));
}

export class CloudWatchLogsServer {
  private server: Server | undefined;
  private readonly queries = new Map<string, RunningQuery>();
  readonly started: { logGroups: string[]; queryString: string }[] = [];
  url = "";

  constructor(
    private readonly lines: readonly StoredLogLine[],
    private readonly knownLogGroups: readonly string[],
  ) {}

  async start(): Promise<string> {
    this.server = createAwsJsonServer("1.1", (target, body) => {
      const invalid = (message: string) => awsError(400, "InvalidParameterException", message);
      if (target === "Logs_20140328.StartQuery") {
        const { logGroupNames, queryString, startTime, endTime } = body;
        if (!Array.isArray(logGroupNames) || logGroupNames.length === 0) return invalid("logGroupNames is required");
        const missing = logGroupNames.filter((name) => !this.knownLogGroups.includes(String(name)));
        if (missing.length > 0) return awsError(400, "ResourceNotFoundException", `Log group does not exist: ${missing.join(", ")}`);
        if (typeof queryString !== "string" || !queryString.startsWith("fields ")) return invalid("queryString");
        if (typeof startTime !== "number" || typeof endTime !== "number" || startTime >= endTime || endTime > 1e11) return invalid("time range (epoch seconds)");
        const queryId = randomUUID();
        this.queries.set(queryId, { logGroups: logGroupNames.map(String), queryString, polls: 0 });
        this.started.push({ logGroups: logGroupNames.map(String), queryString });
        return { status: 200, payload: { queryId } };
      }
      if (target === "Logs_20140328.GetQueryResults") {
        const query = this.queries.get(String(body.queryId));
        if (!query) return awsError(400, "ResourceNotFoundException", "unknown queryId");
        query.polls++;
        if (query.polls === 1) return { status: 200, payload: { status: "Running", results: [] } };
        return { status: 200, payload: { status: "Complete", results: this.run(query) } };
      }
      return awsError(400, "UnknownOperationException", target);
    });
    const port = await listenOnLoopback(this.server);
    this.url = `http://127.0.0.1:${port}`;
    return this.url;
  }

  private run(query: RunningQuery): { field: string; value: string }[][] {
    const terms = [...query.queryString.matchAll(/@message like "([^"]+)"/g)].map((match) => match[1] ?? "");
    const fields = (/^fields (.+)$/m.exec(query.queryString)?.[1] ?? "").split(",").map((field) => field.trim());
    return this.lines
      .filter((line) => query.logGroups.includes(line.logGroup))
      .filter((line) => terms.some((term) => JSON.stringify(line.message).includes(term)))
      .map((line) => {
        const flat = new Map<string, string>([
          ["@timestamp", line.timestamp],
          ["@log", `000000000000:${line.logGroup}`],
        ]);
        flatten(line.message, "", flat);
        return fields.flatMap((field) => (flat.has(field) ? [{ field, value: flat.get(field) ?? "" }] : []));
      });
  }

  async stop(): Promise<void> {
    await closeServer(this.server);
  }
}
