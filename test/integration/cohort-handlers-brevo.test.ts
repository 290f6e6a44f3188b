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
import { BrevoServer } from "../../infra/local/peers/brevo-server.js";
import { createCohortQueryApi } from "../../infra/local/peers/mixpanel-query.js";
import { SecretsManagerServer } from "../../infra/local/peers/secrets-manager-server.js";

/**
 * The two handlers as one warm container serves them: deps are built once, the time
 * left is read from each invocation's own context, and the Brevo rate gate outlives
 * an invocation; records of a batch are delivered one at a time.
 */
const contextWith = (ms: number) => ({ getRemainingTimeInMillis: () => ms }) as unknown as Context;

describe("cohort handlers in a warm container (Brevo destination)", () => {
  const app = buildApp({ logger: false });
  const secrets = new SecretsManagerServer();
  // One call per hour: after the first import the gate is closed for ≈ 3600 s.
  const brevo = new BrevoServer({ apiKey: "xkeysib-local", listIds: [12], limit: 1, windowMs: 3_600_000 });
  const profiles = new Map<string, Record<string, unknown>>();
  const queryApi = createCohortQueryApi({
    profiles: () => profiles,
    cohorts: [{ id: 21, name: "Newsletter", where: (p) => p.news === true }],
    projectId: "777",
    username: "svc",
    secret: "svc-secret",
  });
  let queryServer: Server;
  let sqs: SQSClient;
  let queueUrl = "";

  beforeAll(async () => {
    await app.listen({ port: 0, host: "127.0.0.1" });
    const endpoint = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    const credentials = { accessKeyId: "test", secretAccessKey: "test" };
    const s3 = new S3Client({ region: "us-east-1", endpoint, forcePathStyle: true, credentials });
    sqs = new SQSClient({ region: "us-east-1", endpoint, useQueueUrlAsEndpoint: false, credentials });
    await s3.send(new CreateBucketCommand({ Bucket: "relay-snapshots" }));
    queueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: "cohort-deliveries" }))).QueueUrl ?? "";
    queryServer = createServer((req, res) => void queryApi.handle(req, res, new URL(req.url ?? "/", "http://x")));
    await new Promise<void>((r) => queryServer.listen(0, "127.0.0.1", r));
    const brevoUrl = await brevo.start();
    secrets.setSecret("relay/local/brevo", { api_key: "xkeysib-local" });
    secrets.setSecret("relay/local/mixpanel", { project_id: "777", service_account_username: "svc", service_account_secret: "svc-secret" });
    const configFile = join(mkdtempSync(join(tmpdir(), "cohort-brevo-cfg-")), "local.json");
    writeFileSync(
      configFile,
      JSON.stringify({
        residency: "eu",
        cohort_syncs: [{ id: "news-brevo", cohort_id: 21, destination: { type: "brevo", list_id: 12, base_url: brevoUrl, api_key_secret: "relay/local/brevo" } }],
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
      POWERTOOLS_METRICS_DISABLED: "true",
      POWERTOOLS_LOG_LEVEL: "ERROR",
    });
    // 1500 members → two `members` pages (1000 + 500).
    for (let i = 0; i < 1500; i++) profiles.set(`n${i}`, { news: true, $email: `n${i}@example.com`, $first_name: `N${i}` });
  });

  afterAll(async () => {
    await brevo.close();
    await secrets.stop();
    await new Promise<void>((r) => queryServer.close(() => r()));
    await app.close();
  });

  async function sqsEvent(): Promise<SQSEvent> {
    const result = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, VisibilityTimeout: 0 }));
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

  it("reads each invocation's own remaining time, processes records one at a time and keeps the Brevo gate between invocations", async () => {
    const { handler: exportHandler } = await import("../../functions/cohort-export/handler.js");
    const { handler: deliveryHandler } = await import("../../functions/webhook-delivery/handler.js");

    // Cold start with 20 s left: below the fetch margin, so the run starts but nothing is fetched.
    const short = await exportHandler({}, contextWith(20_000));
    expect(short.syncs["news-brevo"]?.outcome).toBe("fetching");
    expect(queryApi.queries.map((q) => q.path)).toEqual(["/cohorts/list"]);
    // Same container, a fresh invocation with 10 minutes: its own deadline applies.
    const long = await exportHandler({}, contextWith(600_000));
    expect(long.syncs["news-brevo"]?.outcome).toBe("enqueued");
    expect(queryApi.queries.map((q) => q.path)).toEqual(["/cohorts/list", "/engage", "/engage"]);

    const event = await sqsEvent();
    expect(event.Records).toHaveLength(2);
    // Sequential: page 1 spends the hour's only call and closes the gate for ≈ 3600 s;
    // page 2 sees the closed gate and goes back to SQS without a call (in parallel both
    // would have called and one would have been answered 429).
    const first = await deliveryHandler(event, contextWith(600_000));
    expect(first.batchItemFailures).toHaveLength(1);
    // The import's process check is under Brevo's separate limit for other endpoints.
    expect(brevo.calls.map((c) => [c.path, c.status])).toEqual([["/v3/contacts/import", 202], ["/v3/processes/1", 200]]);
    expect(brevo.throttled).toBe(0);
    expect(brevo.lists.get(12)?.size).toBe(1000);

    // Next invocation of the same container: the gate is still closed, so again no call.
    const failed = event.Records.find((r) => r.messageId === first.batchItemFailures[0]?.itemIdentifier);
    const second = await deliveryHandler({ Records: failed ? [failed] : [] }, contextWith(600_000));
    expect(second.batchItemFailures.map((f) => f.itemIdentifier)).toEqual([failed?.messageId]);
    expect(brevo.calls).toHaveLength(2);
    expect(brevo.throttled).toBe(0);
  });
});
