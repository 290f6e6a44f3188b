import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import {
  CreateQueueCommand,
  DeleteMessageCommand,
  ReceiveMessageCommand,
  SQSClient,
  SendMessageBatchCommand,
} from "@aws-sdk/client-sqs";
import { buildApp } from "fauxqs";
import { createS3 } from "../../../lib/aws/s3.js";
import { createS3Bucket } from "../../../lib/aws/s3-bucket.js";
import { createCohortStore, type CohortStore } from "../../../lib/cohorts/store.js";
import { type ExportDeps, type ExportReport, runCohortExport, type ExportOptions } from "../../../lib/cohorts/export.js";
import type { DeliveryMessage } from "../../../lib/cohorts/messages.js";
import { type CohortSync, cohortSyncsSchemaFor } from "../../../lib/config/cohort-syncs.js";
import { type DeliveryDeps, type DeliveryOutcome, deliverMessage } from "../../../lib/destinations/deliver.js";
import { createDestinationNetwork } from "../../../lib/destinations/send.js";
import { createQueryClient } from "../../../lib/mixpanel/query.js";
import { createSecretReader } from "../../../lib/secrets/secrets.js";
import type { RetryDeps } from "../../../lib/http/retry.js";
import { type CohortFixture, type CohortQueryApi, createCohortQueryApi } from "../../../infra/local/peers/mixpanel-query.js";
import { SecretsManagerServer } from "../../../infra/local/peers/secrets-manager-server.js";

/**
 * Real pieces wired together for cohort tests: fauxqs (S3 + SQS) in-process on
 * 127.0.0.1, the strict Query API, a strict local Secrets Manager, the project's
 * own export and delivery modules. Time is a settable clock; retry sleeps
 * advance it instead of waiting.
 */
export const CREDS = { projectId: "4242", username: "sa.cohorts", secret: "sa-secret" };

export class Clock {
  constructor(public ms = Date.parse("2026-11-01T00:00:00Z")) {}
  now = () => this.ms;
  advance(ms: number): void {
    this.ms += ms;
  }
}

export interface Harness {
  readonly clock: Clock;
  readonly s3: S3Client;
  readonly sqs: SQSClient;
  readonly store: CohortStore;
  readonly queueUrl: string;
  readonly profiles: Map<string, Record<string, unknown>>;
  readonly query: CohortQueryApi;
  readonly secrets: SecretsManagerServer;
  readonly sleeps: number[];
  readonly metrics: { name: string; syncId: string }[];
  syncs: CohortSync[];
  runExport(options?: ExportOptions, overrides?: Partial<ExportDeps>): Promise<ExportReport>;
  /** Receives and delivers until the queue is empty (or `maxRounds`); returns outcomes, errors as strings. */
  drain(maxRounds?: number): Promise<(DeliveryOutcome | string)[]>;
  /** Raw queue bodies (removed from the queue). */
  takeMessages(): Promise<string[]>;
  /** `receiveCount` = the record's ApproximateReceiveCount (default 1). */
  deliver(body: string, overrides?: Partial<DeliveryDeps>, receiveCount?: number): Promise<DeliveryOutcome>;
  close(): Promise<void>;
}

export function parseSyncs(raw: unknown): CohortSync[] {
  // The harness's receivers listen on 127.0.0.1: the local stage's rules.
  return cohortSyncsSchemaFor({ localStage: true }).parse(raw);
}

let ids = 0;

export async function startHarness(options: {
  cohorts: CohortFixture[];
  syncs: unknown[];
  pageSize?: number;
  queriesPerHour?: number;
}): Promise<Harness> {
  const clock = new Clock();
  const app = buildApp({ logger: false });
  await app.listen({ port: 0, host: "127.0.0.1" });
  const address = app.server.address() as AddressInfo;
  const endpoint = `http://127.0.0.1:${address.port}`;
  const credentials = { accessKeyId: "test", secretAccessKey: "test" };
  const s3 = new S3Client({ region: "us-east-1", endpoint, forcePathStyle: true, credentials });
  const sqs = new SQSClient({ region: "us-east-1", endpoint, useQueueUrlAsEndpoint: false, credentials });
  const bucket = `snapshots-${++ids}`;
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  const queue = await sqs.send(new CreateQueueCommand({ QueueName: `deliveries-${ids}`, Attributes: { VisibilityTimeout: "0" } }));
  const queueUrl = queue.QueueUrl ?? "";
  // The store calls S3 the way the functions do (lib/aws/s3.ts, SigV4 from the environment's keys).
  process.env.AWS_ACCESS_KEY_ID ??= credentials.accessKeyId;
  process.env.AWS_SECRET_ACCESS_KEY ??= credentials.secretAccessKey;
  const target = { region: "us-east-1", endpoint };
  const store = createCohortStore(createS3Bucket(target, createS3(target)), bucket);

  const profiles = new Map<string, Record<string, unknown>>();
  const query = createCohortQueryApi({
    profiles: () => profiles,
    cohorts: options.cohorts,
    ...CREDS,
    ...(options.pageSize !== undefined ? { pageSize: options.pageSize } : {}),
    ...(options.queriesPerHour !== undefined ? { queriesPerHour: options.queriesPerHour } : {}),
    now: clock.now,
  });
  const queryServer: Server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    query.handle(req, res, url).then((handled) => {
      if (!handled) {
        res.writeHead(404);
        res.end();
      }
    }, (error: unknown) => {
      res.writeHead(500);
      res.end(String(error));
    });
  });
  await new Promise<void>((resolve) => queryServer.listen(0, "127.0.0.1", resolve));
  const queryUrl = `http://127.0.0.1:${(queryServer.address() as AddressInfo).port}/api/query`;

  const secrets = new SecretsManagerServer();
  const secretsUrl = await secrets.start();
  process.env.AWS_ACCESS_KEY_ID ??= "test";
  process.env.AWS_SECRET_ACCESS_KEY ??= "test";
  const secretReader = createSecretReader({ region: "us-east-1", endpoint: secretsUrl, ttlSeconds: 300 });

  const sleeps: number[] = [];
  const retryDeps: RetryDeps = {
    sleep: async (ms) => {
      sleeps.push(ms);
      clock.advance(ms);
    },
    random: () => 0.5,
    remainingMs: () => 600_000,
  };
  const metrics: { name: string; syncId: string }[] = [];
  const quiet = { info: () => {}, warn: () => {}, error: () => {} };

  const harness: Harness = {
    clock,
    s3,
    sqs,
    store,
    queueUrl,
    profiles,
    query,
    secrets,
    sleeps,
    metrics,
    syncs: parseSyncs(options.syncs),
    async runExport(exportOptions = {}, overrides = {}) {
      const deps: ExportDeps = {
        store,
        createQueryClient: async (budget) =>
          createQueryClient({
            baseUrl: queryUrl,
            credentials: CREDS,
            fetch,
            timeoutMs: 5_000,
            retryDeps,
            budget,
            now: clock.now,
          }),
        enqueue: async (messages: DeliveryMessage[]) => {
          await sqs.send(
            new SendMessageBatchCommand({
              QueueUrl: queueUrl,
              Entries: messages.map((m, i) => ({ Id: String(i), MessageBody: JSON.stringify(m) })),
            }),
          );
        },
        projectId: CREDS.projectId,
        now: clock.now,
        newId: () => `run-${++ids}`,
        remainingMs: () => 600_000,
        limits: {
          queriesPerHour: 55,
          queriesPerRun: 20,
          concurrency: 3,
          deliveryTimeoutMs: 86_400_000,
          fetchMarginMs: 30_000,
          emitMarginMs: 60_000,
        },
        log: quiet,
        metric: (name, _value, syncId) => metrics.push({ name, syncId }),
        ...overrides,
      };
      return runCohortExport(harness.syncs, deps, exportOptions);
    },
    deliver(body, overrides = {}, receiveCount = 1) {
      const deps: DeliveryDeps = {
        store,
        syncs: harness.syncs,
        secrets: secretReader,
        network: createDestinationNetwork({ localStage: true }),
        timeoutMs: 5_000,
        retryDeps,
        now: clock.now,
        warn: () => {},
        error: () => {},
        metric: (name, _value, syncId) => metrics.push({ name, syncId }),
        ...overrides,
      };
      return deliverMessage(body, deps, receiveCount);
    },
    async takeMessages() {
      const out: string[] = [];
      for (;;) {
        const result = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10 }));
        const messages = result.Messages ?? [];
        if (messages.length === 0) return out;
        for (const m of messages) {
          out.push(m.Body ?? "");
          await sqs.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: m.ReceiptHandle ?? "" }));
        }
      }
    },
    async drain(maxRounds = 50) {
      const outcomes: (DeliveryOutcome | string)[] = [];
      for (let round = 0; round < maxRounds; round++) {
        const result = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10 }));
        const messages = result.Messages ?? [];
        if (messages.length === 0) break;
        for (const m of messages) {
          try {
            outcomes.push(await harness.deliver(m.Body ?? ""));
            await sqs.send(new DeleteMessageCommand({ QueueUrl: queueUrl, ReceiptHandle: m.ReceiptHandle ?? "" }));
          } catch (error) {
            outcomes.push(error instanceof Error ? error.name : String(error));
          }
        }
      }
      return outcomes;
    },
    async close() {
      s3.destroy();
      sqs.destroy();
      await new Promise<void>((resolve) => queryServer.close(() => resolve()));
      await secrets.stop();
      await app.close();
    },
  };
  return harness;
}
