import { createHmac } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from "@aws-sdk/client-s3";
import { ReceiveMessageCommand } from "@aws-sdk/client-sqs";
import avro from "avsc";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalStack, startLocalStack } from "../../infra/local/stack.js";
import { captureOutput, type LogCapture } from "../support/log-capture.js";
import { avroFile } from "../unit/sources/avro-support.js";

/**
 * The stage's `pii` rules at the edge, through the real handlers, queue and rejected store:
 * emails reach Mixpanel hashed (HMAC-SHA256 hex with the stage key), dropped properties never
 * arrive, and no raw value is in the queue, the rejected store or any log line.
 */
const KEY = "local-pii-hash-key-for-tests-0123456789";
const hmac = (text: string) => createHmac("sha256", KEY).update(text).digest("hex");
const NOW_S = () => Math.floor(Date.now() / 1000);
const RAW = {
  braze: "braze.secret@example.com",
  brazeAvro: "avro.secret@example.com",
  native: "native.secret@example.com",
  profile: "profile.secret@example.com",
  phone: "+15550009999",
  rejectedNative: "rejected.native@example.com",
  rejectedBraze: "rejected.braze@example.com",
  rejectedAdobe: "rejected.adobe@example.com",
};

let stack: LocalStack;
let capture: LogCapture;
const queueBodies: string[] = [];

async function post(path: string, body: unknown) {
  const response = await fetch(`${stack.intakeUrl}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${stack.intakeToken}` },
    body: JSON.stringify(body),
  });
  return { status: response.status, json: (await response.json()) as Record<string, unknown> };
}

/** Reads what is on the events queue (the messages reappear after the 1 s visibility timeout). */
async function peekQueue(): Promise<void> {
  for (let i = 0; i < 10; i++) {
    const received = await stack.sqs.send(new ReceiveMessageCommand({ QueueUrl: stack.events.url, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }));
    if (!received.Messages?.length) return;
    queueBodies.push(...received.Messages.map((message) => message.Body ?? ""));
  }
}

async function rejectedStoreText(): Promise<string> {
  const listed = await stack.s3.send(new ListObjectsV2Command({ Bucket: stack.rejectedBucket }));
  const texts = await Promise.all(
    (listed.Contents ?? []).map(async (object) => {
      const got = await stack.s3.send(new GetObjectCommand({ Bucket: stack.rejectedBucket, Key: object.Key }));
      return (await got.Body?.transformToString()) ?? "";
    }),
  );
  return texts.join("\n");
}

/** Scratch folder for this file's config (and certificate), removed after. */
let dir = "";

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "relay-pii-"));
  const configFile = join(dir, "pii.json");
  writeFileSync(
    configFile,
    JSON.stringify({ pii: { properties: { $email: "hash", email_address: "hash", "[Custom event property] email": "hash", phone: "drop" } } }),
  );
  capture = captureOutput();
  stack = await startLocalStack({
    configFile,
    startPollers: false,
    visibilityTimeoutSeconds: 1,
    env: { PII_HASH_KEY: KEY, POWERTOOLS_LOG_LEVEL: "DEBUG" },
    log: (line) => process.stdout.write(`${line}\n`),
  });
});
afterAll(async () => {
  capture.stop();
  await stack.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("PII rules at the edge", () => {
  it("queues hashed values, stores scrubbed rejections, and Mixpanel receives hashes only", async () => {
    const braze = await post("/v1/braze/currents", {
      events: [
        {
          event_type: "users.messages.email.Send",
          id: "9d1b1f5e-0000-4000-8000-00000000a001",
          time: NOW_S(),
          user: { external_user_id: "pii-braze-user" },
          properties: { email_address: RAW.braze, campaign_name: "Welcome" },
        },
        // Rejected (no custom event name): its payload must be scrubbed in the rejected store.
        {
          event_type: "users.behaviors.CustomEvent",
          id: "9d1b1f5e-0000-4000-8000-00000000a002",
          time: NOW_S(),
          user: { external_user_id: "pii-braze-user" },
          properties: { custom_properties: { email: RAW.rejectedBraze } },
        },
      ],
    });
    expect(braze.json).toMatchObject({ accepted: 1, rejected: 1 });
    const native = await post("/v1/events", [
      { event: "Signed Up", properties: { distinct_id: "pii-native-user", time: NOW_S(), $email: RAW.native, phone: RAW.phone } },
      { event: "Rejected", properties: { distinct_id: "null", time: NOW_S(), $email: RAW.rejectedNative, phone: RAW.phone } },
    ]);
    expect(native.json).toMatchObject({ accepted: 1, rejected: 1 });
    const profile = await post("/v1/profiles", [{ $distinct_id: "pii-profile-user", $set: { $email: RAW.profile, phone: RAW.phone, plan: "pro" } }]);
    expect(profile.json).toMatchObject({ accepted: 1 });
    const adobe = await post("/v1/adobe/events", {
      event: "Adobe Rejected",
      properties: { distinct_id: "pii-adobe", time: "not a time" },
      custom_properties: [{ key: "$email", value: RAW.rejectedAdobe }],
    });
    expect(adobe.json).toMatchObject({ rejected: 1 });

    const schema = {
      type: "record",
      name: "Send",
      fields: [
        { name: "id", type: "string" },
        { name: "time", type: "int" },
        { name: "external_user_id", type: ["null", "string"], default: null },
        { name: "email_address", type: ["null", "string"], default: null },
      ],
    } as avro.Schema;
    await stack.s3.send(
      new PutObjectCommand({
        Bucket: stack.currentsBucket,
        Key: "currents/x/event_type=users.messages.email.Send/date=2026-11-22-12/300/0/pii.avro",
        Body: await avroFile(schema, [{ id: "9d1b1f5e-0000-4000-8000-00000000a003", time: NOW_S(), external_user_id: "pii-avro-user", email_address: RAW.brazeAvro }]),
      }),
    );
    expect(await stack.currentsNotifier.scanOnce()).toBe(1);

    await peekQueue();
    expect(queueBodies.length).toBeGreaterThan(0);
    await new Promise((resolve) => setTimeout(resolve, 1_200));
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline && ((stack.sandbox?.events.length ?? 0) < 3 || !stack.sandbox?.profiles.has("pii-profile-user"))) {
      await stack.forwarderPoller.pollOnce(0);
    }

    const byUser = (id: string) => stack.sandbox?.events.find((e) => e.properties.distinct_id === id)?.properties;
    expect(byUser("pii-braze-user")?.email_address).toBe(hmac(RAW.braze));
    expect(byUser("pii-avro-user")?.email_address).toBe(hmac(RAW.brazeAvro));
    expect(byUser("pii-native-user")).toMatchObject({ $email: hmac(RAW.native) });
    expect(byUser("pii-native-user")?.phone).toBeUndefined();
    expect(stack.sandbox?.profiles.get("pii-profile-user")).toMatchObject({ $email: hmac(RAW.profile), plan: "pro" });
    expect(stack.sandbox?.profiles.get("pii-profile-user")?.phone).toBeUndefined();

    const rejected = await rejectedStoreText();
    expect(rejected).toContain(hmac(RAW.rejectedNative));
    expect(rejected).toContain(hmac(RAW.rejectedBraze));
    expect(rejected).toContain(hmac(RAW.rejectedAdobe));
    const logs = capture.text();
    expect(logs).toContain("intake"); // the capture did see the stack's log lines
    for (const raw of Object.values(RAW)) {
      for (const [where, text] of [["queue", queueBodies.join("\n")], ["rejected store", rejected], ["logs", logs]] as const) {
        expect(text.includes(raw), `${raw} in the ${where}`).toBe(false);
      }
    }
  });

  it("answers 503 and queues nothing when the hash key cannot be read", async () => {
    const { handleIntake } = await import("../../lib/intake/process.js");
    const { RetryableError } = await import("../../lib/util/errors.js");
    const { parseStageConfig } = await import("../../lib/config/stage.js");
    const sent: string[][] = [];
    const result = await handleIntake(
      {
        method: "POST",
        path: "/v1/events",
        headers: { authorization: `Bearer ${"t".repeat(23)}` },
        query: {},
        body: Buffer.from(JSON.stringify([{ event: "E", properties: { distinct_id: "u", time: NOW_S(), $email: RAW.native } }])),
      },
      {
        config: parseStageConfig({ pii: { properties: { $email: "hash" } } }, "test"),
        tokens: async () => ["t".repeat(23)],
        queue: { send: async (_url, bodies) => void sent.push([...bodies]) },
        queueUrl: stack.events.url,
        rejected: { put: async () => "" },
        maxMessageBytes: 262_144,
        maxBodyBytes: 1_000_000,
        nowMs: Date.now,
        newCorrelationId: () => "pii-key-down",
        pii: async () => Promise.reject(new RetryableError("secrets manager throttled")),
      },
    );
    expect(result.response.statusCode).toBe(503);
    expect(result.cause).toMatch(/^pii hash key: RetryableError: secrets manager throttled/);
    expect(sent).toEqual([]);
  });
});
