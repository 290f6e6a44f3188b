import { createServer, type Server } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AwsCallError, awsJsonCall, createAwsCaller } from "../../lib/aws/aws-call.js";
import { closeServer, listenOnLoopback } from "../../infra/local/peers/local-server.js";

/** lib/aws/aws-call.ts against a loopback server that answers what a test scripts. */
let server: Server;
let url = "";
const answers: { status: number; headers?: Record<string, string>; body: string }[] = [];
const seen: { path: string; authorization: string; target: string }[] = [];

beforeAll(async () => {
  process.env.AWS_ACCESS_KEY_ID ??= "test";
  process.env.AWS_SECRET_ACCESS_KEY ??= "test";
  server = createServer((request, response) => {
    request.resume();
    request.on("end", () => {
      seen.push({ path: request.url ?? "", authorization: String(request.headers.authorization ?? ""), target: String(request.headers["x-amz-target"] ?? "") });
      const answer = answers.shift() ?? { status: 200, body: "{}" };
      response.writeHead(answer.status, { "content-type": "application/x-amz-json-1.0", ...answer.headers });
      response.end(answer.body);
    });
  });
  url = `http://127.0.0.1:${await listenOnLoopback(server)}`;
});
afterAll(() => closeServer(server));

describe("AWS calls without the SDK", () => {
  it("signs with SigV4 and names the operation", async () => {
    seen.length = 0;
    answers.push({ status: 200, body: '{"Failed":[]}' });
    const caller = createAwsCaller("sqs", { region: "eu-west-1", endpoint: url });
    expect(await awsJsonCall(caller, "1.0", "AmazonSQS.SendMessageBatch", { QueueUrl: "q", Entries: [] })).toEqual({ Failed: [] });
    expect(seen[0]?.authorization).toMatch(/^AWS4-HMAC-SHA256 Credential=[^/]+\/\d{8}\/eu-west-1\/sqs\/aws4_request/);
    expect(seen[0]?.target).toBe("AmazonSQS.SendMessageBatch");
  });

  it("retries throttling and 5xx, then answers; never retries a plain refusal", async () => {
    seen.length = 0;
    answers.push(
      { status: 400, body: '{"__type":"com.amazonaws.sqs#ThrottlingException","message":"slow down"}' },
      { status: 503, body: "{}" },
      { status: 200, body: '{"ok":true}' },
    );
    const caller = createAwsCaller("sqs", { region: "us-east-1", endpoint: url });
    expect(await awsJsonCall(caller, "1.0", "AmazonSQS.SendMessage", {})).toEqual({ ok: true });
    expect(seen).toHaveLength(3);
    seen.length = 0;
    answers.push({ status: 400, body: '{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"no queue"}' });
    const error = await awsJsonCall(caller, "1.0", "AmazonSQS.SendMessage", {}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AwsCallError);
    expect(error).toMatchObject({ code: "QueueDoesNotExist", status: 400, name: "QueueDoesNotExist" });
    expect(seen).toHaveLength(1);
  });

  it("refuses a redirect instead of following it with the signed request", async () => {
    seen.length = 0;
    answers.push({ status: 307, headers: { location: `${url}/elsewhere` }, body: "" });
    const caller = createAwsCaller("secretsmanager", { region: "us-east-1", endpoint: url });
    const error = await awsJsonCall(caller, "1.1", "secretsmanager.GetSecretValue", { SecretId: "x" }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "Redirect", status: 307 });
    expect(seen.map((s) => s.path)).toEqual(["/"]);
  });

  it("reads S3's XML error code", async () => {
    answers.push({ status: 404, headers: { "content-type": "application/xml" }, body: "<Error><Code>NoSuchKey</Code><Message>gone</Message></Error>" });
    const caller = createAwsCaller("s3", { region: "us-east-1", endpoint: url });
    await expect(caller.call(`${url}/bucket/key`, { method: "GET" })).rejects.toMatchObject({ code: "NoSuchKey", status: 404 });
  });
});
