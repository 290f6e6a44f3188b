import { isUtf8 } from "node:buffer";
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
import { createExportApi } from "./peers/mixpanel-export.js";
import { loadStageConfig, stageConfigPath } from "../../lib/config/stage.js";
import { createCohortQueryApi, type CohortFixture, type CohortQueryApi } from "./peers/mixpanel-query.js";
import { SecretsManagerServer } from "./peers/secrets-manager-server.js";
import { closeServer, listenOnLoopback } from "./peers/local-server.js";
import { type ReceivedPage, WebhookReceiver } from "./peers/webhook-server.js";
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
import { LOCAL_STAGE, type StageConfig } from "../../lib/config/stage.js";
import { SERVICE_NAME, type FunctionName, deadLetterQueueName, queueName, rejectedBucketPrefix, snapshotBucketPrefix, type RedrivableQueue } from "../stack-layout.js";

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
  /**
   * The caller's environment, read (never written) for BRAZE_API_KEY, BREVO_API_KEY, PII_HASH_KEY
   * and the POWERTOOLS_* settings the handlers inherit; default process.env.
   */
  readonly callerEnv?: Readonly<Record<string, string | undefined>>;
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
  /** One per source bucket of the `on_upload` lookup tables (with `cohorts` only): the S3 trigger of cohort-export. */
  readonly lookupNotifiers: readonly S3Notifier[];
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

interface QueueOptions {
  readonly maxReceiveCount: number;
  readonly visibilityTimeoutSeconds: number;
}

/** A queue and its DLQ with the stage's names (infra/stack-layout.ts) and the same redrive as in AWS. */
async function createQueuePair(sqs: SQSClient, kind: RedrivableQueue, options: QueueOptions): Promise<QueuePair> {
  const name = queueName(LOCAL_STAGE, kind);
  const dlq = await sqs.send(
    new CreateQueueCommand({
      QueueName: deadLetterQueueName(LOCAL_STAGE, kind),
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
  // Bytes that are not UTF-8 (Latin-1, CESU-8 pairs) go base64 too, so the handler sees them as sent.
  const textual = !headers["content-encoding"] && (contentType === "" || /json|text|x-www-form-urlencoded/.test(contentType)) && isUtf8(body);
  return {
    version: "2.0",
    routeKey: "$default",
    rawPath: url.pathname,
    // As sent (API Gateway's rawQueryString): re-serializing the parsed parameters would replace escapes that are not UTF-8.
    rawQueryString: url.search.slice(1),
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

/** The SDK insists on credentials even for a local endpoint; these never leave the machine. */
const LOCAL_AWS_CREDENTIALS = { accessKeyId: "local", secretAccessKey: "local" };

/**
 * The local stack's resources carry the "local" stage's names (infra/stack-layout.ts) whatever
 * stage config it runs, so `--stage local` of the operator commands finds them. One account on
 * one machine: the buckets drop the account-id suffix AWS names carry.
 */
const LOCAL_BUCKETS = {
  rejected: rejectedBucketPrefix(LOCAL_STAGE).replace(/-$/, ""),
  snapshots: snapshotBucketPrefix(LOCAL_STAGE).replace(/-$/, ""),
  currents: `${SERVICE_NAME}-${LOCAL_STAGE}-braze-currents`,
} as const;

interface LocalAws {
  readonly server: ReturnType<typeof buildApp>;
  readonly endpoint: string;
  readonly sqs: ReturnType<typeof createSqsClient>;
  readonly s3: S3Client & S3BucketApi;
}

/** Step 1: the in-process SQS/S3 server (fauxqs) on 127.0.0.1 and the stack's own SDK clients. */
async function startLocalAws(port: number): Promise<LocalAws> {
  const server = buildApp({ logger: false });
  const endpoint = await server.listen({ port, host: "127.0.0.1" });
  return {
    server,
    endpoint,
    sqs: createSqsClient(LOCAL_REGION, endpoint, LOCAL_AWS_CREDENTIALS),
    s3: createS3Client(LOCAL_REGION, endpoint, LOCAL_AWS_CREDENTIALS),
  };
}

interface LocalResources {
  readonly events: QueuePair;
  readonly deliveries: QueuePair;
  readonly brevo: QueuePair;
  readonly rejectedBucket: string;
  readonly snapshotBucket: string;
  readonly currentsBucket: string;
}

/** Step 2: the queues with their DLQs and the buckets the stack's template declares. */
async function createLocalResources(aws: LocalAws, queueOptions: QueueOptions): Promise<LocalResources> {
  const events = await createQueuePair(aws.sqs, "events", queueOptions);
  const deliveries = await createQueuePair(aws.sqs, "deliveries", queueOptions);
  const brevo = await createQueuePair(aws.sqs, "brevo", queueOptions);
  for (const bucket of Object.values(LOCAL_BUCKETS)) await aws.s3.send(new CreateBucketCommand({ Bucket: bucket }));
  return { events, deliveries, brevo, rejectedBucket: LOCAL_BUCKETS.rejected, snapshotBucket: LOCAL_BUCKETS.snapshots, currentsBucket: LOCAL_BUCKETS.currents };
}

interface CohortPeers {
  readonly secrets: SecretsManagerServer;
  readonly braze: BrazeServer;
  readonly receiver: WebhookReceiver;
  readonly queryApi: CohortQueryApi | undefined;
}

/** One line per webhook page: who was added or removed, as the receiver's page shows them. */
function describeWebhookPage(page: ReceivedPage): string {
  const { action, parameters } = page.payload;
  const ids = parameters.members.map((member) => String(member.mixpanel_distinct_id));
  const shown = ids.length === 0 ? "no members" : `${ids.slice(0, 10).join(", ")}${ids.length > 10 ? ` and ${ids.length - 10} more` : ""}`;
  return `webhook   ${action} cohort ${parameters.mixpanel_cohort_id} page ${parameters.page_info.page_count}/${parameters.page_info.total_pages}: ${shown}${page.duplicate ? " (duplicate, ignored)" : ""}`;
}

/** Step 3 (cohorts only): local Secrets Manager, Braze, webhook receiver and the sandbox's Query API. */
async function startCohortPeers(
  cohorts: NonNullable<LocalStackOptions["cohorts"]>,
  options: { brazePort: number; brazeKey: string; profiles: () => Map<string, Record<string, unknown>>; queryApi: boolean },
  log: (line: string) => void,
): Promise<CohortPeers> {
  const secrets = new SecretsManagerServer();
  await secrets.start();
  secrets.setSecret(LOCAL_WEBHOOK_SIGNING_SECRET_NAME, { secret: LOCAL_WEBHOOK_SIGNING_SECRET });
  const braze = new BrazeServer({
    apiKey: options.brazeKey,
    port: options.brazePort,
    onCall: (call) => log(`braze     POST /users/track → ${call.status} (${call.attributes} attribute object(s))`),
  });
  await braze.start();
  const receiver = new WebhookReceiver({
    signingSecret: LOCAL_WEBHOOK_SIGNING_SECRET,
    port: cohorts.webhookPort ?? 0,
    onPage: (page) => log(describeWebhookPage(page)),
  });
  await receiver.start();
  const queryApi = options.queryApi
    ? createCohortQueryApi({
        profiles: options.profiles,
        cohorts: cohorts.fixtures ?? LOCAL_COHORTS,
        projectId: LOCAL_MIXPANEL_CREDENTIALS.projectId,
        username: LOCAL_MIXPANEL_CREDENTIALS.serviceAccountUsername,
        secret: LOCAL_MIXPANEL_CREDENTIALS.serviceAccountSecret,
        onQuery: (query) => log(`mixpanel  query ${query.path} → ${query.status}`),
      })
    : undefined;
  return { secrets, braze, receiver, queryApi };
}

interface MixpanelSide {
  readonly sandbox: MixpanelSandbox | undefined;
  readonly gdprApi: GdprApi | undefined;
  readonly lookupApi: LookupTablesApi | undefined;
  readonly url: string;
}

/** Step 4: the strict local Mixpanel (ingestion, Query and GDPR APIs), unless MIXPANEL_API_URL is given. */
async function startMixpanelPeer(options: LocalStackOptions, queryApi: CohortQueryApi | undefined, log: (line: string) => void): Promise<MixpanelSide> {
  if (options.mixpanelApiUrl) return { sandbox: undefined, gdprApi: undefined, lookupApi: undefined, url: options.mixpanelApiUrl };
  const gdprApi = createGdprApi({ oauthToken: LOCAL_GDPR_TOKEN, projectToken: LOCAL_MIXPANEL_CREDENTIALS.projectToken });
  const lookupApi = createLookupTablesApi({
    projectId: LOCAL_MIXPANEL_CREDENTIALS.projectId,
    username: LOCAL_MIXPANEL_CREDENTIALS.serviceAccountUsername,
    secret: LOCAL_MIXPANEL_CREDENTIALS.serviceAccountSecret,
    tables: [LOCAL_LOOKUP_TABLE],
    onCall: (call) => log(`mixpanel  ${call.method} ${call.path} → ${call.status}`),
  });
  // The raw export serves what the sandbox received (`npm run brevo:backfill -- --stage local`).
  const received: { events: readonly { event: string; properties: Record<string, unknown> }[] } = { events: [] };
  const exportApi = createExportApi({
    events: () => received.events,
    projectId: LOCAL_MIXPANEL_CREDENTIALS.projectId,
    username: LOCAL_MIXPANEL_CREDENTIALS.serviceAccountUsername,
    secret: LOCAL_MIXPANEL_CREDENTIALS.serviceAccountSecret,
    onCall: (call) => log(`mixpanel  GET /api/2.0/export ${call.query.from_date ?? "?"}..${call.query.to_date ?? "?"} → ${call.status}${call.status === 200 ? ` (${call.lines} event(s))` : ""}`),
  });
  const sandbox = new MixpanelSandbox({
    credentials: LOCAL_MIXPANEL_CREDENTIALS,
    port: options.mixpanelPort ?? 0,
    extraRoutes: [...(queryApi ? [queryApi] : []), gdprApi, lookupApi, exportApi, ...(options.sandboxRoutes ?? [])],
    onImport: (imported) => log(`mixpanel  /import received ${imported.length} event(s): ${[...new Set(imported.map((e) => e.event))].slice(0, 5).join(", ")}`),
  });
  received.events = sandbox.events;
  return { sandbox, gdprApi, lookupApi, url: await sandbox.start() };
}

/** Step 5: the strict local Brevo, knowing every list the stage config names, unless BREVO_API_URL is given. */
async function startBrevoPeer(options: LocalStackOptions, stageConfig: StageConfig, log: (line: string) => void): Promise<{ sandbox: BrevoServer | undefined; url: string }> {
  if (options.brevoApiUrl) return { sandbox: undefined, url: options.brevoApiUrl };
  const allUsers = stageConfig.brevo?.lists.all_users;
  const cohortLists = stageConfig.cohort_syncs.flatMap((sync) => (sync.destination.type === "brevo" ? [sync.destination.list_id] : []));
  const sandbox = new BrevoServer({
    apiKey: LOCAL_BREVO_API_KEY,
    listIds: [...new Set([...(allUsers !== undefined ? [allUsers] : []), ...cohortLists])],
    limit: options.brevoRateLimit ?? 10,
    windowMs: 1000,
    port: options.brevoPort ?? 0,
    onCall: (call) => {
      if (call.path.startsWith("/v3/")) log(`brevo     ${call.method} ${call.path} → ${call.status}`);
    },
  });
  return { sandbox, url: await sandbox.start() };
}

/** Step 6: every secret the stage config names, so each destination kind can be tried locally. */
function serveLocalSecrets(
  secrets: SecretsManagerServer,
  stageConfig: StageConfig,
  callerEnv: Readonly<Record<string, string | undefined>>,
  options: { brevoSandbox: boolean; brazeKey: string },
  log: (line: string) => void,
): void {
  const served = localSecrets(stageConfig, callerEnv, {
    brevoSandboxKey: options.brevoSandbox ? LOCAL_BREVO_API_KEY : undefined,
    brazeKey: options.brazeKey,
    signingSecret: LOCAL_WEBHOOK_SIGNING_SECRET,
  });
  for (const secret of served.secrets) secrets.setSecret(secret.name, secret.value);
  for (const name of served.missing) log(`secrets   not served: ${name}`);
}

/** Step 7 (pure): the environment the handlers run with, as serverless.yml gives it to them in AWS. */
export function handlerEnvironment(parts: {
  readonly options: LocalStackOptions;
  readonly callerEnv: Readonly<Record<string, string | undefined>>;
  readonly awsEndpoint: string;
  readonly resources: LocalResources;
  readonly mixpanel: MixpanelSide;
  readonly brevo: { sandbox: BrevoServer | undefined; url: string };
  readonly secretsUrl: string | undefined;
  readonly intakeToken: string;
  readonly maxReceiveCount: number;
}): Record<string, string> {
  const { options, callerEnv, resources, mixpanel, brevo } = parts;
  const brevoKey = brevo.sandbox ? LOCAL_BREVO_API_KEY : callerEnv.BREVO_API_KEY;
  return {
    RELAY_STAGE: options.stage ?? LOCAL_STAGE,
    ...(options.configFile ? { RELAY_CONFIG_FILE: options.configFile } : {}),
    AWS_REGION: LOCAL_REGION,
    AWS_ENDPOINT_URL: parts.awsEndpoint,
    // The handlers' SDK clients read credentials the SDK's way, from the environment.
    AWS_ACCESS_KEY_ID: callerEnv.AWS_ACCESS_KEY_ID ?? LOCAL_AWS_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: callerEnv.AWS_SECRET_ACCESS_KEY ?? LOCAL_AWS_CREDENTIALS.secretAccessKey,
    EVENTS_QUEUE_URL: resources.events.url,
    EVENTS_DLQ_URL: resources.events.dlqUrl,
    DELIVERIES_QUEUE_URL: resources.deliveries.url,
    DELIVERIES_DLQ_URL: resources.deliveries.dlqUrl,
    DELIVERIES_MAX_RECEIVE_COUNT: String(parts.maxReceiveCount),
    BREVO_QUEUE_URL: resources.brevo.url,
    BREVO_DLQ_URL: resources.brevo.dlqUrl,
    BREVO_API_URL: brevo.url,
    ...(brevoKey ? { BREVO_API_KEY: brevoKey } : {}),
    REJECTED_BUCKET: resources.rejectedBucket,
    SNAPSHOT_BUCKET: resources.snapshotBucket,
    SQS_MAX_MESSAGE_BYTES: String(LOCAL_MAX_MESSAGE_BYTES),
    MIXPANEL_API_URL: mixpanel.url,
    // The sandbox serves the Query API under /api/query, like Mixpanel's own hosts.
    MIXPANEL_QUERY_URL: `${mixpanel.url}/api/query`,
    ...(options.cohorts ? { COHORT_EXPORT_TICK_MS: String(options.cohorts.tickMs ?? LOCAL_EXPORT_TICK_MS) } : {}),
    ...(parts.secretsUrl ? { SECRETS_ENDPOINT_URL: parts.secretsUrl } : {}),
    // Secrets and the erased-ids list are re-read every few seconds locally (5 minutes in AWS),
    // so a changed secret or a \`gdpr:delete\` shows at once when trying things out.
    SECRETS_TTL_SECONDS: callerEnv.SECRETS_TTL_SECONDS ?? "5",
    INTAKE_TOKEN: parts.intakeToken,
    // The stack prints its own one-line summaries; the handlers' JSON logs stay for warnings.
    POWERTOOLS_LOG_LEVEL: callerEnv.POWERTOOLS_LOG_LEVEL ?? "WARN",
    POWERTOOLS_METRICS_DISABLED: callerEnv.POWERTOOLS_METRICS_DISABLED ?? "true",
    ...(mixpanel.sandbox
      ? {
          MIXPANEL_PROJECT_ID: LOCAL_MIXPANEL_CREDENTIALS.projectId,
          MIXPANEL_PROJECT_TOKEN: LOCAL_MIXPANEL_CREDENTIALS.projectToken,
          MIXPANEL_SERVICE_ACCOUNT_USERNAME: LOCAL_MIXPANEL_CREDENTIALS.serviceAccountUsername,
          MIXPANEL_SERVICE_ACCOUNT_SECRET: LOCAL_MIXPANEL_CREDENTIALS.serviceAccountSecret,
        }
      : {}),
    ...options.env,
  };
}

/**
 * Step 8: hands the handlers their environment, the one place the stack writes process.env.
 * The handler modules are the Lambda entry points unchanged: like Lambda, they read their
 * configuration from process.env at their first invocation (lib/runtime/lite-context.ts), and
 * Powertools (POWERTOOLS_*) and the AWS SDK's credential chain read nothing else. Answers a
 * function that puts back what was there before.
 */
function exposeToHandlers(env: Record<string, string>): () => void {
  const before = Object.fromEntries(Object.keys(env).map((key) => [key, process.env[key]]));
  Object.assign(process.env, env);
  return () => {
    for (const [key, value] of Object.entries(before)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  };
}

/** Step 9: the six handlers, imported once their environment is in place. */
async function loadHandlers() {
  return {
    intake: (await import("../../functions/intake/handler.js")).handler,
    forwarder: (await import("../../functions/forwarder/handler.js")).handler,
    currentsReader: (await import("../../functions/currents-reader/handler.js")).handler,
    brevoForwarder: (await import("../../functions/brevo-forwarder/handler.js")).handler,
    cohortExport: (await import("../../functions/cohort-export/handler.js")).handler,
    webhookDelivery: (await import("../../functions/webhook-delivery/handler.js")).handler,
  };
}
type Handlers = Awaited<ReturnType<typeof loadHandlers>>;

/** API Gateway's integration timeout: the intake's Lambda context gets this deadline. */
const INTAKE_TIMEOUT_MS = 30_000;
const LOCAL_EXPORT_TICK_MS = 10_000;

/** Step 10: the intake over http(s), as API Gateway invokes it (its own Lambda context per request). */
async function startIntakeServer(
  options: LocalStackOptions,
  intake: Handlers["intake"],
  cohortTick: () => LocalCohortSide["tick"] | undefined,
  log: (line: string) => void,
) {
  const serveIntake = (request: IncomingMessage, response: ServerResponse) => {
    options.onIntakeRequest?.(request);
    void (async () => {
      const body = await readBody(request);
      const tick = cohortTick();
      if (request.method === "POST" && request.url === LOCAL_COHORT_EXPORT_PATH && tick && body !== "too_large") {
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
        const report = await tick(input);
        response.writeHead(200, { "content-type": "application/json" });
        response.end(JSON.stringify(report ?? { busy: true }));
        return;
      }
      if (body === "too_large") {
        response.writeHead(413, { "content-type": "application/json" });
        response.end(JSON.stringify({ error: "payload_too_large", message: "API Gateway limit is 10 MB" }));
        return;
      }
      const result = await intake(toApiGatewayEvent(request, body), lambdaContext(localFunction("intake"), INTAKE_TIMEOUT_MS));
      writeResult(response, result);
      log(`intake    ${request.method} ${request.url} → ${result.statusCode} ${result.body ?? ""}`.slice(0, 300));
    })().catch((error: unknown) => {
      response.writeHead(502, { "content-type": "application/json" });
      response.end(JSON.stringify({ error: "local_invoke_failed", message: String(error) }));
    });
  };
  const server = options.tls ? createHttpsServer({ key: options.tls.key, cert: options.tls.cert }, serveIntake) : createServer(serveIntake);
  const port = await listenOnLoopback(server, options.intakePort ?? 0);
  return { server, url: `${options.tls ? "https" : "http"}://127.0.0.1:${port}` };
}

/** A function's key in serverless.yml, checked against infra/stack-layout.ts: its Lambda context and log lines carry it. */
function localFunction(name: FunctionName): FunctionName {
  return name;
}

/** Step 12 (cohorts only): the export tick on a timer, as the EventBridge schedule runs it. */
function startCohortTick(cohortExport: Handlers["cohortExport"], tickMs: number, startTimer: boolean, log: (line: string) => void) {
  let running: Promise<unknown> | undefined;
  const run = (input: unknown): Promise<unknown> => {
    const invocation = cohortExport(input, lambdaContext(localFunction("cohort-export"), 900_000)).finally(() => {
      if (running === invocation) running = undefined;
    });
    running = invocation;
    return invocation;
  };
  // An operator's tick (`cohorts:export`, `queries:run`) waits for the one in flight, then runs.
  const tick = async (input: unknown = {}) => {
    while (running) await running.catch(() => undefined);
    return run(input);
  };
  const timer = startTimer
    ? setInterval(() => {
        // The schedule skips a beat while a tick is still running.
        if (!running) run({}).catch((error: unknown) => log(`cohort-export error: ${String(error)}`));
      }, tickMs)
    : undefined;
  return { tick, stop: () => clearInterval(timer) };
}

/** Step 13 (npm start): bounds what a long session keeps in memory. */
function startRetention(bounds: NonNullable<LocalStackOptions["retention"]>, s3: S3Client, resources: LocalResources, sandbox: MixpanelSandbox | undefined, log: (line: string) => void) {
  const retention = new LocalRetention({
    s3,
    intervalMs: bounds.intervalMs,
    rules: [
      { bucket: resources.rejectedBucket, prefix: "", maxObjects: bounds.maxRejectedObjects },
      { bucket: resources.currentsBucket, prefix: "", maxObjects: bounds.maxCurrentsObjects },
      { bucket: resources.snapshotBucket, prefix: "cohort-runs/", maxAgeMs: bounds.cohortRunMaxAgeMs },
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
  return retention;
}

export async function startLocalStack(options: LocalStackOptions = {}): Promise<LocalStack> {
  const log = options.log ?? (() => undefined);
  const callerEnv = options.callerEnv ?? process.env;
  const startPollers = options.startPollers ?? true;
  const queueOptions = { maxReceiveCount: options.maxReceiveCount ?? 3, visibilityTimeoutSeconds: options.visibilityTimeoutSeconds ?? 30 };
  const stageName = options.stage ?? LOCAL_STAGE;
  const stageConfig = loadStageConfig(stageConfigPath(stageName, options.configFile), stageName);
  const brazeKey = callerEnv.BRAZE_API_KEY ?? LOCAL_BRAZE_API_KEY;

  const aws = await startLocalAws(options.sqsPort ?? 0);
  const resources = await createLocalResources(aws, queueOptions);
  let sandbox: MixpanelSandbox | undefined;
  const peers = options.cohorts
    ? await startCohortPeers(options.cohorts, { brazePort: options.brazePort ?? 0, brazeKey, profiles: () => sandbox?.profiles ?? new Map(), queryApi: !options.mixpanelApiUrl }, log)
    : undefined;
  const mixpanel = await startMixpanelPeer(options, peers?.queryApi, log);
  sandbox = mixpanel.sandbox;
  const brevoPeer = await startBrevoPeer(options, stageConfig, log);
  if (peers) serveLocalSecrets(peers.secrets, stageConfig, callerEnv, { brevoSandbox: brevoPeer.sandbox !== undefined, brazeKey }, log);

  const intakeToken = options.intakeToken ?? DEFAULT_LOCAL_INTAKE_TOKEN;
  const env = handlerEnvironment({
    options,
    callerEnv,
    awsEndpoint: aws.endpoint,
    resources,
    mixpanel,
    brevo: brevoPeer,
    secretsUrl: peers?.secrets.url,
    intakeToken,
    maxReceiveCount: queueOptions.maxReceiveCount,
  });
  const restoreEnvironment = exposeToHandlers(env);
  const handlers = await loadHandlers();

  let cohortTick: ReturnType<typeof startCohortTick> | undefined;
  const intakeServer = await startIntakeServer(options, handlers.intake, () => cohortTick?.tick, log);

  // Step 11: the event source mappings (SQS pollers) and the S3 notifications.
  const pollers: SqsPoller[] = [];
  const addConsumer: LocalStack["addConsumer"] = (consumer) => {
    const poller = new SqsPoller({
      sqs: aws.sqs,
      queueUrl: consumer.queue.url,
      queueArn: consumer.queue.arn,
      region: LOCAL_REGION,
      functionName: consumer.functionName,
      handler: consumer.handler,
      batchSize: consumer.batchSize,
      timeoutMs: consumer.timeoutMs,
      onBatch: ({ received, failed, functionName }) => log(`${functionName.padEnd(9)} took ${received} message(s), ${failed} handed back to SQS`),
      onError: (error) => log(`${consumer.functionName} poller error: ${String(error)}`),
    });
    pollers.push(poller);
    if (startPollers) poller.start();
    return poller;
  };
  const forwarderTimeoutMs = options.forwarderTimeoutMs ?? 60_000;
  const forwarderPoller = addConsumer({ queue: resources.events, functionName: localFunction("forwarder"), handler: handlers.forwarder, batchSize: options.forwarderBatchSize ?? 10, timeoutMs: forwarderTimeoutMs });
  const brevoPoller = addConsumer({ queue: resources.brevo, functionName: localFunction("brevo-forwarder"), handler: handlers.brevoForwarder, batchSize: 10, timeoutMs: forwarderTimeoutMs });
  const currentsNotifier = new S3Notifier({
    s3: aws.s3,
    bucket: resources.currentsBucket,
    region: LOCAL_REGION,
    intervalMs: 1_000,
    handler: async (event) => {
      await handlers.currentsReader(event, lambdaContext(localFunction("currents-reader"), 900_000));
      log(`currents  read s3://${resources.currentsBucket}/${event.Records[0]?.s3.object.key ?? ""}`);
    },
    onError: (error) => log(`currents-reader error: ${String(error)}`),
  });
  if (startPollers) currentsNotifier.start();

  let cohorts: LocalCohortSide | undefined;
  const lookupNotifiers: S3Notifier[] = [];
  if (options.cohorts && peers) {
    const deliveryPoller = addConsumer({ queue: resources.deliveries, functionName: localFunction("webhook-delivery"), handler: handlers.webhookDelivery, batchSize: 5, timeoutMs: 120_000 });
    cohortTick = startCohortTick(handlers.cohortExport, options.cohorts.tickMs ?? LOCAL_EXPORT_TICK_MS, startPollers, log);
    cohorts = { receiver: peers.receiver, braze: peers.braze, queryApi: peers.queryApi, secrets: peers.secrets, deliveryPoller, tick: cohortTick.tick };
    // The S3 trigger of `on_upload` lookup tables: a new object in a source bucket invokes cohort-export with it.
    for (const bucket of new Set(stageConfig.lookup_tables.filter((table) => table.schedule === "on_upload").map((table) => table.source.bucket))) {
      await aws.s3.send(new CreateBucketCommand({ Bucket: bucket })).catch((error: unknown) => log(`lookup    bucket ${bucket}: ${String(error)}`));
      const notifier = new S3Notifier({
        s3: aws.s3,
        bucket,
        region: LOCAL_REGION,
        intervalMs: 1_000,
        configurationId: "local-lookup-upload",
        handler: async (event) => {
          await handlers.cohortExport(event, lambdaContext(localFunction("cohort-export"), 900_000));
          log(`lookup    uploaded s3://${bucket}/${decodeURIComponent(event.Records[0]?.s3.object.key ?? "")}`);
        },
        onError: (error) => log(`cohort-export (lookup upload) error: ${String(error)}`),
      });
      lookupNotifiers.push(notifier);
      if (startPollers) notifier.start();
    }
  }
  const retention = options.retention ? startRetention(options.retention, aws.s3, resources, sandbox, log) : undefined;

  return {
    intakeUrl: intakeServer.url,
    awsEndpoint: aws.endpoint,
    mixpanelUrl: mixpanel.url,
    sandbox,
    sqs: aws.sqs,
    s3: aws.s3,
    ...resources,
    brevoSandbox: brevoPeer.sandbox,
    brevoUrl: brevoPeer.url,
    brevoPoller,
    gdprApi: mixpanel.gdprApi,
    lookupApi: mixpanel.lookupApi,
    currentsNotifier,
    lookupNotifiers,
    intakeToken,
    forwarderPoller,
    env,
    cohorts,
    retention,
    addConsumer,
    async stop() {
      retention?.stop();
      currentsNotifier.stop();
      for (const notifier of lookupNotifiers) notifier.stop();
      cohortTick?.stop();
      await Promise.all(pollers.map((poller) => poller.stop()));
      await closeServer(intakeServer.server);
      await sandbox?.stop();
      await brevoPeer.sandbox?.close();
      await peers?.receiver.close();
      await peers?.braze.close();
      await peers?.secrets.stop();
      await aws.server.close();
      aws.sqs.destroy();
      aws.s3.destroy();
      restoreEnvironment();
    },
  };
}
