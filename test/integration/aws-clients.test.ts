import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import { CreateQueueCommand, ReceiveMessageCommand, SQSClient } from "@aws-sdk/client-sqs";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createS3 } from "../../lib/aws/s3.js";
import { createSqs } from "../../lib/aws/sqs.js";
import { sqsRequeue } from "../../lib/runtime/forwarder.js";
import { handleIntake } from "../../lib/intake/process.js";
import { intakeDepsFrom } from "../../lib/runtime/intake.js";
import { createLiteRuntimeContext, rejectedStoreFor } from "../../lib/runtime/lite-context.js";
import { type ProxiedAnswer, type ProxiedRequest, startAwsProxy } from "../support/aws-proxy.js";
import { startLocalAws } from "../support/fauxqs.js";

/**
 * The AWS calls of lib/aws through the SDK's clients, as the functions configure them, against
 * fauxqs behind a proxy that misbehaves the way AWS or a network can.
 */
const credentials = { accessKeyId: "test", secretAccessKey: "test" };
let aws: { address: string; stop(): Promise<void> };
let sqs: SQSClient;
let s3: S3Client;
const queueUrls: Record<string, string> = {};
const stops: (() => Promise<void>)[] = [];

beforeAll(async () => {
  process.env.AWS_ACCESS_KEY_ID ??= "test";
  process.env.AWS_SECRET_ACCESS_KEY ??= "test";
  aws = await startLocalAws();
  sqs = new SQSClient({ region: "us-east-1", endpoint: aws.address, credentials });
  s3 = new S3Client({ region: "us-east-1", endpoint: aws.address, forcePathStyle: true, credentials });
  for (const name of ["events", "events-dlq", "brevo", "requeue"]) {
    queueUrls[name] = (await sqs.send(new CreateQueueCommand({ QueueName: name }))).QueueUrl ?? "";
  }
  await s3.send(new CreateBucketCommand({ Bucket: "relay-objects" }));
});
afterEach(async () => {
  for (const stop of stops.splice(0)) await stop();
});
afterAll(async () => {
  sqs.destroy();
  s3.destroy();
  await aws.stop();
});

async function received(queue: string): Promise<string[]> {
  const answer = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrls[queue], MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }));
  return (answer.Messages ?? []).map((message) => message.Body ?? "");
}

const SKEW_MS = 20 * 60_000;
const ALLOWED_MS = 5 * 60_000;

/** `X-Amz-Date: 20261206T101500Z` → ms. */
function signedAt(request: ProxiedRequest): number {
  const raw = String(request.headers["x-amz-date"] ?? "");
  const match = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(raw);
  if (!match) return Number.NaN;
  const [, y, mo, d, h, mi, s] = match.map(Number) as [number, number, number, number, number, number, number];
  return Date.UTC(y, mo - 1, d, h, mi, s);
}

/**
 * A server whose clock is 20 minutes ahead: its `Date` header says so, and it refuses a request
 * signed more than 5 minutes away from its clock the way AWS does (SQS: InvalidSignatureException
 * "Signature expired"; S3: 403 RequestTimeTooSkewed).
 */
async function skewedAws(): Promise<{ url: string; refused: () => number }> {
  let refused = 0;
  const serverNow = () => new Date(Date.now() + SKEW_MS);
  const proxy = await startAwsProxy(aws.address, {
    answer(request) {
      const now = serverNow();
      if (Math.abs(signedAt(request) - now.getTime()) <= ALLOWED_MS) return undefined;
      refused++;
      const date = now.toUTCString();
      if (request.headers["x-amz-target"]) {
        return {
          status: 400,
          headers: { "content-type": "application/x-amz-json-1.0", "x-amzn-query-error": "InvalidSignatureException;Sender", date },
          body: Buffer.from(JSON.stringify({ __type: "com.amazon.coral.service#InvalidSignatureException", message: `Signature expired: ${String(request.headers["x-amz-date"])} is now earlier than ${now.toISOString()}` })),
        };
      }
      return {
        status: 403,
        headers: { "content-type": "application/xml", date },
        body: Buffer.from(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>RequestTimeTooSkewed</Code><Message>The difference between the request time and the current time is too large.</Message></Error>`),
      };
    },
    change(_request, answer) {
      answer.headers.date = serverNow().toUTCString();
    },
  });
  stops.push(proxy.stop);
  return { url: proxy.url, refused: () => refused };
}

function runtimeAt(endpoint: string, path: "intake" | "consumer") {
  return createLiteRuntimeContext(
    {
      AWS_REGION: "us-east-1",
      AWS_ENDPOINT_URL: endpoint,
      RELAY_STAGE: "local",
      RELAY_CONFIG_FILE: "config/local.json",
      EVENTS_QUEUE_URL: queueUrls.events,
      BREVO_QUEUE_URL: queueUrls.brevo,
      REJECTED_BUCKET: "relay-objects",
      INTAKE_TOKEN: "skew-test-intake-token-0001",
    },
    path,
  );
}

describe("a server clock 20 minutes ahead", () => {
  it("the intake still queues (202): the SDK corrects its clock from the refusal's Date and signs again", async () => {
    const skewed = await skewedAws();
    const deps = intakeDepsFrom(runtimeAt(skewed.url, "intake"));
    const result = await handleIntake(
      {
        method: "POST",
        path: "/v1/events",
        headers: { authorization: "Bearer skew-test-intake-token-0001" },
        query: {},
        body: Buffer.from(JSON.stringify([{ event: "Skewed", properties: { distinct_id: "u-skew", time: Math.floor(Date.now() / 1000) } }])),
      },
      deps,
    );
    expect(result.response.statusCode).toBe(202);
    expect(skewed.refused()).toBeGreaterThan(0);
    const { correlationId } = JSON.parse(result.response.body) as { correlationId: string };
    expect((await received("events")).join("\n")).toContain(`"correlationId":"${correlationId}"`);
  });

  it("the forwarder still sends: requeue (SQS SendMessage) and the rejected store (S3 PutObject)", async () => {
    const skewed = await skewedAws();
    const runtime = runtimeAt(skewed.url, "consumer");
    await sqsRequeue(runtime.sqs, queueUrls.requeue ?? "", queueUrls["events-dlq"] ?? "", 3).send("requeued-body", 0);
    const sqsRefusals = skewed.refused();
    expect(sqsRefusals).toBeGreaterThan(0);
    expect(await received("requeue")).toEqual(["requeued-body"]);

    const key = await rejectedStoreFor(runtime).put({ source: "skew", correlationId: "c-skew", stageOfFailure: "forwarder", items: [{ index: 0, code: "x", reason: "y" }] });
    expect(skewed.refused()).toBeGreaterThan(sqsRefusals);
    const stored = await s3.send(new GetObjectCommand({ Bucket: "relay-objects", Key: key }));
    expect(await stored.Body?.transformToString()).toContain("c-skew");
  });
});

describe("SQS answers", () => {
  it("refuses a send whose MD5OfMessageBody does not match the body sent", async () => {
    const proxy = await startAwsProxy(aws.address, {
      change(request, answer) {
        if (request.headers["x-amz-target"] !== "AmazonSQS.SendMessage" || answer.status !== 200) return;
        const parsed = JSON.parse(answer.body.toString("utf8")) as Record<string, unknown>;
        answer.body = Buffer.from(JSON.stringify({ ...parsed, MD5OfMessageBody: "0".repeat(32) }));
      },
    });
    stops.push(proxy.stop);
    await expect(createSqs({ region: "us-east-1", endpoint: proxy.url }).sendMessage(queueUrls.requeue ?? "", "md5-checked")).rejects.toThrow(/md5|checksum/i);
    await received("requeue");
  });
});

describe("S3 objects", () => {
  it("keeps a key with . and .. segments literally (no path normalisation)", async () => {
    const objects = createS3({ region: "us-east-1", endpoint: aws.address });
    const keys = ["dots/x/../y.txt", "dots/./a/./b.txt", "dots/../escape.txt", "dots/trailing/.."];
    for (const key of keys) await objects.putObject("relay-objects", key, `body of ${key}`, "text/plain");
    for (const key of keys) expect(new TextDecoder().decode(await objects.getObject("relay-objects", key))).toBe(`body of ${key}`);
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: "relay-objects", Prefix: "dots/" }));
    expect((listed.Contents ?? []).map((item) => item.Key).sort()).toEqual(keys.filter((key) => key.startsWith("dots/")).sort());
    const all = await s3.send(new ListObjectsV2Command({ Bucket: "relay-objects" }));
    expect((all.Contents ?? []).map((item) => item.Key)).not.toContain("y.txt");
    expect((all.Contents ?? []).map((item) => item.Key)).not.toContain("dots/y.txt");
  });

  it("sends a checksum with PutObject and refuses a GetObject body that does not match it", async () => {
    // S3 keeps the checksum the client sent with PutObject and returns it on a GetObject that asks
    // for it (x-amz-checksum-mode: ENABLED). fauxqs keeps none, so the proxy keeps the client's,
    // then corrupts one byte of the body on the way back, as a faulty network or disk would.
    const checksums = new Map<string, [string, string]>();
    const proxy = await startAwsProxy(aws.address, {
      answer(request) {
        const header = Object.keys(request.headers).find((name) => name.startsWith("x-amz-checksum-") && name !== "x-amz-checksum-mode");
        if (request.method === "PUT" && header) checksums.set(request.url.split("?")[0] ?? "", [header, String(request.headers[header])]);
        return undefined;
      },
      change(request, answer: ProxiedAnswer) {
        const stored = checksums.get(request.url.split("?")[0] ?? "");
        if (request.method !== "GET" || !stored || request.headers["x-amz-checksum-mode"] !== "ENABLED") return;
        const [name, value] = stored;
        answer.headers[name] = value;
        if (request.url.includes("corrupted")) answer.body[3] = (answer.body[3] ?? 0) ^ 0x20;
      },
    });
    stops.push(proxy.stop);
    const objects = createS3({ region: "us-east-1", endpoint: proxy.url });
    await objects.putObject("relay-objects", "integrity/intact.json", '{"intact":true}', "application/json");
    await objects.putObject("relay-objects", "integrity/corrupted.json", '{"corrupted":true}', "application/json");
    expect(checksums.size).toBe(2);
    expect(new TextDecoder().decode(await objects.getObject("relay-objects", "integrity/intact.json"))).toBe('{"intact":true}');
    await expect(objects.getObject("relay-objects", "integrity/corrupted.json")).rejects.toThrow(/checksum/i);
  });
});

describe("credentials", () => {
  const saved = { ...process.env };
  afterEach(() => {
    for (const name of Object.keys(process.env)) if (!(name in saved)) delete process.env[name];
    Object.assign(process.env, saved);
  });

  it("uses container credentials served by a local endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI + token)", async () => {
    const served: string[] = [];
    const endpoint: Server = createServer((request, response) => {
      served.push(String(request.headers.authorization));
      response.writeHead(200, { "content-type": "application/json" });
      response.end(
        JSON.stringify({
          AccessKeyId: "ASIACONTAINERKEY0001",
          SecretAccessKey: "container-secret",
          Token: "container-session-token",
          Expiration: new Date(Date.now() + 3_600_000).toISOString(),
        }),
      );
    });
    await new Promise<void>((done) => endpoint.listen(0, "127.0.0.1", done));
    stops.push(() => new Promise<void>((done) => endpoint.close(() => done())));
    const proxy = await startAwsProxy(aws.address, {});
    stops.push(proxy.stop);

    delete process.env.AWS_ACCESS_KEY_ID;
    delete process.env.AWS_SECRET_ACCESS_KEY;
    delete process.env.AWS_SESSION_TOKEN;
    delete process.env.AWS_PROFILE;
    process.env.AWS_SHARED_CREDENTIALS_FILE = "/nonexistent/credentials";
    process.env.AWS_CONFIG_FILE = "/nonexistent/config";
    process.env.AWS_EC2_METADATA_DISABLED = "true";
    process.env.AWS_CONTAINER_CREDENTIALS_FULL_URI = `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}/v1/credentials`;
    process.env.AWS_CONTAINER_AUTHORIZATION_TOKEN = "container-auth-token";

    await createSqs({ region: "us-east-1", endpoint: proxy.url }).sendMessage(queueUrls.requeue ?? "", "with container credentials");
    expect(served).toEqual(["container-auth-token"]);
    const signed = proxy.requests.at(-1);
    expect(String(signed?.headers.authorization)).toContain("Credential=ASIACONTAINERKEY0001/");
    expect(signed?.headers["x-amz-security-token"]).toBe("container-session-token");
    expect(await received("requeue")).toContain("with container credentials");
  });
});
