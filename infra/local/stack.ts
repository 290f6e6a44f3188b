import { createS3Client, createSqsClient } from "../aws/sdk-clients.js";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { randomUUID } from "node:crypto";
import { CreateBucketCommand, type S3Client } from "@aws-sdk/client-s3";
import type { S3BucketApi } from "../../lib/aws/s3-bucket.js";
import { CreateQueueCommand, GetQueueAttributesCommand, type SQSClient } from "@aws-sdk/client-sqs";
import type {
  APIGatewayProxyEventV2,
  APIGatewayProxyStructuredResultV2,
  Context,
  SQSBatchResponse,
  SQSEvent,
} from "aws-lambda";
import { buildApp } from "fauxqs";
import { MixpanelSandbox, type ExtraRouteHandler, type SandboxCredentials } from "./peers/mixpanel-server.js";
import { BrevoServer } from "./peers/brevo-server.js";
import { createGdprApi, type GdprApi } from "./peers/mixpanel-gdpr.js";
import { createLookupTablesApi, type LookupTablesApi } from "./peers/mixpanel-lookup.js";
import { loadStageConfig, stageConfigPath } from "../../lib/config/stage.js";
import { createCohortQueryApi, type CohortFixture, type CohortQueryApi } from "./peers/mixpanel-query.js";
import { SecretsManagerServer } from "./peers/secrets-manager-server.js";
import { closeServer, listenOnLoopback } from "./peers/local-server.js";
import { WebhookReceiver } from "./peers/webhook-server.js";
import { BrazeServer } from "./peers/braze-server.js";
import {
  LOCAL_BRAZE_API_KEY,
  LOCAL_COHORTS,
  LOCAL_COHORT_EXPORT_PATH,
  LOCAL_WEBHOOK_SIGNING_SECRET,
  LOCAL_WEBHOOK_SIGNING_SECRET_NAME,
  localSecrets,
} from "./cohorts.js";
import { LocalRetention } from "./retention.js";
import { S3Notifier } from "./s3-notifier.js";
import { SqsPoller, lambdaContext } from "./sqs-poller.js";

/**
 * The whole pipeline on one machine: an in-process SQS/S3 server (fauxqs, bound
 * to 127.0.0.1 only), the same queues/DLQs/redrive as production, the real
 * handlers invoked with real API Gateway v2 and SQS event shapes, and a strict
 * local Mixpanel unless MIXPANEL_API_URL points elsewhere. Used by `npm start`
 * and by the integration tests.
 */
export const LOCAL_REGION = "us-east-1";
export const LOCAL_MIXPANEL_CREDENTIALS: SandboxCredentials = {
  projectId: "424242",
  projectToken: "local-project-token",
  serviceAccountUsername: "relay-local.sa",
  serviceAccountSecret: "local-service-account-secret",
};
export const DEFAULT_LOCAL_INTAKE_TOKEN = "local-intake-token-change-me";
/** The local Brevo sandbox's API key (never a real key: real ones start with xkeysib-). */
export const LOCAL_BREVO_API_KEY = "local-brevo-api-key";
/** The local Mixpanel sandbox's GDPR OAuth token (`npm run gdpr:delete` against the local stack). */
export const LOCAL_GDPR_TOKEN = "local-gdpr-oauth-token";
/** The lookup table the local Mixpanel sandbox has from the start (Mixpanel tables are made in its UI). */
export const LOCAL_LOOKUP_TABLE = { id: "local-products-table", name: "Products" } as const;
/** The queues' MaximumMessageSize; the intake packs envelopes up to it (AWS's default is now 1 MiB). */
export const LOCAL_MAX_MESSAGE_BYTES = 262_144;

export interface LocalStackOptions {
  /** Intake port; 0 picks a free one. */
  readonly intakePort?: number;
  readonly sqsPort?: number;
  readonly mixpanelPort?: number;
  /** Send to a real (or other) Mixpanel instead of the sandbox. */
  readonly mixpanelApiUrl?: string;
  /** Send to a real (or other) Brevo instead of the local Brevo sandbox (then set BREVO_API_KEY). */
  readonly brevoApiUrl?: string;
  readonly brevoPort?: number;
  /** The local Braze fake's port (0 = any free one). */
  readonly brazePort?: number;
  /** The local Brevo sandbox's rate limit (calls per second); Brevo's General tier allows 10 (README "Brevo"). */
  readonly brevoRateLimit?: number;
  readonly intakeToken?: string;
  readonly stage?: string;
  readonly configFile?: string;
  /** Redrive: receives before a message moves to the DLQ. */
  readonly maxReceiveCount?: number;
  readonly visibilityTimeoutSeconds?: number;
  /** The simulated forwarder Lambda timeout. */
  readonly forwarderTimeoutMs?: number;
  readonly forwarderBatchSize?: number;
  /** Start the SQS pollers (tests may prefer to drive `pollOnce` themselves). */
  readonly startPollers?: boolean;
  readonly sandboxRoutes?: ExtraRouteHandler[];
  /** Extra environment for the handlers (e.g. IMPORT_MAX_BYTES). */
  readonly env?: Record<string, string>;
  readonly log?: (line: string) => void;
  /** Sees every intake request as it arrives (tests check what a real client put on the wire). */
  readonly onIntakeRequest?: (request: IncomingMessage) => void;
  /** Serve the intake over https with this key and certificate (PEM), e.g. for the Node SDK's `import`. */
  readonly tls?: { readonly key: string; readonly cert: string };
  /**
   * Run the cohort side too: a local Secrets Manager serving every secret the
   * stage config names (infra/local/cohorts.ts localSecrets), the sandbox's Query
   * API over the profiles it received, a webhook receiver, a local Braze, the
   * deliveries poller and an export tick every `tickMs`.
   */
  readonly cohorts?: {
    readonly tickMs?: number;
    readonly webhookPort?: number;
    readonly fixtures?: CohortFixture[];
  };
  /**
   * Bound what a long session keeps in memory (`npm start` sets this; tests leave it off so
   * they see everything): the newest rejected batches and Currents files, cohort runs by age
   * (the S3 lifecycle rule's job in AWS), the newest events the Mixpanel sandbox shows.
   */
  readonly retention?: {
    readonly maxRejectedObjects: number;
    readonly maxCurrentsObjects: number;
    readonly cohortRunMaxAgeMs: number;
    readonly maxSandboxEvents: number;
    readonly intervalMs: number;
  };
}

export interface LocalCohortSide {
  readonly receiver: WebhookReceiver;
  /** The local Braze /users/track (the cohort Braze destinations of config/local.json point at it). */
  readonly braze: BrazeServer;
  /** Absent when MIXPANEL_API_URL points at a real Mixpanel. */
  readonly queryApi: CohortQueryApi | undefined;
  readonly secrets: SecretsManagerServer;
  readonly deliveryPoller: SqsPoller;
  /** Runs one export tick now (what the EventBridge schedule does in AWS). */
  tick(input?: unknown): Promise<unknown>;
}

export interface QueuePair {
  readonly url: string;
  readonly arn: string;
  readonly dlqUrl: string;
  readonly dlqArn: string;
}

export interface LocalStack {
  readonly intakeUrl: string;
  readonly awsEndpoint: string;
  readonly mixpanelUrl: string;
  readonly sandbox: MixpanelSandbox | undefined;
  readonly sqs: ReturnType<typeof createSqsClient>;
  readonly s3: S3Client & S3BucketApi;
  readonly events: QueuePair;
  readonly deliveries: QueuePair;
  /** The Brevo connector's queue (fan-out from intake and the Currents reader). */
  readonly brevo: QueuePair;
  /** The local Brevo (absent when BREVO_API_URL points elsewhere); `brevoUrl` is its /v3 base. */
  readonly brevoSandbox: BrevoServer | undefined;
  readonly brevoUrl: string;
  readonly brevoPoller: SqsPoller;
  /** The sandbox's GDPR data-deletion API under /api/app (absent with MIXPANEL_API_URL). */
  readonly gdprApi: GdprApi | undefined;
  /** The sandbox's Lookup Tables API (absent with MIXPANEL_API_URL); one table, LOCAL_LOOKUP_TABLE, exists. */
  readonly lookupApi: LookupTablesApi | undefined;
  readonly rejectedBucket: string;
  readonly snapshotBucket: string;
  /** Braze Currents' storage bucket: Avro files put here are read by the currents-reader handler. */
  readonly currentsBucket: string;
  readonly currentsNotifier: S3Notifier;
  readonly intakeToken: string;
  readonly forwarderPoller: SqsPoller;
  readonly env: Record<string, string>;
  readonly cohorts: LocalCohortSide | undefined;
  /** Present when `retention` was asked for. */
  readonly retention: LocalRetention | undefined;
  /** Adds another SQS-driven function (e.g. webhook delivery) on a queue of this stack. */
  addConsumer(options: {
    queue: QueuePair;
    functionName: string;
    handler: (event: SQSEvent, context: Context) => Promise<SQSBatchResponse>;
    batchSize: number;
    timeoutMs: number;
  }): SqsPoller;
  stop(): Promise<void>;
}

async function createQueuePair(
  sqs: SQSClient,
  name: string,
  options: { maxReceiveCount: number; visibilityTimeoutSeconds: number },
): Promise<QueuePair> {
  const dlq = await sqs.send(
    new CreateQueueCommand({
      QueueName: `${name}-dlq`,
      Attributes: { MessageRetentionPeriod: "1209600", MaximumMessageSize: String(LOCAL_MAX_MESSAGE_BYTES) },
    }),
  );
  const dlqUrl = dlq.QueueUrl ?? "";
  const dlqAttributes = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: dlqUrl, AttributeNames: ["QueueArn"] }));
  const dlqArn = dlqAttributes.Attributes?.QueueArn ?? "";
  const queue = await sqs.send(
    new CreateQueueCommand({
      QueueName: name,
      Attributes: {
        VisibilityTimeout: String(options.visibilityTimeoutSeconds),
        MaximumMessageSize: String(LOCAL_MAX_MESSAGE_BYTES),
        RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: options.maxReceiveCount }),
      },
    }),
  );
  const url = queue.QueueUrl ?? "";
  const attributes = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ["QueueArn"] }));
  return { url, arn: attributes.Attributes?.QueueArn ?? "", dlqUrl, dlqArn };
}

const MAX_LOCAL_BODY_BYTES = 10 * 1024 * 1024;

async function readBody(request: IncomingMessage): Promise<Buffer | "too_large"> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
    size += buffer.length;
    // API Gateway HTTP APIs stop at 10 MB before Lambda ever runs.
    if (size > MAX_LOCAL_BODY_BYTES) return "too_large";
    chunks.push(buffer);
  }
  return Buffer.concat(chunks);
}

/** Builds the API Gateway HTTP API (payload v2) event Lambda would receive. */
export function toApiGatewayEvent(request: IncomingMessage, body: Buffer): APIGatewayProxyEventV2 {
  const url = new URL(request.url ?? "/", "http://local");
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(request.headers)) {
    if (value !== undefined) headers[name.toLowerCase()] = Array.isArray(value) ? value.join(",") : value;
  }
  const now = new Date();
  const contentType = headers["content-type"] ?? "";
  // A compressed body is bytes whatever its Content-Type says (gzip on the Mixpanel-compatible routes).
  const textual = !headers["content-encoding"] && (contentType === "" || /json|text|x-www-form-urlencoded/.test(contentType));
  return {
    version: "2.0",
    routeKey: "$default",
    rawPath: url.pathname,
    rawQueryString: url.searchParams.toString(),
    headers,
    queryStringParameters: url.searchParams.size > 0 ? Object.fromEntries(url.searchParams) : undefined,
    requestContext: {
      accountId: "000000000000",
      apiId: "local",
      domainName: headers.host ?? "127.0.0.1",
      domainPrefix: "local",
      http: {
        method: request.method ?? "GET",
        path: url.pathname,
        protocol: "HTTP/1.1",
        sourceIp: request.socket.remoteAddress ?? "127.0.0.1",
        userAgent: headers["user-agent"] ?? "",
      },
      requestId: randomUUID(),
      routeKey: "$default",
      stage: "$default",
      time: now.toUTCString(),
      timeEpoch: now.getTime(),
    },
    ...(body.length > 0 ? { body: body.toString(textual ? "utf8" : "base64") } : {}),
    isBase64Encoded: body.length > 0 && !textual,
  };
}

function writeResult(response: ServerResponse, result: APIGatewayProxyStructuredResultV2): void {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(result.headers ?? {})) headers[name] = String(value);
  response.writeHead(result.statusCode ?? 200, headers);
  response.end(result.isBase64Encoded && result.body ? Buffer.from(result.body, "base64") : (result.body ?? ""));
}

export async function startLocalStack(options: LocalStackOptions = {}): Promise<LocalStack> {
  const log = options.log ?? (() => undefined);
  const app = buildApp({ logger: false });
  const awsEndpoint = await app.listen({ port: options.sqsPort ?? 0, host: "127.0.0.1" });

  // The SDK insists on credentials even for a local endpoint; these never leave the machine.
  process.env.AWS_ACCESS_KEY_ID ??= "local";
  process.env.AWS_SECRET_ACCESS_KEY ??= "local";
  const sqs = createSqsClient(LOCAL_REGION, awsEndpoint);
  const s3 = createS3Client(LOCAL_REGION, awsEndpoint);

  const queueOptions = {
    maxReceiveCount: options.maxReceiveCount ?? 3,
    visibilityTimeoutSeconds: options.visibilityTimeoutSeconds ?? 30,
  };
  const events = await createQueuePair(sqs, "mixpanel-relay-local-events", queueOptions);
  const deliveries = await createQueuePair(sqs, "mixpanel-relay-local-deliveries", queueOptions);
  const brevo = await createQueuePair(sqs, "mixpanel-relay-local-brevo", queueOptions);
  const rejectedBucket = "mixpanel-relay-local-rejected";
  const snapshotBucket = "mixpanel-relay-local-snapshots";
  await s3.send(new CreateBucketCommand({ Bucket: rejectedBucket }));
  await s3.send(new CreateBucketCommand({ Bucket: snapshotBucket }));
  const currentsBucket = "mixpanel-relay-local-braze-currents";
  await s3.send(new CreateBucketCommand({ Bucket: currentsBucket }));

  let sandbox: MixpanelSandbox | undefined;
  let queryApi: CohortQueryApi | undefined;
  let secretsServer: SecretsManagerServer | undefined;
  let receiver: WebhookReceiver | undefined;
  let braze: BrazeServer | undefined;
  const stageName = options.stage ?? "local";
  const stageConfig = loadStageConfig(stageConfigPath(stageName, options.configFile), stageName);
  if (options.cohorts) {
    secretsServer = new SecretsManagerServer();
    await secretsServer.start();
    secretsServer.setSecret(LOCAL_WEBHOOK_SIGNING_SECRET_NAME, { secret: LOCAL_WEBHOOK_SIGNING_SECRET });
    braze = new BrazeServer({
      apiKey: process.env.BRAZE_API_KEY ?? LOCAL_BRAZE_API_KEY,
      port: options.brazePort ?? 0,
      onCall: (call) => log(`braze     POST /users/track → ${call.status} (${call.attributes} attribute object(s))`),
    });
    await braze.start();
    receiver = new WebhookReceiver({
      signingSecret: LOCAL_WEBHOOK_SIGNING_SECRET,
      port: options.cohorts.webhookPort ?? 0,
      onPage: (page) =>
        log(
          `webhook   ${page.payload.action} cohort ${page.payload.parameters.mixpanel_cohort_id} page ${page.payload.parameters.page_info.page_count}/${page.payload.parameters.page_info.total_pages}: ${page.payload.parameters.members.length} member(s)${page.duplicate ? " (duplicate, ignored)" : ""}`,
        ),
    });
    await receiver.start();
    if (!options.mixpanelApiUrl) {
      queryApi = createCohortQueryApi({
        profiles: () => sandbox?.profiles ?? new Map(),
        cohorts: options.cohorts.fixtures ?? LOCAL_COHORTS,
        projectId: LOCAL_MIXPANEL_CREDENTIALS.projectId,
        username: LOCAL_MIXPANEL_CREDENTIALS.serviceAccountUsername,
        secret: LOCAL_MIXPANEL_CREDENTIALS.serviceAccountSecret,
        onQuery: (query) => log(`mixpanel  query ${query.path} → ${query.status}`),
      });
    }
  }

  let mixpanelUrl = options.mixpanelApiUrl ?? "";
  const gdprApi = options.mixpanelApiUrl ? undefined : createGdprApi({ oauthToken: LOCAL_GDPR_TOKEN, projectToken: LOCAL_MIXPANEL_CREDENTIALS.projectToken });
  const lookupApi = options.mixpanelApiUrl
    ? undefined
    : createLookupTablesApi({
        projectId: LOCAL_MIXPANEL_CREDENTIALS.projectId,
        username: LOCAL_MIXPANEL_CREDENTIALS.serviceAccountUsername,
        secret: LOCAL_MIXPANEL_CREDENTIALS.serviceAccountSecret,
        tables: [LOCAL_LOOKUP_TABLE],
        onCall: (call) => log(`mixpanel  ${call.method} ${call.path} → ${call.status}`),
      });
  if (!options.mixpanelApiUrl) {
    sandbox = new MixpanelSandbox({
      credentials: LOCAL_MIXPANEL_CREDENTIALS,
      port: options.mixpanelPort ?? 0,
      extraRoutes: [...(queryApi ? [queryApi] : []), ...(gdprApi ? [gdprApi] : []), ...(lookupApi ? [lookupApi] : []), ...(options.sandboxRoutes ?? [])],
      onImport: (imported) => log(`mixpanel  /import received ${imported.length} event(s): ${[...new Set(imported.map((e) => e.event))].slice(0, 5).join(", ")}`),
    });
    mixpanelUrl = await sandbox.start();
  }

  // The Brevo sandbox knows the lists the stage config names (brevo.lists.all_users).
  let brevoSandbox: BrevoServer | undefined;
  let brevoUrl = options.brevoApiUrl ?? "";
  if (!options.brevoApiUrl) {
    const allUsers = stageConfig.brevo?.lists.all_users;
    // The lists the connector and the cohort Brevo destinations name exist in the sandbox.
    const cohortLists = stageConfig.cohort_syncs.flatMap((sync) => (sync.destination.type === "brevo" ? [sync.destination.list_id] : []));
    brevoSandbox = new BrevoServer({
      apiKey: LOCAL_BREVO_API_KEY,
      listIds: [...new Set([...(allUsers !== undefined ? [allUsers] : []), ...cohortLists])],
      limit: options.brevoRateLimit ?? 10,
      windowMs: 1000,
      port: options.brevoPort ?? 0,
      onCall: (call) => {
        if (call.path.startsWith("/v3/")) log(`brevo     ${call.method} ${call.path} → ${call.status}`);
      },
    });
    brevoUrl = await brevoSandbox.start();
  }

  // Every secret the stage config names, so each destination kind can be tried locally.
  if (secretsServer) {
    const served = localSecrets(stageConfig, process.env, {
      brevoSandboxKey: brevoSandbox ? LOCAL_BREVO_API_KEY : undefined,
      brazeKey: process.env.BRAZE_API_KEY ?? LOCAL_BRAZE_API_KEY,
      signingSecret: LOCAL_WEBHOOK_SIGNING_SECRET,
    });
    for (const secret of served.secrets) secretsServer.setSecret(secret.name, secret.value);
    for (const name of served.missing) log(`secrets   not served: ${name}`);
  }

  const intakeToken = options.intakeToken ?? DEFAULT_LOCAL_INTAKE_TOKEN;
  const env: Record<string, string> = {
    RELAY_STAGE: options.stage ?? "local",
    ...(options.configFile ? { RELAY_CONFIG_FILE: options.configFile } : {}),
    AWS_REGION: LOCAL_REGION,
    AWS_ENDPOINT_URL: awsEndpoint,
    EVENTS_QUEUE_URL: events.url,
    EVENTS_DLQ_URL: events.dlqUrl,
    DELIVERIES_QUEUE_URL: deliveries.url,
    BREVO_QUEUE_URL: brevo.url,
    BREVO_DLQ_URL: brevo.dlqUrl,
    BREVO_API_URL: brevoUrl,
    ...(brevoSandbox ? { BREVO_API_KEY: LOCAL_BREVO_API_KEY } : process.env.BREVO_API_KEY ? { BREVO_API_KEY: process.env.BREVO_API_KEY } : {}),
    REJECTED_BUCKET: rejectedBucket,
    SNAPSHOT_BUCKET: snapshotBucket,
    SQS_MAX_MESSAGE_BYTES: String(LOCAL_MAX_MESSAGE_BYTES),
    MIXPANEL_API_URL: mixpanelUrl,
    // The sandbox serves the Query API under /api/query, like Mixpanel's own hosts.
    MIXPANEL_QUERY_URL: `${mixpanelUrl}/api/query`,
    DELIVERIES_DLQ_URL: deliveries.dlqUrl,
    DELIVERIES_MAX_RECEIVE_COUNT: String(queueOptions.maxReceiveCount),
    ...(options.cohorts ? { COHORT_EXPORT_TICK_MS: String(options.cohorts.tickMs ?? 10_000) } : {}),
    ...(secretsServer ? { SECRETS_ENDPOINT_URL: secretsServer.url } : {}),
    INTAKE_TOKEN: intakeToken,
    // The stack prints its own one-line summaries; the handlers' JSON logs stay for warnings.
    POWERTOOLS_LOG_LEVEL: process.env.POWERTOOLS_LOG_LEVEL ?? "WARN",
    POWERTOOLS_METRICS_DISABLED: process.env.POWERTOOLS_METRICS_DISABLED ?? "true",
    ...(sandbox
      ? {
          MIXPANEL_PROJECT_ID: LOCAL_MIXPANEL_CREDENTIALS.projectId,
          MIXPANEL_PROJECT_TOKEN: LOCAL_MIXPANEL_CREDENTIALS.projectToken,
          MIXPANEL_SERVICE_ACCOUNT_USERNAME: LOCAL_MIXPANEL_CREDENTIALS.serviceAccountUsername,
          MIXPANEL_SERVICE_ACCOUNT_SECRET: LOCAL_MIXPANEL_CREDENTIALS.serviceAccountSecret,
        }
      : {}),
    ...options.env,
  };
  // The handlers read their configuration once, at their first invocation, from process.env.
  Object.assign(process.env, env);
  const intake = await import("../../functions/intake/handler.js");
  const forwarder = await import("../../functions/forwarder/handler.js");
  const currentsReader = await import("../../functions/currents-reader/handler.js");
  const brevoForwarder = await import("../../functions/brevo-forwarder/handler.js");

  const serveIntake = (request: IncomingMessage, response: ServerResponse) => {
    options.onIntakeRequest?.(request);
    void (async () => {
      const body = await readBody(request);
      if (request.method === "POST" && request.url === LOCAL_COHORT_EXPORT_PATH && cohorts && body !== "too_large") {
        // `npm run cohorts:export -- --stage local`: one export tick with the given input, as an invoke would.
        let input: unknown = {};
        try {
          if (body.length > 0) input = JSON.parse(body.toString("utf8"));
        } catch {
          response.writeHead(400, { "content-type": "application/json" });
          response.end(JSON.stringify({ error: "invalid_json" }));
          return;
        }
        // The handler validates the input like an EventBridge/invoke payload.
        const report = await cohorts.tick(input);
        response.writeHead(200, { "content-type": "application/json" });
        response.end(JSON.stringify(report ?? { busy: true }));
        return;
      }
      if (body === "too_large") {
        response.writeHead(413, { "content-type": "application/json" });
        response.end(JSON.stringify({ error: "payload_too_large", message: "API Gateway limit is 10 MB" }));
        return;
      }
      const result = await intake.handler(toApiGatewayEvent(request, body));
      writeResult(response, result);
      log(`intake    ${request.method} ${request.url} → ${result.statusCode} ${result.body ?? ""}`.slice(0, 300));
    })().catch((error: unknown) => {
      response.writeHead(502, { "content-type": "application/json" });
      response.end(JSON.stringify({ error: "local_invoke_failed", message: String(error) }));
    });
  };
  const intakeServer = options.tls ? createHttpsServer({ key: options.tls.key, cert: options.tls.cert }, serveIntake) : createServer(serveIntake);
  const intakePort = await listenOnLoopback(intakeServer, options.intakePort ?? 0);

  const pollers: SqsPoller[] = [];
  const addConsumer: LocalStack["addConsumer"] = (consumer) => {
    const poller = new SqsPoller({
      sqs,
      queueUrl: consumer.queue.url,
      queueArn: consumer.queue.arn,
      region: LOCAL_REGION,
      functionName: consumer.functionName,
      handler: consumer.handler,
      batchSize: consumer.batchSize,
      timeoutMs: consumer.timeoutMs,
      onBatch: ({ received, failed, functionName }) =>
        log(`${functionName.padEnd(9)} took ${received} message(s), ${failed} handed back to SQS`),
      onError: (error) => log(`${consumer.functionName} poller error: ${String(error)}`),
    });
    pollers.push(poller);
    if (options.startPollers ?? true) poller.start();
    return poller;
  };
  const forwarderPoller = addConsumer({
    queue: events,
    functionName: "forwarder",
    handler: forwarder.handler,
    batchSize: options.forwarderBatchSize ?? 10,
    timeoutMs: options.forwarderTimeoutMs ?? 60_000,
  });

  const brevoPoller = addConsumer({
    queue: brevo,
    functionName: "brevo",
    handler: brevoForwarder.handler,
    batchSize: 10,
    timeoutMs: options.forwarderTimeoutMs ?? 60_000,
  });

  const currentsNotifier = new S3Notifier({
    s3,
    bucket: currentsBucket,
    region: LOCAL_REGION,
    intervalMs: 1_000,
    handler: async (event) => {
      await currentsReader.handler(event);
      log(`currents  read s3://${currentsBucket}/${event.Records[0]?.s3.object.key ?? ""}`);
    },
    onError: (error) => log(`currents-reader error: ${String(error)}`),
  });
  if (options.startPollers ?? true) currentsNotifier.start();

  let cohorts: LocalCohortSide | undefined;
  let exportTimer: NodeJS.Timeout | undefined;
  if (options.cohorts && receiver && secretsServer && braze) {
    const cohortExport = await import("../../functions/cohort-export/handler.js");
    const webhookDelivery = await import("../../functions/webhook-delivery/handler.js");
    const deliveryPoller = addConsumer({
      queue: deliveries,
      functionName: "delivery",
      handler: webhookDelivery.handler,
      batchSize: 5,
      timeoutMs: 120_000,
    });
    let ticking = false;
    const tick = async (input: unknown = {}) => {
      if (ticking) return undefined;
      ticking = true;
      try {
        return await cohortExport.handler(input, lambdaContext("cohort-export", 900_000));
      } finally {
        ticking = false;
      }
    };
    if (options.startPollers ?? true) {
      exportTimer = setInterval(() => {
        tick().catch((error: unknown) => log(`cohort-export error: ${String(error)}`));
      }, options.cohorts.tickMs ?? 10_000);
    }
    cohorts = { receiver, braze, queryApi, secrets: secretsServer, deliveryPoller, tick };
  }

  let retention: LocalRetention | undefined;
  if (options.retention) {
    const bounds = options.retention;
    retention = new LocalRetention({
      s3,
      intervalMs: bounds.intervalMs,
      rules: [
        { bucket: rejectedBucket, prefix: "", maxObjects: bounds.maxRejectedObjects },
        { bucket: currentsBucket, prefix: "", maxObjects: bounds.maxCurrentsObjects },
        { bucket: snapshotBucket, prefix: "cohort-runs/", maxAgeMs: bounds.cohortRunMaxAgeMs },
      ],
      afterPass: () => {
        for (const kept of [sandbox?.events, sandbox?.requests]) {
          if (kept && kept.length > bounds.maxSandboxEvents) kept.splice(0, kept.length - bounds.maxSandboxEvents);
        }
      },
      onPruned: (deleted) => log(`retention deleted ${deleted} old object(s) from the local S3`),
      onError: (error) => log(`retention error: ${String(error)}`),
    });
    retention.start();
  }

  return {
    intakeUrl: `${options.tls ? "https" : "http"}://127.0.0.1:${intakePort}`,
    awsEndpoint,
    mixpanelUrl,
    sandbox,
    sqs,
    s3,
    events,
    deliveries,
    brevo,
    brevoSandbox,
    brevoUrl,
    brevoPoller,
    gdprApi,
    lookupApi,
    rejectedBucket,
    snapshotBucket,
    currentsBucket,
    currentsNotifier,
    intakeToken,
    forwarderPoller,
    env,
    cohorts,
    retention,
    addConsumer,
    async stop() {
      retention?.stop();
      currentsNotifier.stop();
      if (exportTimer) clearInterval(exportTimer);
      await Promise.all(pollers.map((poller) => poller.stop()));
      await closeServer(intakeServer);
      await sandbox?.stop();
      await brevoSandbox?.close();
      await receiver?.close();
      await braze?.close();
      await secretsServer?.stop();
      await app.close();
      sqs.destroy();
      s3.destroy();
    },
  };
}
