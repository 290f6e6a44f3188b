import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import { CreateQueueCommand, ReceiveMessageCommand, SQSClient } from "@aws-sdk/client-sqs";
import type { Context, SQSEvent } from "aws-lambda";
import { buildApp } from "fauxqs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCohortQueryApi } from "../../infra/local/peers/mixpanel-query.js";
import { SecretsManagerServer } from "../../infra/local/peers/secrets-manager-server.js";
import { WebhookReceiver } from "../../infra/local/peers/webhook-server.js";

/** The two Lambda handlers, end to end, configured only through env + the stage config file. */
const SIGNING = "local-signing-secret-123";
const context = { getRemainingTimeInMillis: () => 600_000 } as unknown as Context;

describe("cohort-export and webhook-delivery handlers", () => {
  const app = buildApp({ logger: false });
  const secrets = new SecretsManagerServer();
  const receiver = new WebhookReceiver({ signingSecret: SIGNING });
  const profiles = new Map<string, Record<string, unknown>>();
  const queryApi = createCohortQueryApi({
    profiles: () => profiles,
    cohorts: [{ id: 11, name: "Beta testers", where: (p) => p.beta === true }],
    projectId: "777",
    username: "svc",
    secret: "svc-secret",
  });
  let queryServer: Server;
  let sqs: SQSClient;
  let queueUrl = "";
  let dlqUrl = "";

  beforeAll(async () => {
    await app.listen({ port: 0, host: "127.0.0.1" });
    const endpoint = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    const credentials = { accessKeyId: "test", secretAccessKey: "test" };
    const s3 = new S3Client({ region: "us-east-1", endpoint, forcePathStyle: true, credentials });
    sqs = new SQSClient({ region: "us-east-1", endpoint, useQueueUrlAsEndpoint: false, credentials });
    await s3.send(new CreateBucketCommand({ Bucket: "relay-snapshots" }));
    queueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: "cohort-deliveries" }))).QueueUrl ?? "";
    dlqUrl = (await sqs.send(new CreateQueueCommand({ QueueName: "cohort-deliveries-dlq" }))).QueueUrl ?? "";
    queryServer = createServer((req, res) => void queryApi.handle(req, res, new URL(req.url ?? "/", "http://x")));
    await new Promise<void>((r) => queryServer.listen(0, "127.0.0.1", r));
    const hookUrl = await receiver.start();
    secrets.setSecret("relay/local/hook-signing", { secret: SIGNING });
    secrets.setSecret("relay/local/mixpanel", { project_id: "777", service_account_username: "svc", service_account_secret: "svc-secret" });
    const dir = mkdtempSync(join(tmpdir(), "cohort-cfg-"));
    const configFile = join(dir, "local.json");
    writeFileSync(
      configFile,
      JSON.stringify({
        residency: "eu",
        cohort_syncs: [{ id: "beta-hook", cohort_id: 11, properties: ["plan"], destination: { type: "webhook", url: hookUrl, signing_secret: "relay/local/hook-signing" } }],
      }),
    );
    Object.assign(process.env, {
      RELAY_STAGE: "local",
      RELAY_CONFIG_FILE: configFile,
      AWS_ENDPOINT_URL: endpoint,
      AWS_ACCESS_KEY_ID: "test",
      AWS_SECRET_ACCESS_KEY: "test",
      SECRETS_ENDPOINT_URL: await secrets.start(),
      MIXPANEL_SECRET_ID: "relay/local/mixpanel",
      MIXPANEL_QUERY_URL: `http://127.0.0.1:${(queryServer.address() as AddressInfo).port}/api/query`,
      SNAPSHOT_BUCKET: "relay-snapshots",
      DELIVERIES_QUEUE_URL: queueUrl,
      DELIVERIES_DLQ_URL: dlqUrl,
      POWERTOOLS_METRICS_DISABLED: "true",
      POWERTOOLS_LOG_LEVEL: "ERROR",
    });
    for (let i = 1; i <= 4; i++) profiles.set(`p${i}`, { beta: true, $email: `p${i}@example.com`, plan: "team" });
  });

  afterAll(async () => {
    await receiver.close();
    await secrets.stop();
    await new Promise<void>((r) => queryServer.close(() => r()));
    await app.close();
  });

  async function sqsEvent(url: string): Promise<SQSEvent> {
    const result = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10 }));
    return {
      Records: (result.Messages ?? []).map((m) => ({
        messageId: m.MessageId ?? "",
        receiptHandle: m.ReceiptHandle ?? "",
        body: m.Body ?? "",
        attributes: { ApproximateReceiveCount: "1", SentTimestamp: "0", SenderId: "x", ApproximateFirstReceiveTimestamp: "0" },
        messageAttributes: {},
        md5OfBody: "",
        eventSource: "aws:sqs",
        eventSourceARN: "arn:aws:sqs:us-east-1:000000000000:cohort-deliveries",
        awsRegion: "us-east-1",
      })),
    };
  }

  it("exports on a tick, delivers through the SQS handler with ReportBatchItemFailures, and dead-letters a 4xx with its body", async () => {
    const { handler: exportHandler } = await import("../../functions/cohort-export/handler.js");
    const { handler: deliveryHandler } = await import("../../functions/webhook-delivery/handler.js");
    const report = await exportHandler({ "detail-type": "Scheduled Event" }, context);
    expect(report.syncs["beta-hook"]?.outcome).toBe("enqueued");
    expect(queryApi.queries.map((q) => q.path)).toEqual(["/cohorts/list", "/engage"]);

    const event = await sqsEvent(queueUrl);
    expect(event.Records).toHaveLength(1);
    expect(await deliveryHandler(event, context)).toEqual({ batchItemFailures: [] });
    expect(receiver.pages).toHaveLength(1);
    expect(receiver.pages[0]?.payload.parameters.mixpanel_project_id).toBe("777");
    expect(receiver.pages[0]?.payload.parameters.members.map((m) => m.mixpanel_distinct_id).sort()).toEqual(["p1", "p2", "p3", "p4"]);
    // Redelivery of the same record: acknowledged, not re-sent.
    expect(await deliveryHandler(event, context)).toEqual({ batchItemFailures: [] });
    expect(receiver.pages).toHaveLength(1);

    // Force a run now; the receiver refuses it for good.
    profiles.set("p5", { beta: true, $email: "p5@example.com" });
    const forced = await exportHandler({ force: ["beta-hook"] }, context);
    expect(forced.syncs["beta-hook"]?.outcome).toBe("enqueued");
    const next = await sqsEvent(queueUrl);
    receiver.failNext({ status: 422, body: "unknown member field" }, { status: 422, body: "unknown member field" });
    expect(await deliveryHandler(next, context)).toEqual({ batchItemFailures: [] });
    const dead = await sqsEvent(dlqUrl);
    expect(dead.Records).toHaveLength(next.Records.length);
    expect(dead.Records[0]?.body).toContain("unknown member field");

    // A transient failure becomes a batchItemFailure.
    await exportHandler({ force: ["beta-hook"] }, context);
    const third = await sqsEvent(queueUrl);
    receiver.failNext(...Array.from({ length: 10 }, () => ({ status: 503 })));
    // Little time left in the invocation: no backoff sleep fits, so the record goes straight back to SQS.
    const shortContext = { getRemainingTimeInMillis: () => 12_000 } as unknown as Context;
    const partial = await deliveryHandler(third, shortContext);
    expect(partial.batchItemFailures.map((f) => f.itemIdentifier).sort()).toEqual(third.Records.map((r) => r.messageId).sort());
  });
});
