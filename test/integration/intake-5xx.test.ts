import { createS3Client, createSqsClient } from "../../infra/aws/sdk-clients.js";
import { CreateBucketCommand } from "@aws-sdk/client-s3";
import { CreateQueueCommand } from "@aws-sdk/client-sqs";
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from "aws-lambda";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { startLocalAws } from "../support/fauxqs.js";
import { captureOutput, type LogCapture } from "../support/log-capture.js";
import { freeLoopbackPort } from "../../infra/local/peers/local-server.js";

/**
 * Every 5xx of the intake handler is explained: its cause is logged beside the correlation id
 * (with path and stack when the handler crashed), the response carries the correlation id in
 * its body and `x-correlation-id` header, and Intake5xx / IntakeUnauthorized are counted.
 * Each case runs a fresh copy of the handler module (one Lambda container) with its own env.
 */
let aws: { address: string; stop(): Promise<void> };
let queueUrl = "";
/** config/local.json turns the Brevo fan-out on, so the intake needs its queue too. */
let brevoQueueUrl = "";
const TOKEN = "intake-token-for-5xx-tests";
const savedEnv = { ...process.env };
let capture: LogCapture | undefined;

beforeAll(async () => {
  aws = await startLocalAws();
  process.env.AWS_ACCESS_KEY_ID ??= "local";
  process.env.AWS_SECRET_ACCESS_KEY ??= "local";
  const sqs = createSqsClient("us-east-1", aws.address);
  queueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: "intake-5xx" }))).QueueUrl ?? "";
  brevoQueueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: "intake-5xx-brevo" }))).QueueUrl ?? "";
  await createS3Client("us-east-1", aws.address).send(new CreateBucketCommand({ Bucket: "rejected-5xx" }));
});
afterAll(() => aws.stop());
afterEach(() => {
  capture?.stop();
  capture = undefined;
  process.env = { ...savedEnv };
});


async function freshHandler(env: Record<string, string>): Promise<(event: APIGatewayProxyEventV2) => Promise<APIGatewayProxyStructuredResultV2>> {
  process.env = {
    ...savedEnv,
    AWS_REGION: "us-east-1",
    AWS_ENDPOINT_URL: aws.address,
    EVENTS_QUEUE_URL: queueUrl,
    BREVO_QUEUE_URL: brevoQueueUrl,
    REJECTED_BUCKET: "rejected-5xx",
    INTAKE_TOKEN: TOKEN,
    POWERTOOLS_LOG_LEVEL: "INFO",
    POWERTOOLS_METRICS_DISABLED: "false",
    POWERTOOLS_DEV: "",
    ...env,
  };
  vi.resetModules();
  const module = await import("../../functions/intake/handler.js");
  return module.handler;
}

function apiEvent(body: unknown, headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` }): APIGatewayProxyEventV2 {
  return {
    version: "2.0",
    routeKey: "$default",
    rawPath: "/v1/events",
    rawQueryString: "",
    headers: { "content-type": "application/json", ...headers },
    requestContext: {
      accountId: "000000000000",
      apiId: "test",
      domainName: "127.0.0.1",
      domainPrefix: "test",
      http: { method: "POST", path: "/v1/events", protocol: "HTTP/1.1", sourceIp: "127.0.0.1", userAgent: "test" },
      requestId: "request-1",
      routeKey: "$default",
      stage: "$default",
      time: new Date().toUTCString(),
      timeEpoch: Date.now(),
    },
    body: JSON.stringify(body),
    isBase64Encoded: false,
  };
}

const goodEvent = () => [{ event: "E", properties: { distinct_id: "u", time: Math.floor(Date.now() / 1000) } }];

function responseCorrelationId(result: APIGatewayProxyStructuredResultV2): string {
  const header = result.headers?.["x-correlation-id"];
  const body: unknown = JSON.parse(String(result.body));
  expect(body).toMatchObject({ correlationId: header });
  expect(typeof header).toBe("string");
  return String(header);
}

function metricNames(log: LogCapture): string[] {
  return log.jsonLines().flatMap((line) => {
    const aws = line._aws;
    if (aws === null || typeof aws !== "object" || !("CloudWatchMetrics" in aws) || !Array.isArray(aws.CloudWatchMetrics)) return [];
    return aws.CloudWatchMetrics.flatMap((entry: { Metrics?: { Name: string }[] }) => (entry.Metrics ?? []).map((metric) => metric.Name));
  });
}

describe("intake 5xx are explained", () => {
  it("queue failure: logs the SQS cause with the correlation id and path; the response carries the id", async () => {
    const handler = await freshHandler({ EVENTS_QUEUE_URL: `${aws.address}/000000000000/no-such-queue` });
    capture = captureOutput();
    const result = await handler(apiEvent(goodEvent()));
    expect(result.statusCode).toBe(503);
    const correlationId = responseCorrelationId(result);
    const line = capture.jsonLines().find((entry) => entry.level === "ERROR");
    expect(line).toMatchObject({ correlationId, path: "/v1/events", status: 503 });
    expect(String(line?.cause)).toMatch(/queue or rejected store: RetryableError: SQS/);
    expect(metricNames(capture)).toContain("Intake5xx");
  });

  it("token store failure: logs the secret store's error with the correlation id", async () => {
    const handler = await freshHandler({
      INTAKE_TOKEN_SECRET_ID: "mixpanel-relay/test/intake-tokens",
      SECRETS_ENDPOINT_URL: `http://127.0.0.1:${await freeLoopbackPort()}`,
    });
    capture = captureOutput();
    const result = await handler(apiEvent(goodEvent(), { authorization: `Bearer ${TOKEN}`, "x-correlation-id": "sender-id-7" }));
    expect(result.statusCode).toBe(503);
    expect(responseCorrelationId(result)).toBe("sender-id-7");
    const line = capture.jsonLines().find((entry) => entry.level === "ERROR");
    expect(line).toMatchObject({ correlationId: "sender-id-7", path: "/v1/events" });
    expect(String(line?.cause)).toMatch(/^intake token store: \w+Error: /);
    expect(metricNames(capture)).toContain("Intake5xx");
  });

  it("crash (unreadable stage config): logs correlation id, path and stack; the response carries the id", async () => {
    const handler = await freshHandler({ RELAY_CONFIG_FILE: "/nonexistent/relay-config.json" });
    capture = captureOutput();
    const result = await handler(apiEvent(goodEvent()));
    expect(result.statusCode).toBe(503);
    expect(result.headers?.["content-type"]).toBe("application/json");
    const correlationId = responseCorrelationId(result);
    const line = capture.jsonLines().find((entry) => entry.level === "ERROR");
    expect(line).toMatchObject({ correlationId, path: "/v1/events", status: 503 });
    expect(String(line?.error)).toContain("/nonexistent/relay-config.json");
    expect(String(line?.stack)).toMatch(/\n\s+at /);
    expect(metricNames(capture)).toContain("Intake5xx");
  });

  it("counts 401s as IntakeUnauthorized, with the correlation id in the answer", async () => {
    const handler = await freshHandler({});
    capture = captureOutput();
    const result = await handler(apiEvent(goodEvent(), { authorization: "Bearer wrong-token-wrong-token" }));
    expect(result.statusCode).toBe(401);
    responseCorrelationId(result);
    expect(metricNames(capture)).toEqual(expect.arrayContaining(["IntakeUnauthorized"]));
    expect(metricNames(capture)).not.toContain("Intake5xx");
  });
});

describe("text the intake had to change is counted", () => {
  it("a surrogate half without its partner becomes U+FFFD, is queued, and counts IntakeLoneSurrogates", async () => {
    const handler = await freshHandler({ AWS_ACCESS_KEY_ID: "local", AWS_SECRET_ACCESS_KEY: "local" });
    capture = captureOutput();
    const [before, after] = JSON.stringify(goodEvent()).split('"u"');
    // "u" followed by a high surrogate half written on its own as three bytes (ED A0 BD).
    const bytes = Buffer.concat([Buffer.from(`${before}"u`), Buffer.from([0xed, 0xa0, 0xbd]), Buffer.from(`"${after}`)]);
    const result = await handler({ ...apiEvent(null), body: bytes.toString("base64"), isBase64Encoded: true });
    expect(result.statusCode, JSON.stringify(capture.jsonLines().filter((line) => line.level === "ERROR"))).toBe(202);
    expect(metricNames(capture)).toContain("IntakeLoneSurrogates");
  });
});
