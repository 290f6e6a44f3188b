import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { CreateBucketCommand, ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import { CreateQueueCommand, ReceiveMessageCommand, SQSClient } from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startLocalAws } from "../support/fauxqs.js";

/**
 * The function bundles as infra/build.ts makes them for Lambda: what they leave out, and a
 * bundle that runs its first AWS call with only the credentials Lambda can give it.
 */
const ROOT = resolve(import.meta.dirname, "../..");
let out: string;
let aws: { address: string; stop(): Promise<void> };

beforeAll(async () => {
  out = mkdtempSync(join(tmpdir(), "relay-bundles-"));
  execFileSync(process.execPath, ["--import", "tsx", "infra/build.ts"], { cwd: ROOT, env: { ...process.env, BUILD_OUT_DIR: out }, stdio: "ignore" });
  aws = await startLocalAws();
}, 120_000);
afterAll(async () => {
  await aws?.stop();
  rmSync(out, { recursive: true, force: true });
});

const functionNames = () => readdirSync(out).filter((name) => !name.startsWith("."));
const inputsOf = (name: string): string[] => {
  const meta = JSON.parse(readFileSync(join(out, name, "meta.json"), "utf8")) as { inputs: Record<string, unknown> };
  return Object.keys(meta.inputs);
};
const moduleFiles = (name: string) => readdirSync(join(out, name)).filter((file) => file.endsWith(".mjs"));

describe("function bundles", () => {
  it("builds all six functions", () => {
    expect(functionNames().sort()).toEqual(["brevo-forwarder", "cohort-export", "currents-reader", "forwarder", "intake", "webhook-delivery"]);
  });

  it("carry Lambda's credential sources only, not the SDK's SSO, profile, process or web-identity chain", () => {
    for (const name of functionNames()) {
      const inputs = inputsOf(name);
      expect(inputs.filter((input) => /credential-provider-(node|ini|sso|process|web-identity|login)\/|nested-clients\/|token-providers\//.test(input)), name).toEqual([]);
      expect(inputs.some((input) => input.endsWith("lib/aws/lambda-credentials.ts")), name).toBe(true);
    }
  });

  it("leave out the browser user-agent parser", () => {
    for (const name of functionNames()) expect(inputsOf(name).filter((input) => input.includes("node_modules/bowser/")), name).toEqual([]);
  });

  it("map our sources only, and every function's handler stays mapped", () => {
    for (const name of functionNames()) {
      const maps = readdirSync(join(out, name)).filter((file) => file.endsWith(".mjs.map"));
      const sources = maps.flatMap((file) => (JSON.parse(readFileSync(join(out, name, file), "utf8")) as { sources: string[] }).sources);
      expect(sources.filter((source) => source.includes("node_modules/")), name).toEqual([]);
      const index = JSON.parse(readFileSync(join(out, name, "index.mjs.map"), "utf8")) as { sources: string[]; mappings: string };
      expect(index.sources.some((source) => source.endsWith(`functions/${name}/handler.ts`)), name).toBe(true);
      expect(index.mappings.length, name).toBeGreaterThan(1000);
    }
  });

  it("keep only the shapes of the AWS operations a function calls", () => {
    // S3 bucket analytics is an operation no function calls; its shapes were 58 KiB of every S3 chunk.
    for (const name of functionNames()) {
      for (const file of moduleFiles(name)) expect(readFileSync(join(out, name, file), "utf8").includes("AnalyticsConfiguration"), `${name}/${file}`).toBe(false);
    }
  });

  it("never import node:http or node:https as an ES module (its facade would load undici)", () => {
    for (const name of functionNames()) {
      for (const file of moduleFiles(name)) {
        const text = readFileSync(join(out, name, file), "utf8");
        expect(/\bfrom\s*["'](node:)?https?["']/.test(text), `${name}/${file}`).toBe(false);
      }
    }
  });

  /** Runs a function's bundle once with test/bench/cold-start-invoke.mjs (its event makes the function's first AWS call). */
  function runBundle(name: string, env: NodeJS.ProcessEnv): Promise<string> {
    const script = resolve(ROOT, "test/bench/cold-start-invoke.mjs");
    return new Promise<string>((done, fail) => {
      const child = spawn(process.execPath, [script, join(out, name, "index.mjs"), name], { env, stdio: ["ignore", "pipe", "pipe"] });
      let text = "";
      child.stdout.on("data", (chunk: Buffer) => (text += chunk.toString()));
      child.stderr.on("data", (chunk: Buffer) => (text += chunk.toString()));
      const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
      child.on("close", (code) => {
        clearTimeout(timer);
        if (code === 0) done(text);
        else fail(new Error(`${name} bundle exited ${code}: ${text.slice(-2000)}`));
      });
    });
  }

  /** Runs the forwarder's bundle once on an unreadable message (its first AWS call: the rejected store's PutObject); answers the objects stored. */
  async function forwarderStoresWith(credentials: NodeJS.ProcessEnv): Promise<number> {
    const s3 = new S3Client({ region: "us-east-1", endpoint: aws.address, forcePathStyle: true, credentials: { accessKeyId: "t", secretAccessKey: "t" } });
    const bucket = `bundle-rejected-${Object.keys(credentials).length}`;
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: mkdtempSync(join(tmpdir(), "relay-bundle-home-")),
      AWS_REGION: "us-east-1",
      AWS_ENDPOINT_URL: aws.address,
      AWS_EC2_METADATA_DISABLED: "true",
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
      RELAY_STAGE: "local",
      RELAY_CONFIG_FILE: join(ROOT, "config/local.json"),
      REJECTED_BUCKET: bucket,
      EVENTS_QUEUE_URL: `${aws.address}/000000000000/events`,
      EVENTS_DLQ_URL: `${aws.address}/000000000000/events-dlq`,
      MIXPANEL_PROJECT_ID: "1",
      MIXPANEL_PROJECT_TOKEN: "bundle",
      MIXPANEL_SERVICE_ACCOUNT_USERNAME: "bundle",
      MIXPANEL_SERVICE_ACCOUNT_SECRET: "bundle",
      MIXPANEL_API_URL: "http://127.0.0.1:9",
      POWERTOOLS_METRICS_DISABLED: "true",
      POWERTOOLS_LOG_LEVEL: "ERROR",
      ...credentials,
    };
    await runBundle("forwarder", env);
    const stored = await s3.send(new ListObjectsV2Command({ Bucket: bucket }));
    s3.destroy();
    return stored.KeyCount ?? 0;
  }

  it("the intake's bundle reads the erased-ids list (S3 GetObject) and queues an event (SQS SendMessageBatch)", async () => {
    const sqs = new SQSClient({ region: "us-east-1", endpoint: aws.address, credentials: { accessKeyId: "t", secretAccessKey: "t" } });
    const s3 = new S3Client({ region: "us-east-1", endpoint: aws.address, forcePathStyle: true, credentials: { accessKeyId: "t", secretAccessKey: "t" } });
    const queue = async (name: string) => (await sqs.send(new CreateQueueCommand({ QueueName: name }))).QueueUrl ?? "";
    for (const bucket of ["bundle-intake-rejected", "bundle-intake-snapshots"]) await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    const eventsQueue = await queue("bundle-intake-events");
    const output = await runBundle("intake", {
      PATH: process.env.PATH,
      HOME: mkdtempSync(join(tmpdir(), "relay-bundle-home-")),
      AWS_REGION: "us-east-1",
      AWS_ENDPOINT_URL: aws.address,
      AWS_ACCESS_KEY_ID: "AKIABUNDLE",
      AWS_SECRET_ACCESS_KEY: "s",
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: "true",
      RELAY_STAGE: "local",
      RELAY_CONFIG_FILE: join(ROOT, "config/local.json"),
      EVENTS_QUEUE_URL: eventsQueue,
      EVENTS_DLQ_URL: await queue("bundle-intake-events-dlq"),
      BREVO_QUEUE_URL: await queue("bundle-intake-brevo"),
      BREVO_DLQ_URL: await queue("bundle-intake-brevo-dlq"),
      REJECTED_BUCKET: "bundle-intake-rejected",
      SNAPSHOT_BUCKET: "bundle-intake-snapshots",
      INTAKE_TOKEN: "bundle-intake-token-0001",
      MIXPANEL_PROJECT_ID: "1",
      MIXPANEL_PROJECT_TOKEN: "bundle",
      POWERTOOLS_METRICS_DISABLED: "true",
      POWERTOOLS_LOG_LEVEL: "ERROR",
    });
    expect(output).toContain('"statusCode":202');
    const received = await sqs.send(new ReceiveMessageCommand({ QueueUrl: eventsQueue, MaxNumberOfMessages: 10 }));
    expect(received.Messages?.length).toBe(1);
    sqs.destroy();
    s3.destroy();
  }, 60_000);

  it("the forwarder's bundle stores an unreadable message with the environment's credentials", async () => {
    expect(await forwarderStoresWith({ AWS_ACCESS_KEY_ID: "AKIABUNDLE", AWS_SECRET_ACCESS_KEY: "s", AWS_SESSION_TOKEN: "t" })).toBe(1);
  }, 60_000);

  it("the forwarder's bundle stores an unreadable message with container credentials alone", async () => {
    const served: string[] = [];
    const endpoint: Server = createServer((request, response) => {
      served.push(String(request.headers.authorization));
      response.writeHead(200, { "content-type": "application/json" });
      response.end(JSON.stringify({ AccessKeyId: "ASIABUNDLEKEY0001", SecretAccessKey: "s", Token: "t", Expiration: new Date(Date.now() + 3_600_000).toISOString() }));
    });
    await new Promise<void>((done) => endpoint.listen(0, "127.0.0.1", done));
    try {
      const stored = await forwarderStoresWith({
        AWS_CONTAINER_CREDENTIALS_FULL_URI: `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}/creds`,
        AWS_CONTAINER_AUTHORIZATION_TOKEN: "bundle-token",
      });
      expect(stored).toBe(1);
      expect(served).toEqual(["bundle-token"]);
    } finally {
      await new Promise<void>((done) => endpoint.close(() => done()));
    }
  }, 60_000);
});
