import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import {
  CreateQueueCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  type SQSClient,
} from "@aws-sdk/client-sqs";
import { createS3Client, createSqsClient } from "../../infra/aws/sdk-clients.js";
import { rejectedBatchSchema } from "../../lib/queue/rejected-store.js";
import { parseQueuedRecords } from "../../lib/records/envelope-v2.js";
import { MixpanelSandbox } from "../../infra/local/peers/mixpanel-server.js";
import { FaultyMixpanel, type FaultKind } from "./faulty-mixpanel.js";
import { freeLoopbackPort } from "../../infra/local/peers/local-server.js";

/**
 * `npm run soak`: the whole event path on a bad day, with a queue that outlives the Lambdas.
 *
 *  - SQS and S3 (fauxqs) run in their own process; the intake and two forwarders run in
 *    theirs (the real handlers, test/soak/*-process.ts) and are killed with SIGKILL at random
 *    points — forwarders mid-batch — and restarted.
 *  - Mixpanel is the strict local Mixpanel behind a fault front (test/soak/faulty-mixpanel.ts):
 *    429 with and without Retry-After, 500/502/503, 413, resets, stalls past the client
 *    timeout, lost acks, and 400 failed_records for poison events.
 *  - Senders post native batches and retry every 5xx and network error, as Braze does.
 *
 * It ends with one line (the last on stdout) and exits 1 if any accepted event is lost or an
 * event reached Mixpanel under two dedupe keys:
 *   soak: sent=… accepted=… imported_unique=… rejected=… dead_lettered=… duplicates_on_wire=…
 *         duplicates_after_dedupe=… lost=… kills=…
 * `lost` = accepted events neither in Mixpanel (by event, distinct_id, time, $insert_id) nor in
 * the rejected store nor in the events DLQ. Loopback only; every child is stopped by its PID.
 *
 * Env: SOAK_EVENTS (100000), SOAK_SEED (1), SOAK_SENDERS (4), SOAK_FORWARDERS (2),
 * SOAK_FAULT_RATE (0.35), SOAK_MAX_KILLS (40), SOAK_DRAIN_TIMEOUT_S (900).
 */
const EVENTS = positive("SOAK_EVENTS", 100_000);
const SEED = positive("SOAK_SEED", 1);
const SENDERS = positive("SOAK_SENDERS", 4);
const FORWARDERS = positive("SOAK_FORWARDERS", 2);
const FAULT_RATE = Number(process.env.SOAK_FAULT_RATE ?? 0.35);
const MAX_KILLS = positive("SOAK_MAX_KILLS", 40);
const DRAIN_TIMEOUT_MS = positive("SOAK_DRAIN_TIMEOUT_S", 900) * 1000;
/** Upper bound on one sender's attempts at one batch (Braze retries for hours; we stop sooner). */
const MAX_SEND_ATTEMPTS = 200;

const HTTP_TIMEOUT_MS = 1_500;
const FORWARDER_TIMEOUT_MS = 12_000;
/** Lambda's rule: the queue's visibility timeout is at least the function timeout. */
const VISIBILITY_TIMEOUT_S = 15;
const MAX_RECEIVE_COUNT = 10;
const REGION = "us-east-1";
const CREDENTIALS = { projectId: "777", projectToken: "soak-project-token", serviceAccountUsername: "soak.sa", serviceAccountSecret: "soak-secret" };
const INTAKE_TOKEN = "soak-intake-token-0123456789";

function positive(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`${name} must be a positive integer, got ${JSON.stringify(raw)}`);
  return value;
}

/** mulberry32: the soak's choices (batch sizes, kill times, faults) repeat for a seed. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}
const random = seededRandom(SEED);
const between = (min: number, max: number) => min + Math.floor(random() * (max - min + 1));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const here = (file: string) => fileURLToPath(new URL(file, import.meta.url));
const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(0)}s`;
const progress = (line: string) => process.stderr.write(`soak ${elapsed().padStart(5)}  ${line}\n`);

// ---------------------------------------------------------------- child processes

const logDir = mkdtempSync(join(tmpdir(), "mixpanel-relay-soak-"));
const children = new Set<ChildProcess>();
// Whatever way the soak ends, no child it started outlives it.
process.on("exit", () => {
  for (const child of children) if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, "SIGKILL");
});
process.on("SIGINT", () => process.exit(130));
process.on("SIGTERM", () => process.exit(143));

interface Child {
  readonly process: ChildProcess;
  busy: boolean;
  readonly exited: Promise<void>;
}

/** Starts a TypeScript entry point in its own Node process; resolves once it prints its first JSON line. */
async function startChild(name: string, script: string, env: Record<string, string>): Promise<{ child: Child; first: Record<string, unknown> }> {
  const child = spawn(process.execPath, ["--import", "tsx", here(script)], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(child);
  const log = createWriteStream(join(logDir, `${name}.log`), { flags: "a" });
  child.stderr?.pipe(log);
  const exited = new Promise<void>((resolve) =>
    child.once("exit", () => {
      children.delete(child);
      resolve();
    }),
  );
  const state: Child = { process: child, busy: false, exited };
  const lines = createInterface({ input: child.stdout ?? process.stdin });
  const first = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start within 60 s; see ${logDir}/${name}.log`)), 60_000);
    void exited.then(() => reject(new Error(`${name} exited before it was ready; see ${logDir}/${name}.log`)));
    lines.on("line", (line) => {
      if (line === "busy") state.busy = true;
      else if (line === "idle") state.busy = false;
      else if (line.startsWith("{")) {
        clearTimeout(timer);
        const parsed: unknown = JSON.parse(line);
        resolve(parsed !== null && typeof parsed === "object" ? Object.fromEntries(Object.entries(parsed)) : {});
      } else log.write(`${line}\n`);
    });
  });
  return { child: state, first };
}

async function stopChild(child: Child): Promise<void> {
  const pid = child.process.pid;
  if (pid === undefined || child.process.exitCode !== null || child.process.signalCode !== null) return;
  child.process.kill("SIGTERM");
  const stopped = await Promise.race([child.exited.then(() => true), sleep(5_000).then(() => false)]);
  if (!stopped) {
    child.process.kill("SIGKILL");
    await child.exited;
  }
}


// ---------------------------------------------------------------- the stack

async function queueAttributes(sqs: SQSClient, url: string): Promise<{ visible: number; inFlight: number; delayed: number }> {
  const result = await sqs.send(
    new GetQueueAttributesCommand({
      QueueUrl: url,
      AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"],
    }),
  );
  const attribute = (name: "ApproximateNumberOfMessages" | "ApproximateNumberOfMessagesNotVisible" | "ApproximateNumberOfMessagesDelayed") => Number(result.Attributes?.[name] ?? 0);
  return {
    visible: attribute("ApproximateNumberOfMessages"),
    inFlight: attribute("ApproximateNumberOfMessagesNotVisible"),
    delayed: attribute("ApproximateNumberOfMessagesDelayed"),
  };
}

process.env.AWS_ACCESS_KEY_ID ??= "soak";
process.env.AWS_SECRET_ACCESS_KEY ??= "soak";

const { child: sqsServer, first: sqsReady } = await startChild("sqs-server", "./sqs-server.ts", {});
const awsEndpoint = String(sqsReady.address);
const sqs = createSqsClient(REGION, awsEndpoint);
const s3 = createS3Client(REGION, awsEndpoint);

// config/local.json turns the Brevo fan-out on: the intake also queues for Brevo (no consumer here).
const brevoQueueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: "soak-brevo", Attributes: { MaximumMessageSize: "262144" } }))).QueueUrl ?? "";
const dlqUrl = (await sqs.send(new CreateQueueCommand({ QueueName: "soak-events-dlq", Attributes: { MaximumMessageSize: "262144", MessageRetentionPeriod: "1209600" } }))).QueueUrl ?? "";
const dlqArn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: dlqUrl, AttributeNames: ["QueueArn"] }))).Attributes?.QueueArn ?? "";
const queueUrl =
  (
    await sqs.send(
      new CreateQueueCommand({
        QueueName: "soak-events",
        Attributes: {
          VisibilityTimeout: String(VISIBILITY_TIMEOUT_S),
          MaximumMessageSize: "262144",
          RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: MAX_RECEIVE_COUNT }),
        },
      }),
    )
  ).QueueUrl ?? "";
const queueArn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ["QueueArn"] }))).Attributes?.QueueArn ?? "";
const rejectedBucket = "soak-rejected";
await s3.send(new CreateBucketCommand({ Bucket: rejectedBucket }));

const sandbox = new MixpanelSandbox({ credentials: CREDENTIALS });
await sandbox.start();
const faulty = new FaultyMixpanel({ upstream: sandbox.url, stallMs: HTTP_TIMEOUT_MS + 1_000, faultRate: FAULT_RATE, random });
await faulty.start();

const intakePort = await freeLoopbackPort();
const lambdaEnv: Record<string, string> = {
  RELAY_STAGE: "local",
  AWS_REGION: REGION,
  AWS_ENDPOINT_URL: awsEndpoint,
  EVENTS_QUEUE_URL: queueUrl,
  EVENTS_QUEUE_ARN: queueArn,
  EVENTS_DLQ_URL: dlqUrl,
  BREVO_QUEUE_URL: brevoQueueUrl,
  REJECTED_BUCKET: rejectedBucket,
  SQS_MAX_MESSAGE_BYTES: "262144",
  MIXPANEL_API_URL: faulty.url,
  MIXPANEL_PROJECT_ID: CREDENTIALS.projectId,
  MIXPANEL_PROJECT_TOKEN: CREDENTIALS.projectToken,
  MIXPANEL_SERVICE_ACCOUNT_USERNAME: CREDENTIALS.serviceAccountUsername,
  MIXPANEL_SERVICE_ACCOUNT_SECRET: CREDENTIALS.serviceAccountSecret,
  INTAKE_TOKEN,
  INTAKE_PORT: String(intakePort),
  HTTP_TIMEOUT_MS: String(HTTP_TIMEOUT_MS),
  FORWARDER_TIMEOUT_MS: String(FORWARDER_TIMEOUT_MS),
  FORWARDER_MAX_REQUEUES: "3",
  // Smaller /import requests than Mixpanel's cap: more requests, so more of them meet a fault,
  // and a message's records often span two requests (the partly-sent re-queue path).
  IMPORT_MAX_BYTES: "60000",
  POWERTOOLS_LOG_LEVEL: "ERROR",
  POWERTOOLS_METRICS_DISABLED: "true",
};

let intake = (await startChild("intake", "./intake-process.ts", lambdaEnv)).child;
const forwarders: Child[] = [];
for (let i = 0; i < FORWARDERS; i++) forwarders.push((await startChild(`forwarder-${i}`, "./forwarder-process.ts", lambdaEnv)).child);
progress(`stack up: sqs ${awsEndpoint}, intake 127.0.0.1:${intakePort}, ${FORWARDERS} forwarder(s), mixpanel ${faulty.url} → ${sandbox.url}; logs in ${logDir}`);

// ---------------------------------------------------------------- senders

const runTag = `${SEED.toString(36)}${Date.now().toString(36)}`;
const nowSeconds = Math.floor(Date.now() / 1000);
const accepted = new Set<number>();
const sendStats = { requests: 0, retried5xx: 0, retriedNetwork: 0, refused4xx: 0, gaveUp: 0 };
let nextEvent = 0;

/** Event i of the run: every 1000th is refused at intake (placeholder distinct_id), every 1000th (offset 500) is poison at Mixpanel. */
function soakEvent(i: number): unknown {
  return {
    event: `Soak ${i % 5}`,
    properties: {
      distinct_id: i % 1000 === 999 ? "null" : `soak-user-${i % 997}`,
      time: nowSeconds - (i % 3600),
      $insert_id: `s-${runTag}-${i}`,
      soak_id: i,
      note: i % 10 === 0 ? "emoji 🛒 and 𝄞 outside the BMP" : "plain",
      ...(i % 1000 === 500 ? { soak_poison: true } : {}),
    },
  };
}

let sendersActive = true;
/** Sender requests waiting for an answer: the intake is killed only while there are some. */
let inFlight = 0;

async function sendBatch(first: number, count: number): Promise<void> {
  const body = JSON.stringify(Array.from({ length: count }, (_, k) => soakEvent(first + k)));
  for (let attempt = 1; attempt <= MAX_SEND_ATTEMPTS; attempt++) {
    sendStats.requests++;
    inFlight++;
    try {
      const response = await fetch(`http://127.0.0.1:${intakePort}/v1/events`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${INTAKE_TOKEN}` },
        body,
        signal: AbortSignal.timeout(30_000),
      });
      const text = await response.text();
      if (response.status >= 500) {
        sendStats.retried5xx++;
      } else if (response.status >= 200 && response.status < 300) {
        const answer: unknown = JSON.parse(text);
        const errors = answer !== null && typeof answer === "object" && "errors" in answer && Array.isArray(answer.errors) ? answer.errors : [];
        const refused = new Set(errors.map((error: unknown) => (error !== null && typeof error === "object" && "index" in error ? Number(error.index) : -1)));
        for (let k = 0; k < count; k++) if (!refused.has(k)) accepted.add(first + k);
        return;
      } else {
        sendStats.refused4xx++;
        progress(`intake refused a batch: ${response.status} ${text.slice(0, 200)}`);
        return;
      }
    } catch {
      // The intake was killed mid-request (reset, refused connection): Braze retries the batch.
      sendStats.retriedNetwork++;
    } finally {
      inFlight--;
    }
    await sleep(Math.min(2_000, 100 * attempt) + between(0, 200));
  }
  sendStats.gaveUp += count;
}

async function sender(): Promise<void> {
  while (nextEvent < EVENTS) {
    const first = nextEvent;
    const count = Math.min(between(20, 200), EVENTS - first);
    nextEvent += count;
    await sendBatch(first, count);
  }
}

// ---------------------------------------------------------------- chaos

let kills = 0;
const killsOf = { intake: 0, forwarder: 0 };
let chaos = true;

async function killAndRestart(target: "intake" | number): Promise<void> {
  const child = target === "intake" ? intake : forwarders[target];
  if (!child) return;
  const deadline = Date.now() + 5_000;
  if (target === "intake") {
    // Mid-request: wait for a sender's request to be in the intake's hands.
    while (inFlight === 0 && Date.now() < deadline) await sleep(5);
    await sleep(between(0, 30));
  } else {
    // Mid-batch: wait for the forwarder to start an invocation, then kill it part-way through.
    while (!child.busy && Date.now() < deadline) await sleep(20);
    await sleep(between(0, 1_500));
  }
  child.process.kill("SIGKILL");
  kills++;
  killsOf[target === "intake" ? "intake" : "forwarder"]++;
  await child.exited;
  await sleep(between(100, 1_000));
  const name = target === "intake" ? "intake" : `forwarder-${target}`;
  const restarted = (await startChild(name, target === "intake" ? "./intake-process.ts" : "./forwarder-process.ts", lambdaEnv)).child;
  if (target === "intake") intake = restarted;
  else forwarders[target] = restarted;
}

async function chaosLoop(): Promise<void> {
  while (chaos && kills < MAX_KILLS) {
    await sleep(kills === 0 ? between(500, 2_000) : between(1_000, 5_000));
    if (!chaos) return;
    // The intake only while senders are sending (first of all, so it is killed at least once);
    // forwarders until the queue runs dry.
    await killAndRestart(sendersActive && (kills === 0 || random() < 0.5) ? "intake" : between(0, FORWARDERS - 1));
  }
}

// ---------------------------------------------------------------- run

function soakIdOf(value: unknown): number | undefined {
  if (value === null || typeof value !== "object" || !("properties" in value)) return undefined;
  const { properties } = value;
  if (properties === null || typeof properties !== "object" || !("soak_id" in properties)) return undefined;
  return typeof properties.soak_id === "number" ? properties.soak_id : undefined;
}

const ticker = setInterval(() => {
  void queueAttributes(sqs, queueUrl)
    .then((queue) =>
      progress(
        `sent ${Math.min(nextEvent, EVENTS)}/${EVENTS} accepted ${accepted.size} mixpanel ${sandbox.events.length} (unique ${sandbox.uniqueEventCount}) queue ${queue.visible}+${queue.inFlight} in flight+${queue.delayed} delayed kills ${kills}`,
      ),
    )
    .catch(() => undefined);
}, 5_000);

let exitCode = 1;
try {
  const chaosDone = chaosLoop();
  await Promise.all(Array.from({ length: SENDERS }, () => sender()));
  sendersActive = false;
  progress(`senders done: ${accepted.size} accepted; waiting for the queue to drain`);

  // Drained = the queue empty (visible, in flight, delayed) on three checks in a row.
  const deadline = Date.now() + DRAIN_TIMEOUT_MS;
  let emptyChecks = 0;
  while (emptyChecks < 3 && Date.now() < deadline) {
    await sleep(1_000);
    const queue = await queueAttributes(sqs, queueUrl);
    const empty = queue.visible + queue.inFlight + queue.delayed === 0 && forwarders.every((child) => !child.busy);
    emptyChecks = empty ? emptyChecks + 1 : 0;
    // Stop killing once the queue first runs dry, so the run ends.
    if (empty) chaos = false;
  }
  chaos = false;
  await chaosDone;
  if (emptyChecks < 3) progress(`the queue did not drain within ${DRAIN_TIMEOUT_MS / 1000} s; what is still on it counts as lost`);

  // Mixpanel: what arrived on the wire, and the distinct dedupe keys per soak event.
  const keysBySoakId = new Map<number, Set<string>>();
  let onWire = 0;
  const uniqueKeys = new Set<string>();
  for (const event of sandbox.events) {
    const id = soakIdOf(event);
    if (id === undefined) continue;
    onWire++;
    const p = event.properties;
    const key = JSON.stringify([event.event, p.distinct_id, p.time, p.$insert_id]);
    uniqueKeys.add(key);
    const keys = keysBySoakId.get(id) ?? new Set<string>();
    keys.add(key);
    keysBySoakId.set(id, keys);
  }
  const duplicatesAfterDedupe = [...keysBySoakId.values()].reduce((sum, keys) => sum + keys.size - 1, 0);

  // The rejected store: intake refusals keep the payload, Mixpanel refusals the line.
  const rejected = new Set<number>();
  let token: string | undefined;
  do {
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: rejectedBucket, ContinuationToken: token }));
    for (const object of listed.Contents ?? []) {
      const got = await s3.send(new GetObjectCommand({ Bucket: rejectedBucket, Key: object.Key }));
      const batch = rejectedBatchSchema.parse(JSON.parse((await got.Body?.transformToString()) ?? ""));
      for (const item of batch.items) {
        const id = soakIdOf(item.line !== undefined ? JSON.parse(item.line) : item.payload);
        if (id !== undefined && item.reason !== "") rejected.add(id);
      }
    }
    token = listed.NextContinuationToken;
  } while (token);

  // The events DLQ: whole messages SQS moved after maxReceiveCount, or records the forwarder dead-lettered.
  const deadLettered = new Set<number>();
  for (;;) {
    const received = await sqs.send(new ReceiveMessageCommand({ QueueUrl: dlqUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 0, VisibilityTimeout: 3_600 }));
    const messages = received.Messages ?? [];
    if (messages.length === 0) break;
    for (const message of messages) {
      for (const line of parseQueuedRecords(message.Body ?? "").lines()) {
        const id = soakIdOf(JSON.parse(line));
        if (id !== undefined) deadLettered.add(id);
      }
    }
  }

  let lost = 0;
  const lostSample: number[] = [];
  for (const id of accepted) {
    if (keysBySoakId.has(id) || rejected.has(id) || deadLettered.has(id)) continue;
    lost++;
    if (lostSample.length < 10) lostSample.push(id);
  }
  const faults = [...faulty.counts].map(([kind, n]: [FaultKind | "poison", number]) => `${kind}=${n}`).join(" ");
  progress(`mixpanel fault front: ${faults}`);
  progress(`kills: intake ${killsOf.intake}, forwarders ${killsOf.forwarder}`);
  progress(
    `senders: ${sendStats.requests} requests, ${sendStats.retried5xx} retried after a 5xx, ${sendStats.retriedNetwork} after a network error, ${sendStats.refused4xx} batches refused (4xx), ${sendStats.gaveUp} events given up`,
  );
  if (lostSample.length > 0) progress(`lost soak ids (first 10): ${lostSample.join(", ")}`);
  console.log(
    `soak: sent=${EVENTS} accepted=${accepted.size} imported_unique=${keysBySoakId.size} rejected=${rejected.size} dead_lettered=${deadLettered.size} duplicates_on_wire=${onWire - uniqueKeys.size} duplicates_after_dedupe=${duplicatesAfterDedupe} lost=${lost} kills=${kills}`,
  );
  exitCode = lost === 0 && duplicatesAfterDedupe === 0 ? 0 : 1;
} finally {
  chaos = false;
  clearInterval(ticker);
  for (const child of [intake, ...forwarders]) await stopChild(child);
  await stopChild(sqsServer);
  await faulty.stop();
  await sandbox.stop();
  sqs.destroy();
  s3.destroy();
}
process.exit(exitCode);
