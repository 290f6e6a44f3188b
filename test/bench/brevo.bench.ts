import { createS3Client } from "../../infra/aws/sdk-clients.js";
import { performance } from "node:perf_hooks";
import { CreateBucketCommand } from "@aws-sdk/client-s3";
import { createBrevoClient } from "../../lib/brevo/client.js";
import { brevoConfigSchema } from "../../lib/config/brevo.js";
import { createBrevoSend } from "../../lib/forwarder/brevo.js";
import { consumeEnvelopes } from "../../lib/queue/envelope-consumer.js";
import { createRejectedStore } from "../../lib/queue/rejected-store.js";
import { packEnvelopes } from "../../lib/records/envelope.js";
import { BrevoServer } from "../../infra/local/peers/brevo-server.js";
import { startLocalAws } from "../support/fauxqs.js";

/**
 * `npm run bench:brevo`: records/s through the Brevo forwarder's logic (envelopes → mapping →
 * one send path → strict local Brevo) on this machine, one invocation's worth at a time like
 * the Lambda. Printed, not asserted. With Brevo's General-tier limit (10 requests/s) the
 * figure is the limit × the batch size for events and the limit itself for contacts.
 */
const EVENTS = Number(process.env.BENCH_EVENTS ?? 20_000);
const PROFILES = Number(process.env.BENCH_PROFILES ?? 2_000);
process.env.AWS_ACCESS_KEY_ID ??= "bench";
process.env.AWS_SECRET_ACCESS_KEY ??= "bench";

const config = brevoConfigSchema.parse({
  api_key_secret: "bench",
  sync: { events: true, profiles: true },
  event_mapping: { Purchase: "order_completed" },
  property_mapping: { $email: "email", plan: "PLAN_TYPE", $first_name: "FIRSTNAME" },
  lists: { all_users: 15 },
});
const nowMs = Date.now();
const eventLines = Array.from({ length: EVENTS }, (_, i) =>
  JSON.stringify({ event: "Purchase", properties: { distinct_id: `user-${i % 5000}`, time: nowMs - i, $insert_id: `b-${i}`, amount: i * 1.5, plan: "pro", $os: "Linux", tags: ["a", "b"] } }),
);
const profileLines = Array.from({ length: PROFILES }, (_, i) => JSON.stringify({ $distinct_id: `user-${i}`, $set: { $email: `user-${i}@example.com`, plan: "pro", $first_name: `F${i}` } }));

const aws = await startLocalAws();
const s3 = createS3Client("us-east-1", aws.address);
await s3.send(new CreateBucketCommand({ Bucket: "bench-rejected" }));

async function run(label: string, kind: "event" | "profile", lines: string[], limit: number, batchSize: number): Promise<void> {
  const brevo = new BrevoServer({ apiKey: "k", listIds: [15], limit, windowMs: 1000 });
  const url = await brevo.start();
  const client = createBrevoClient({
    addressPolicy: { allowPrivate: false, localStage: true },
    baseUrl: url,
    apiKey: async () => "k",
    timeoutMs: 30_000,
    retryDeps: { sleep: (ms) => new Promise((done) => setTimeout(done, ms)), random: Math.random, remainingMs: () => 600_000 },
    now: Date.now,
  });
  const deps = {
    send: createBrevoSend({ client, config, identityMode: "original" as const, eventsBatchSize: batchSize, companyIds: new Map() }),
    rejected: createRejectedStore({ s3, bucket: "bench-rejected", prefix: "rejected/", stage: "bench", now: () => new Date() }),
    rejectedCode: "brevo_rejected",
    stageOfFailure: "brevo" as const,
  };
  const bodies = packEnvelopes(kind, "bench", "bench", lines, 262_144).bodies;
  const start = performance.now();
  let sent = 0;
  // Like the Lambda: 10 SQS messages per invocation.
  for (let i = 0; i < bodies.length; i += 10) {
    const summary = await consumeEnvelopes(
      bodies.slice(i, i + 10).map((body, j) => ({ messageId: `${i + j}`, body })),
      deps,
    );
    sent += summary.sent;
  }
  const ms = performance.now() - start;
  console.log(
    `${label.padEnd(58)} ${ms.toFixed(0).padStart(7)} ms  ${Math.round((sent / ms) * 1000).toLocaleString("en-US").padStart(8)} records/s  (${sent}/${lines.length} sent, ${client.calls()} calls, ${brevo.throttled} answered 429)`,
  );
  await brevo.close();
}

await run(`events → /v3/events/batch ×100, no rate limit (${EVENTS})`, "event", eventLines, 1_000_000, 100);
await run(`events → /v3/events/batch ×100, Brevo's 10 req/s (${Math.min(EVENTS, 5000)})`, "event", eventLines.slice(0, 5000), 10, 100);
await run(`profiles $set → POST /v3/contacts, no rate limit (${PROFILES})`, "profile", profileLines, 1_000_000, 100);
await run(`profiles $set → POST /v3/contacts, Brevo's 10 req/s (${Math.min(PROFILES, 100)})`, "profile", profileLines.slice(0, 100), 10, 100);
await aws.stop();
