/**
 * The cost model of docs/performance.md, derived from one bench run's measured figures and AWS list
 * prices. Prices: us-east-1, arm64, on-demand, as published by AWS in 2024–2025 and known
 * to the author without internet access from this machine: check them at
 * https://aws.amazon.com/lambda/pricing/, /sqs/pricing/, /api-gateway/pricing/,
 * /cloudwatch/pricing/ before relying on the totals. Free tiers are left out.
 */
export const PRICES_USD = {
  lambdaGbSecond: 0.0000133334, // arm64, first 7.5 billion GB-s per month
  lambdaRequest: 0.2 / 1e6,
  sqsRequest: 0.4 / 1e6, // standard queue; every 64 KiB of a request's payload is one request
  httpApiRequest: 1.0 / 1e6, // HTTP API, first 300 million per month; every 512 KB is one request
  logsPerGb: 0.5, // CloudWatch Logs ingestion
} as const;

/** What the model assumes beyond the measurements (stated in docs/performance.md). */
export const ASSUMPTIONS = {
  /** Lambda gives 1 vCPU at 1769 MB; at 1024 MB a CPU-bound stretch takes 1769/1024 longer than on one full core. */
  vcpuShareAt1024Mb: 1024 / 1769,
  memoryGb: 1,
  /** One SQS SendMessageBatch round trip inside AWS. */
  sqsSendMs: 20,
  /** Log and EMF lines per invocation. */
  logBytesPerInvocation: 1200,
  mixpanelLatencyMs: 100,
} as const;

export interface LoadFigures {
  readonly name: string;
  readonly eventsPerRequest: number;
  readonly requestBytes: number;
  readonly intakeCpuMsPer10k: number;
  readonly sqsBytesPerEvent: number;
  readonly eventsPerMessage: number;
  /** serverless.yml batchSize, or fewer when Lambda's 6 MB invocation payload stops the batch first. */
  readonly messagesPerInvocation: number;
  /** Forwarder throughput per container at 100 ms Mixpanel latency for this load's messages. */
  readonly forwarderEventsPerSecond: number;
  /** Log bytes per event beyond the per-invocation lines: the hashed insert id for `npm run trace` (0 where not logged). */
  readonly logBytesPerEvent: number;
}

export interface CostRow {
  readonly load: string;
  readonly lambdaGbSeconds: number;
  readonly lambdaRequests: number;
  readonly sqsRequests: number;
  readonly apiRequests: number;
  readonly usd: { lambda: number; sqs: number; apiGateway: number; logs: number; total: number };
}

const KIB64 = 65_536;

/** Cost per million events of one load shape. */
export function costPerMillion(load: LoadFigures): CostRow {
  const events = 1e6;
  const requests = events / load.eventsPerRequest;
  const messages = events / load.eventsPerMessage;
  const messagesPerRequest = Math.max(1, load.eventsPerRequest / load.eventsPerMessage);
  const sendCallsPerRequest = Math.ceil(messagesPerRequest / 10);
  const intakeSeconds =
    (load.intakeCpuMsPer10k * (events / 1e4)) / 1000 / ASSUMPTIONS.vcpuShareAt1024Mb +
    (requests * sendCallsPerRequest * ASSUMPTIONS.sqsSendMs) / 1000;
  const invocations = messages / load.messagesPerInvocation;
  const forwarderSeconds = events / load.forwarderEventsPerSecond;
  const lambdaGbSeconds = (intakeSeconds + forwarderSeconds) * ASSUMPTIONS.memoryGb;
  const lambdaRequests = requests + invocations;
  const queueBytes = events * load.sqsBytesPerEvent;
  // Send and receive each bill the payload in 64 KiB units (at least one per call); deletes one per 10 messages.
  const sendUnits = Math.max(queueBytes / KIB64, requests * sendCallsPerRequest);
  const receiveUnits = Math.max(queueBytes / KIB64, invocations);
  const sqsRequests = sendUnits + receiveUnits + messages / 10;
  const apiRequests = requests * Math.max(1, Math.ceil(load.requestBytes / 512_000));
  const lambda = lambdaGbSeconds * PRICES_USD.lambdaGbSecond + lambdaRequests * PRICES_USD.lambdaRequest;
  const sqs = sqsRequests * PRICES_USD.sqsRequest;
  const apiGateway = apiRequests * PRICES_USD.httpApiRequest;
  const logs = ((lambdaRequests * ASSUMPTIONS.logBytesPerInvocation + events * load.logBytesPerEvent) / 1e9) * PRICES_USD.logsPerGb;
  return {
    load: load.name,
    lambdaGbSeconds,
    lambdaRequests,
    sqsRequests,
    apiRequests,
    usd: { lambda, sqs, apiGateway, logs, total: lambda + sqs + apiGateway + logs },
  };
}
