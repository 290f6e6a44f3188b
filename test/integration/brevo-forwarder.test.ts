import { createS3Client, createSqsClient } from "../../infra/aws/sdk-clients.js";
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { CreateQueueCommand } from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { brevoConfigSchema } from "../../lib/config/brevo.js";
import { consumeEnvelopes, type EnvelopeConsumerDeps } from "../../lib/queue/envelope-consumer.js";
import { sqsRequeue } from "../../lib/runtime/forwarder.js";
import { createRejectedStore, rejectedBatchSchema } from "../../lib/queue/rejected-store.js";
import { serializeEnvelope } from "../../lib/records/envelope.js";
import { parseQueuedRecords } from "../../lib/records/envelope-v2.js";
import type { BrevoServer } from "../../infra/local/peers/brevo-server.js";
import { RetryableError } from "../../lib/util/errors.js";
import { idDigest } from "../../lib/privacy/suppression.js";
import { startLocalAws } from "../support/fauxqs.js";
import { localBrevoClient, localBrevoSend, localBrevos } from "../support/local-brevo.js";

/** The Brevo forwarder's decisions per SQS message, against the strict local Brevo and a real S3/SQS protocol server. */
const API_KEY = "xkeysib-local-test";
const config = brevoConfigSchema.parse({
  api_key_secret: "mixpanel-relay/test/destinations/brevo",
  sync: { events: true, profiles: true, groups: true },
  identifiers: { ext_id: "distinct_id", email_id: "$email" },
  event_mapping: { Purchase: "order_completed" },
  property_mapping: { $email: "email", $first_name: "FIRSTNAME", plan: "PLAN_TYPE", total_revenue: "LTV", tags: "TAGS" },
  lists: { all_users: 15 },
  companies: { property_mapping: { domain: "domain" }, group_keys: ["company_id"] },
});
const T = Date.now() - 60_000;
const startBrevo = localBrevos();
let brevo: BrevoServer;
let aws: { address: string; stop(): Promise<void> };
let queueUrl = "";
let dlqUrl = "";
let bucket = "";
let sleeps: number[] = [];

beforeAll(async () => {
  process.env.AWS_ACCESS_KEY_ID ??= "test";
  process.env.AWS_SECRET_ACCESS_KEY ??= "test";
  aws = await startLocalAws();
  const sqs = createSqsClient("us-east-1", aws.address);
  queueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: "brevo-test" }))).QueueUrl ?? "";
  dlqUrl = (await sqs.send(new CreateQueueCommand({ QueueName: "brevo-test-dlq" }))).QueueUrl ?? "";
});
afterAll(async () => {
  await aws.stop();
});
let bucketCounter = 0;
beforeEach(async () => {
  brevo = await startBrevo({ apiKey: API_KEY, listIds: [15], limit: 1000 });
  sleeps = [];
  bucket = `rejected-${++bucketCounter}`;
  await createS3Client("us-east-1", aws.address).send(new CreateBucketCommand({ Bucket: bucket }));
});

function deps(options: { apiKey?: string; maxAttempts?: number; baseUrl?: string } = {}): EnvelopeConsumerDeps {
  const client = localBrevoClient(brevo, options.apiKey ?? API_KEY, {
    ...(options.baseUrl !== undefined ? { baseUrl: options.baseUrl } : {}),
    retryDeps: { sleep: async (ms) => void sleeps.push(ms), random: () => 0, remainingMs: () => 60_000 },
    retryPolicy: { baseDelayMs: 1, maxDelayMs: 1, jitterMinMs: 0, jitterMaxMs: 0, maxAttempts: options.maxAttempts ?? 3 },
  });
  return {
    send: localBrevoSend(client, config, { eventsBatchSize: 2, companyIds: new Map() }),
    rejected: createRejectedStore({ s3: createS3Client("us-east-1", aws.address), bucket, prefix: "rejected/", stage: "test", now: () => new Date() }),
    rejectedCode: "brevo_rejected",
    stageOfFailure: "brevo",
    destination: "brevo",
    requeue: sqsRequeue(createSqsClient("us-east-1", aws.address), queueUrl, dlqUrl, 3),
  };
}

const event = (name: string, id: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ event: name, properties: { distinct_id: "user-1", time: T, $insert_id: id, ...extra } });
const profile = (update: Record<string, unknown>, distinctId = "user-1") => JSON.stringify({ $distinct_id: distinctId, $ip: "0", ...update });
const group = (update: Record<string, unknown>) => JSON.stringify({ $group_key: "company_id", $group_id: "acme", ...update });
const message = (messageId: string, kind: "event" | "profile" | "group", records: string[]) => ({
  messageId,
  body: serializeEnvelope({ v: 1, kind, source: "native", correlationId: `corr-${messageId}`, records }),
});

async function storedBatches() {
  const s3 = createS3Client("us-east-1", aws.address);
  const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: "rejected/" }));
  return Promise.all(
    (listed.Contents ?? []).map(async (object) => {
      const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: object.Key }));
      return rejectedBatchSchema.parse(JSON.parse((await got.Body?.transformToString()) ?? "{}"));
    }),
  );
}

describe("Brevo forwarder", () => {
  it("sends mapped events in batches and counts the skipped ones", async () => {
    const summary = await consumeEnvelopes(
      [message("m1", "event", [event("Purchase", "a", { amount: 5, $os: "iOS" }), event("Viewed", "b"), event("Purchase", "c"), event("Purchase", "d", { distinct_id: "$device:x", $device_id: "x" })])],
      deps(),
    );
    expect(summary).toMatchObject({ sent: 2, failedMessageIds: [], skipped: { unmapped_event: 1, no_identifier: 1 } });
    expect(brevo.events.map((e) => [e.event_name, e.identifiers, e.event_date])).toEqual([
      ["order_completed", { ext_id: "user-1" }, new Date(T).toISOString()],
      ["order_completed", { ext_id: "user-1" }, new Date(T).toISOString()],
    ]);
    expect(brevo.events[0]?.event_properties).toMatchObject({ amount: 5, os: "iOS", insert_id: "a" });
  });

  it("does not send an event twice when the same record arrives again in a warm container", async () => {
    const warm = deps();
    const sentInsertIds = new Map<string, true>();
    const client = localBrevoClient(brevo, API_KEY);
    const withMemory = { ...warm, send: localBrevoSend(client, config, { eventsBatchSize: 2, sentInsertIds }) };
    const first = await consumeEnvelopes([message("d1", "event", [event("Purchase", "same"), event("Purchase", "same")])], withMemory);
    const again = await consumeEnvelopes([message("d2", "event", [event("Purchase", "same")])], withMemory);
    expect(first).toMatchObject({ sent: 1, skipped: { already_sent: 1 } });
    expect(again).toMatchObject({ sent: 0, skipped: { already_sent: 1 } });
    expect(brevo.events).toHaveLength(1);
  });

  it("skips records of erased ids and sends nothing while the erased-ids list cannot be read", async () => {
    const client = localBrevoClient(brevo, API_KEY);
    const base = deps();
    const erased = { ...base, send: localBrevoSend(client, config, { eventsBatchSize: 2, suppressed: async () => new Set([idDigest("gone")]) }) };
    const summary = await consumeEnvelopes(
      [message("e1", "event", [event("Purchase", "g1", { distinct_id: "gone" }), event("Purchase", "k1")]), message("e2", "profile", [profile({ $set: { plan: "x" } }, "gone")])],
      erased,
    );
    expect(summary).toMatchObject({ sent: 1, skipped: { suppressed: 2 } });
    expect(brevo.events.map((e) => e.identifiers.ext_id)).toEqual(["user-1"]);
    expect(brevo.contacts.size).toBe(0);

    const unreadable = { ...base, send: localBrevoSend(client, config, { eventsBatchSize: 2, suppressed: async () => Promise.reject(new RetryableError("S3 down")) }) };
    const blocked = await consumeEnvelopes([message("e3", "event", [event("Purchase", "k2")])], unreadable);
    expect(blocked).toMatchObject({ sent: 0, retried: 1, failedMessageIds: ["e3"] });
    expect(brevo.events).toHaveLength(1);
  });

  it("applies every /engage operation to the contact", async () => {
    const lines = [
      profile({ $set: { $email: "u1@example.com", $first_name: "Ada", plan: "free" } }),
      profile({ $set_once: { plan: "pro", $first_name: "Never" } }),
      profile({ $add: { total_revenue: 10 } }),
      profile({ $add: { total_revenue: 2.5 } }),
      profile({ $union: { tags: ["a", "b"] } }),
      profile({ $append: { tags: "c" } }),
      profile({ $remove: { tags: "a" } }),
    ];
    const summary = await consumeEnvelopes([message("p1", "profile", lines)], deps());
    expect(summary).toMatchObject({ sent: 7, rejected: 0, failedMessageIds: [] });
    expect(brevo.contacts.get("u1@example.com")).toEqual({ FIRSTNAME: "Ada", PLAN_TYPE: "free", LTV: 12.5, TAGS: ["b", "c"] });
    expect(brevo.contactIds.get("u1@example.com")?.extId).toBe("user-1");
    expect(brevo.lists.get(15)?.has("u1@example.com")).toBe(true);

    await consumeEnvelopes([message("p2", "profile", [profile({ $unset: ["plan"] })])], deps());
    expect(brevo.contacts.get("u1@example.com")).not.toHaveProperty("PLAN_TYPE");
    await consumeEnvelopes([message("p3", "profile", [profile({ $delete: "" }), profile({ $delete: "" })])], deps());
    expect(brevo.contacts.size).toBe(0);
  });

  it("creates a company once and finds it again on later updates", async () => {
    await consumeEnvelopes([message("g1", "group", [group({ $set: { $name: "Acme", domain: "acme.io" } })])], deps());
    // A new container (empty cache) must still find it by its marker attribute.
    await consumeEnvelopes([message("g2", "group", [group({ $set: { domain: "acme.com" } }), group({ $set_once: { domain: "no" } })])], deps());
    expect([...brevo.companies.values()]).toEqual([
      { id: "c1", name: "acme", attributes: { domain: "acme.com", mixpanel_group: "company_id:acme" }, linkedContactsIds: [] },
    ]);
    await consumeEnvelopes([message("g3", "group", [group({ $delete: "" })])], deps());
    expect(brevo.companies.size).toBe(0);
  });

  it("links a contact to the company of the group its profile carries, when that company exists", async () => {
    await consumeEnvelopes([message("l1", "group", [group({ $set: { $name: "Acme" } })])], deps());
    await consumeEnvelopes(
      [message("l2", "profile", [profile({ $set: { $email: "l@example.com", company_id: "acme" } }, "linked"), profile({ $set: { company_id: ["acme", "nope"] } }, "second")])],
      deps(),
    );
    const ids = ["l@example.com", "ext:second"].map((key) => brevo.contactIds.get(key)?.id);
    expect([...brevo.companies.values()][0]?.linkedContactsIds).toEqual(ids);
    // A later update of the same contact (204, no id in the reply) links idempotently.
    await consumeEnvelopes([message("l3", "profile", [profile({ $set: { company_id: "acme" } }, "linked")])], deps());
    expect([...brevo.companies.values()][0]?.linkedContactsIds).toEqual(ids);
  });

  it("waits x-sib-ratelimit-reset on 429 and retries 5xx, sending each record once", async () => {
    brevo.failNext({ status: 429, path: "/v3/events/batch" }, { status: 503, path: "/v3/events/batch" });
    const summary = await consumeEnvelopes([message("r1", "event", [event("Purchase", "x")])], deps());
    expect(summary).toMatchObject({ sent: 1, failedMessageIds: [] });
    expect(brevo.events).toHaveLength(1);
    expect(sleeps[0]).toBeGreaterThanOrEqual(1000);
  });

  it("keeps records for redelivery on a bad key (401) and stores nothing as refused", async () => {
    const summary = await consumeEnvelopes([message("k1", "event", [event("Purchase", "k")])], deps({ apiKey: "wrong" }));
    expect(summary).toMatchObject({ sent: 0, blockedByConfig: 1, failedMessageIds: ["k1"] });
    expect(summary.configErrors[0]).toMatch(/401/);
    expect(await storedBatches()).toEqual([]);
  });

  it("does not follow a redirect: a 3xx is a configuration error", async () => {
    brevo.failNext({ status: 302, path: "/v3/events/batch" });
    const summary = await consumeEnvelopes([message("z1", "event", [event("Purchase", "z")])], deps());
    expect(summary).toMatchObject({ blockedByConfig: 1, failedMessageIds: ["z1"] });
  });

  it("puts a refused record in the rejected store with Brevo's message; the others go through", async () => {
    const summary = await consumeEnvelopes(
      [message("v1", "profile", [profile({ $set: { $email: "not-an-email" } }, "bad"), profile({ $set: { plan: "x" } }, "good")])],
      deps(),
    );
    expect(summary).toMatchObject({ sent: 1, rejected: 1, failedMessageIds: [] });
    const [batch] = await storedBatches();
    expect(batch).toMatchObject({ destination: "brevo", stageOfFailure: "brevo", kind: "profile", correlationId: "corr-v1" });
    expect(batch?.items[0]).toMatchObject({ index: 0, code: "brevo_rejected", reason: expect.stringMatching(/400 invalid_parameter: email is not valid/) });
    expect(JSON.parse(batch?.items[0]?.line ?? "{}")).toMatchObject({ $distinct_id: "bad" });
  });

  it("refuses only the failed indexes of a 207 batch", async () => {
    brevo.failNext({ status: 207, path: "/v3/events/batch", body: JSON.stringify({ status: "partial", errors: [{ eventIndex: [1], message: "event_properties invalid" }] }) });
    const summary = await consumeEnvelopes([message("b1", "event", [event("Purchase", "1"), event("Purchase", "2")])], deps());
    expect(summary).toMatchObject({ sent: 1, rejected: 1 });
    const [batch] = await storedBatches();
    expect(batch?.items).toMatchObject([{ index: 1, reason: "Brevo 207: event_properties invalid" }]);
  });

  it("after a partial send re-queues only the unsent records, so an $add is never applied twice", async () => {
    await consumeEnvelopes([message("s0", "profile", [profile({ $set: { $email: "s@example.com" } })])], deps());
    const lines = [profile({ $add: { total_revenue: 5 } }), profile({ $add: { total_revenue: 7 } })];
    const requeued: { body: string; delaySeconds: number }[] = [];
    const base = deps({ maxAttempts: 1 });
    let sentLines = 0;
    const summary = await consumeEnvelopes([message("s1", "profile", lines)], {
      ...base,
      // Brevo goes down after the first $add went through.
      send: async (kind, batch) => {
        const outcomes = [];
        for (const line of batch) {
          if (sentLines++ === 1) brevo.outage = 503;
          outcomes.push(...(await base.send(kind, [line])));
        }
        return outcomes;
      },
      requeue: { maxRequeues: 3, send: async (body, delaySeconds) => void requeued.push({ body, delaySeconds }), deadLetter: async () => undefined },
    });
    brevo.outage = undefined;
    expect(summary).toMatchObject({ sent: 1, retried: 1, requeued: 1, failedMessageIds: [] });
    expect(brevo.contacts.get("s@example.com")?.LTV).toBe(5);
    expect(requeued).toHaveLength(1);
    const envelope = parseQueuedRecords(requeued[0]?.body ?? "");
    expect(envelope).toMatchObject({ kind: "profile", attempt: 1 });
    expect(envelope.lines()).toEqual([lines[1]]);
    // Redelivered once Brevo is back: the total is 12, not 17.
    await consumeEnvelopes([{ messageId: "s1-again", body: requeued[0]?.body ?? "" }], deps());
    expect(brevo.contacts.get("s@example.com")?.LTV).toBe(12);
  });

  it("a whole outage hands the message back untouched (no partial send)", async () => {
    brevo.outage = 503;
    const summary = await consumeEnvelopes([message("o1", "event", [event("Purchase", "o")])], deps({ maxAttempts: 2 }));
    brevo.outage = undefined;
    expect(summary).toMatchObject({ sent: 0, retried: 1, requeued: 0, failedMessageIds: ["o1"] });
  });
});

describe("Brevo base URL", () => {
  it.each(["http://api.example.com/v3", "https://10.0.0.8/v3", "https://192.168.1.1/v3", "https://[fd00::1]/v3", "https://169.254.169.254/v3"])("refuses %s", (url) => {
    expect(() => deps({ baseUrl: url })).toThrow(/BREVO_API_URL/);
  });
});
