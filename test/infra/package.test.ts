/**
 * Packages the real serverless.yml offline with osls for two stages and checks
 * the CloudFormation it would deploy: functions, event sources, queue/DLQ pairs,
 * alarms, IAM statements per function, buckets, and that no secret value or
 * wildcard resource slipped in (issue #5).
 *
 * First a fresh clone (the repository's files, no dist/) is packaged with a
 * plain `osls package --stage dev`: the build plugin must bundle the code and
 * the zips' handlers must run. The variants then package scratch copies of the
 * service (serverless.yml, infra/resources, the plugin, config, those bundles)
 * with no AWS credentials, and inside a network namespace with no
 * network at all when `unshare -n` is available, so any network call would fail
 * the packaging.
 */
import { spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { envSchema } from "../../lib/config/env.js";
import { cohortSettingsSchema } from "../../lib/runtime/cohorts.js";
import { oslsBin } from "../../infra/package.js";
import { FUNCTION_NAMES, type FunctionName } from "../../infra/stack-layout.js";
import { zipEntryNames } from "./zip-listing.js";

/* eslint-disable @typescript-eslint/no-explicit-any -- CloudFormation JSON is untyped. */
type Resource = { Type: string; Properties?: any; Condition?: string; DependsOn?: unknown; DeletionPolicy?: string };
type Template = { Resources: Record<string, Resource>; Outputs?: Record<string, unknown>; Conditions?: Record<string, unknown> };

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

interface Variant {
  readonly id: string;
  readonly stage: string;
  readonly params: Record<string, string>;
  /** From serverless.yml params, to check the template follows them. */
  readonly expect: { logRetentionDays: number; forwarderMaxConcurrency: number; schedule: string; currents: boolean; tracing?: boolean; lookup?: boolean };
}

const CURRENTS_BUCKET = "acme-braze-currents";
/** A stage config with two lookup tables: one on a schedule, one refreshed when its object is written. */
const LOOKUP_CONFIG = "config/lookup-example.json";
const LOOKUP_TABLES = [
  { id: "products", table_id: "3f6a0c1e", source: { type: "s3", bucket: "acme-catalog", key: "catalog/products.csv" }, schedule: "rate(1 day)" },
  { id: "stores", table_id: "77aa", source: { type: "s3", bucket: "acme-catalog", key: "catalog/stores.csv.gz" }, schedule: "on_upload" },
];
const VARIANTS: readonly Variant[] = [
  { id: "dev", stage: "dev", params: {}, expect: { logRetentionDays: 14, forwarderMaxConcurrency: 2, schedule: "rate(1 hour)", currents: false } },
  { id: "prod", stage: "prod", params: {}, expect: { logRetentionDays: 90, forwarderMaxConcurrency: 3, schedule: "rate(15 minutes)", currents: false } },
  {
    id: "prod-with-currents",
    stage: "prod",
    params: { currentsBucket: CURRENTS_BUCKET, alarmEmail: "ops@example.com", tracing: "true" },
    expect: { logRetentionDays: 90, forwarderMaxConcurrency: 3, schedule: "rate(15 minutes)", currents: true, tracing: true },
  },
  {
    id: "prod-with-lookup-tables",
    stage: "prod",
    params: { configFile: LOOKUP_CONFIG },
    expect: { logRetentionDays: 90, forwarderMaxConcurrency: 3, schedule: "rate(15 minutes)", currents: false, lookup: true },
  },
];

/** The logical ids osls derives from the function keys. */
const LOGICAL_PREFIX: Record<FunctionName, string> = {
  intake: "Intake",
  forwarder: "Forwarder",
  "currents-reader": "CurrentsDashreader",
  "cohort-export": "CohortDashexport",
  "webhook-delivery": "WebhookDashdelivery",
  "brevo-forwarder": "BrevoDashforwarder",
};
const ROLE_OF: Record<FunctionName, string> = {
  intake: "IntakeRole",
  forwarder: "ForwarderRole",
  "currents-reader": "CurrentsReaderRole",
  "cohort-export": "CohortExportRole",
  "webhook-delivery": "WebhookDeliveryRole",
  "brevo-forwarder": "BrevoForwarderRole",
};

const COMMON_ENV = ["RELAY_STAGE", "RELAY_CONFIG_FILE", "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL", "NODE_OPTIONS"];
const FUNCTION_ENV: Record<FunctionName, string[]> = {
  intake: ["EVENTS_QUEUE_URL", "REJECTED_BUCKET", "REJECTED_PREFIX", "INTAKE_TOKEN_SECRET_ID", "SQS_MAX_MESSAGE_BYTES", "BREVO_QUEUE_URL", "SNAPSHOT_BUCKET"],
  forwarder: ["REJECTED_BUCKET", "REJECTED_PREFIX", "MIXPANEL_SECRET_ID", "EVENTS_QUEUE_URL", "EVENTS_DLQ_URL", "IMPORT_MAX_BYTES", "IMPORT_CONCURRENCY"],
  "currents-reader": ["EVENTS_QUEUE_URL", "REJECTED_BUCKET", "REJECTED_PREFIX", "SQS_MAX_MESSAGE_BYTES", "BREVO_QUEUE_URL", "SNAPSHOT_BUCKET"],
  "cohort-export": ["MIXPANEL_SECRET_ID", "SNAPSHOT_BUCKET", "REJECTED_BUCKET", "REJECTED_PREFIX", "DELIVERIES_QUEUE_URL", "SQS_MAX_MESSAGE_BYTES", "COHORT_EXPORT_TICK"],
  "webhook-delivery": ["SNAPSHOT_BUCKET", "DELIVERIES_DLQ_URL", "DELIVERIES_MAX_RECEIVE_COUNT"],
  "brevo-forwarder": ["REJECTED_BUCKET", "REJECTED_PREFIX", "BREVO_QUEUE_URL", "BREVO_DLQ_URL", "SNAPSHOT_BUCKET"],
};

const getAtt = (logicalId: string, attribute = "Arn") => ({ "Fn::GetAtt": [logicalId, attribute] });
const sub = (text: string) => ({ "Fn::Sub": text });
const logGroupArn = (stage: string, fn: FunctionName) =>
  sub(`arn:\${AWS::Partition}:logs:\${AWS::Region}:\${AWS::AccountId}:log-group:/aws/lambda/mixpanel-relay-${stage}-${fn}:*`);
const secretArn = (name: string) => sub(`arn:\${AWS::Partition}:secretsmanager:\${AWS::Region}:\${AWS::AccountId}:secret:${name}`);

/** Every Allow statement each role must have, and nothing else. */
function expectedStatements(stage: string, currents: boolean, tracing: boolean, lookup = false): Record<string, { Sid: string; Action: string[]; Resource: unknown }[]> {
  const logs = (fn: FunctionName) => ({ Sid: "WriteOwnLogs", Action: ["logs:CreateLogStream", "logs:PutLogEvents"], Resource: logGroupArn(stage, fn) });
  const rejected = { Sid: "StoreRejected", Action: ["s3:PutObject"], Resource: sub("${RejectedEventsBucket.Arn}/rejected/*") };
  const mixpanelSecret = { Sid: "ReadMixpanelCredentials", Action: ["secretsmanager:GetSecretValue"], Resource: secretArn(`mixpanel-relay/${stage}/mixpanel-??????`) };
  const consume = (sid: string, queue: string) => ({ Sid: sid, Action: ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"], Resource: getAtt(queue) });
  const listSnapshots = { Sid: "ListCohortState", Action: ["s3:ListBucket"], Resource: getAtt("CohortSnapshotBucket") };
  const piiKey = { Sid: "ReadPiiHashKey", Action: ["secretsmanager:GetSecretValue"], Resource: secretArn(`mixpanel-relay/${stage}/pii-hash-key-??????`) };
  const erasedIds = [
    { Sid: "ReadErasedIds", Action: ["s3:GetObject"], Resource: sub("${CohortSnapshotBucket.Arn}/gdpr/suppressed-ids.json") },
    { Sid: "ListSnapshots", Action: ["s3:ListBucket"], Resource: getAtt("CohortSnapshotBucket") },
  ];
  const traces = tracing ? [{ Sid: "SendTraces", Action: ["xray:PutTraceSegments", "xray:PutTelemetryRecords"], Resource: "*" }] : [];
  const roles = {
    IntakeRole: [
      logs("intake"),
      { Sid: "QueueEvents", Action: ["sqs:SendMessage"], Resource: getAtt("EventsQueue") },
      { Sid: "QueueBrevo", Action: ["sqs:SendMessage"], Resource: getAtt("BrevoQueue") },
      rejected,
      { Sid: "ReadIntakeTokens", Action: ["secretsmanager:GetSecretValue"], Resource: secretArn(`mixpanel-relay/${stage}/intake-tokens-??????`) },
      piiKey,
      ...erasedIds,
    ],
    ForwarderRole: [
      logs("forwarder"),
      consume("ConsumeEvents", "EventsQueue"),
      { Sid: "RequeueUnsentRecords", Action: ["sqs:SendMessage"], Resource: [getAtt("EventsQueue"), getAtt("EventsDeadLetterQueue")] },
      rejected,
      mixpanelSecret,
    ],
    CurrentsReaderRole: [
      logs("currents-reader"),
      { Sid: "QueueEvents", Action: ["sqs:SendMessage"], Resource: getAtt("EventsQueue") },
      { Sid: "QueueBrevo", Action: ["sqs:SendMessage"], Resource: getAtt("BrevoQueue") },
      rejected,
      { Sid: "ReportFailedInvocations", Action: ["sqs:SendMessage"], Resource: getAtt("CurrentsReaderFailuresQueue") },
      piiKey,
      ...erasedIds,
      ...(currents
        ? [{ Sid: "ReadCurrentsFiles", Action: ["s3:GetObject", "s3:GetObjectVersion"], Resource: sub(`arn:\${AWS::Partition}:s3:::${CURRENTS_BUCKET}/currents/*`) }]
        : []),
    ],
    CohortExportRole: [
      logs("cohort-export"),
      piiKey,
      mixpanelSecret,
      { Sid: "ReadWriteCohortState", Action: ["s3:GetObject", "s3:PutObject"], Resource: [sub("${CohortSnapshotBucket.Arn}/cohorts/*"), sub("${CohortSnapshotBucket.Arn}/cohort-runs/*")] },
      listSnapshots,
      { Sid: "QueueDeliveries", Action: ["sqs:SendMessage"], Resource: getAtt("DeliveriesQueue") },
      { Sid: "ReadWriteLookupState", Action: ["s3:GetObject", "s3:PutObject"], Resource: sub("${CohortSnapshotBucket.Arn}/lookup-tables/*") },
      ...(lookup
        ? [{ Sid: "ReadLookupSources", Action: ["s3:GetObject"], Resource: LOOKUP_TABLES.map((table) => sub(`arn:\${AWS::Partition}:s3:::${table.source.bucket}/${table.source.key}`)) }]
        : []),
      rejected,
      { Sid: "ReadDestinationSecrets", Action: ["secretsmanager:GetSecretValue"], Resource: secretArn(`mixpanel-relay/${stage}/destinations/*`) },
      { Sid: "ReadErasedIds", Action: ["s3:GetObject"], Resource: sub("${CohortSnapshotBucket.Arn}/gdpr/suppressed-ids.json") },
    ],
    WebhookDeliveryRole: [
      logs("webhook-delivery"),
      consume("ConsumeDeliveries", "DeliveriesQueue"),
      { Sid: "DeadLetterRefusedPages", Action: ["sqs:SendMessage"], Resource: getAtt("DeliveriesDeadLetterQueue") },
      { Sid: "ReadDestinationSecrets", Action: ["secretsmanager:GetSecretValue"], Resource: secretArn(`mixpanel-relay/${stage}/destinations/*`) },
      { Sid: "ReadPagesWriteLedger", Action: ["s3:GetObject", "s3:PutObject"], Resource: [sub("${CohortSnapshotBucket.Arn}/cohorts/*"), sub("${CohortSnapshotBucket.Arn}/cohort-runs/*")] },
      listSnapshots,
    ],
    BrevoForwarderRole: [
      logs("brevo-forwarder"),
      consume("ConsumeBrevo", "BrevoQueue"),
      { Sid: "RequeueUnsentRecords", Action: ["sqs:SendMessage"], Resource: [getAtt("BrevoQueue"), getAtt("BrevoDeadLetterQueue")] },
      rejected,
      { Sid: "ReadErasedIds", Action: ["s3:GetObject"], Resource: sub("${CohortSnapshotBucket.Arn}/gdpr/suppressed-ids.json") },
      { Sid: "ListSnapshots", Action: ["s3:ListBucket"], Resource: getAtt("CohortSnapshotBucket") },
      { Sid: "ReadBrevoApiKey", Action: ["secretsmanager:GetSecretValue"], Resource: secretArn(`mixpanel-relay/${stage}/destinations/*`) },
    ],
  };
  return Object.fromEntries(Object.entries(roles).map(([role, statements]) => [role, [...statements, ...traces]]));
}

/** The role's statements as CloudFormation will see them (Fn::If resolved for this stage). */
function roleStatements(template: Template, role: string, conditions: Record<string, boolean>): any[] {
  const policies: any[] = template.Resources[role]?.Properties?.Policies ?? [];
  return policies.flatMap((policy) =>
    (policy.PolicyDocument.Statement as any[]).flatMap((statement) => {
      if (statement && "Fn::If" in statement) {
        const [condition, whenTrue, whenFalse] = statement["Fn::If"];
        const chosen = conditions[condition] ? whenTrue : whenFalse;
        return chosen && !("Ref" in chosen && chosen.Ref === "AWS::NoValue") ? [chosen] : [];
      }
      return [statement];
    }),
  );
}

/** Every IAM-style policy statement anywhere in the template. */
function allPolicyStatements(template: Template): { owner: string; statement: any }[] {
  const found: { owner: string; statement: any }[] = [];
  const visit = (owner: string, node: unknown): void => {
    if (Array.isArray(node)) return node.forEach((child) => visit(owner, child));
    if (!node || typeof node !== "object") return;
    const record = node as Record<string, unknown>;
    if (Array.isArray(record.Statement)) {
      for (const statement of record.Statement) {
        if (statement && typeof statement === "object" && "Fn::If" in statement) {
          const branches = (statement as any)["Fn::If"].slice(1);
          branches.filter((b: any) => b && !b.Ref).forEach((b: any) => found.push({ owner, statement: b }));
        } else found.push({ owner, statement });
      }
    }
    Object.values(record).forEach((child) => visit(owner, child));
  };
  for (const [logicalId, resource] of Object.entries(template.Resources)) visit(logicalId, resource.Properties);
  return found;
}

const asList = (value: unknown): unknown[] => (Array.isArray(value) ? value : [value]);

function resourcesOfType(template: Template, type: string): [string, Resource][] {
  return Object.entries(template.Resources).filter(([, resource]) => resource.Type === type);
}

/** Every .ts file below a folder: the dashboard test reads which metrics the code emits. */
function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: "utf8" }).filter((name) => name.endsWith(".ts")).map((name) => join(dir, name));
}

interface Packaged {
  readonly template: Template;
  readonly dir: string;
  readonly variant: Variant;
}

const scratch = mkdtempSync(join(tmpdir(), "relay-package-"));
const oslsHome = join(repoRoot, "node_modules", ".cache", "relay-osls-home");
const packaged = new Map<string, Packaged>();

function networkIsolationPrefix(): string[] {
  const probe = spawnSync("unshare", ["-n", "true"], { stdio: "ignore" });
  return probe.status === 0 ? ["unshare", "-n"] : [];
}

/**
 * A fresh clone: the repository's files as git sees them (tracked and new, not
 * ignored: no dist/, no .serverless/), with this checkout's node_modules linked
 * in place of `npm ci`.
 */
function freshClone(target: string): void {
  const listed = spawnSync("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], { cwd: repoRoot, encoding: "utf8" });
  if (listed.status !== 0) throw new Error(`git ls-files failed: ${listed.stderr}`);
  for (const file of listed.stdout.split("\0").filter(Boolean)) {
    if (!existsSync(join(repoRoot, file))) continue; // deleted in the working tree
    mkdirSync(dirname(join(target, file)), { recursive: true });
    cpSync(join(repoRoot, file), join(target, file));
  }
  symlinkSync(join(repoRoot, "node_modules"), join(target, "node_modules"), "dir");
}

function runOsls(
  serviceDir: string,
  variant: Pick<Variant, "id" | "stage" | "params">,
  outputDir: string | undefined,
  isolation: string[],
  extraEnv: Record<string, string> = {},
): Promise<string> {
  const args = [
    ...isolation,
    process.execPath,
    oslsBin(),
    "package",
    "--stage",
    variant.stage,
    ...(outputDir ? ["--package", outputDir] : []),
    ...Object.entries(variant.params).map(([key, value]) => `--param=${key}=${value}`),
  ];
  // No AWS credentials, no profile, no region: packaging must not need them.
  // HOME only holds osls's compiled config-schema validator (~/.serverless/artifacts),
  // kept under node_modules/.cache so later runs skip the 3 s compile.
  const env = { PATH: process.env.PATH ?? "", HOME: oslsHome, CI: "1", ...extraEnv };
  return new Promise((resolvePromise, reject) => {
    const child = spawn(args[0] as string, args.slice(1), { cwd: serviceDir, env });
    let output = "";
    child.stdout.on("data", (chunk) => (output += chunk));
    child.stderr.on("data", (chunk) => (output += chunk));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolvePromise(output) : reject(new OslsFailure(`osls package (${variant.id}) exited ${code}:\n${output}`, output))));
  });
}

class OslsFailure extends Error {
  constructor(
    message: string,
    readonly output: string,
  ) {
    super(message);
  }
}

const freshDir = join(scratch, "fresh-clone");
let freshHadDist = true;
let refusal: string | undefined;

beforeAll(async () => {
  mkdirSync(oslsHome, { recursive: true });
  const isolation = networkIsolationPrefix();

  // 1. What a user does on a fresh clone: plain `osls package`, no `npm run build` first.
  freshClone(freshDir);
  freshHadDist = existsSync(join(freshDir, "dist"));
  await runOsls(freshDir, { id: "fresh-clone dev", stage: "dev", params: {} }, undefined, isolation);

  // 2. The scratch copy the variants package from: the bundles the fresh clone built.
  const serviceDir = join(scratch, "service");
  mkdirSync(serviceDir, { recursive: true });
  cpSync(join(repoRoot, "serverless.yml"), join(serviceDir, "serverless.yml"));
  cpSync(join(repoRoot, "infra/resources"), join(serviceDir, "infra/resources"), { recursive: true });
  cpSync(join(repoRoot, "infra/osls-build-plugin.cjs"), join(serviceDir, "infra/osls-build-plugin.cjs"));
  cpSync(join(repoRoot, "config"), join(serviceDir, "config"), { recursive: true });
  writeFileSync(join(serviceDir, LOOKUP_CONFIG), JSON.stringify({ ...JSON.parse(readFileSync(join(repoRoot, "config/prod.json"), "utf8")), lookup_tables: LOOKUP_TABLES }));

  // 3. Without bundles and with the build skipped, the plugin must refuse.
  const noBundles = join(scratch, "service-no-bundles");
  cpSync(serviceDir, noBundles, { recursive: true });
  const refused = runOsls(noBundles, { id: "no-bundles", stage: "dev", params: {} }, join(scratch, "out-no-bundles"), isolation, { RELAY_SKIP_BUILD: "1" }).then(
    () => undefined,
    (error: unknown) => (error instanceof OslsFailure ? error.output : String(error)),
  );

  cpSync(join(freshDir, "dist"), join(serviceDir, "dist"), { recursive: true });
  // osls writes state next to serverless.yml, so each variant packages from its own copy.
  const packageVariant = async (variant: Variant) => {
    const variantDir = join(scratch, `service-${variant.id}`);
    cpSync(serviceDir, variantDir, { recursive: true });
    const outputDir = join(scratch, `out-${variant.id}`);
    await runOsls(variantDir, variant, outputDir, isolation, { RELAY_SKIP_BUILD: "1" });
    const template = JSON.parse(readFileSync(join(outputDir, "cloudformation-template-update-stack.json"), "utf8")) as Template;
    packaged.set(variant.id, { template, dir: outputDir, variant });
  };
  // The fresh-clone run warmed osls's validator cache; the rest take about a second each.
  await Promise.all(VARIANTS.map(packageVariant));
  refusal = await refused;
}, 360_000);

afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Unzips a function package like Lambda does and runs a script against its handler, in the task root. */
function runFromZip(zip: string, fn: FunctionName, env: Record<string, string>, script: string): { status: number | null; stdout: string; stderr: string } {
  const taskRoot = join(scratch, `task-root-${fn}`);
  mkdirSync(taskRoot, { recursive: true });
  const unzip = spawnSync("unzip", ["-q", "-o", zip, "-d", taskRoot], { encoding: "utf8" });
  if (unzip.status !== 0) throw new Error(`unzip ${zip}: ${unzip.stderr}`);
  const code = `const { handler } = await import(${JSON.stringify(pathToFileURL(join(taskRoot, "dist", fn, "index.mjs")).href)});\n${script}`;
  return spawnSync(process.execPath, ["--input-type=module", "-e", code], {
    cwd: taskRoot,
    encoding: "utf8",
    timeout: 30_000,
    env: { PATH: process.env.PATH ?? "", ...env, POWERTOOLS_METRICS_DISABLED: "true" },
  });
}

describe("plain `osls package --stage dev` on a fresh clone (no `npm run build` first)", () => {
  const template = (): Template => JSON.parse(readFileSync(join(freshDir, ".serverless", "cloudformation-template-update-stack.json"), "utf8")) as Template;
  /** The function's environment as CloudFormation would set it, with stand-ins for Refs and GetAtts. */
  const lambdaEnv = (fn: FunctionName): Record<string, string> => {
    const variables = template().Resources[`${LOGICAL_PREFIX[fn]}LambdaFunction`]?.Properties.Environment.Variables as Record<string, unknown>;
    return Object.fromEntries(Object.entries(variables).map(([key, value]) => [key, typeof value === "string" ? value : `http://127.0.0.1:9/${key.toLowerCase()}`]));
  };

  it("builds the current code into every zip", () => {
    expect(freshHadDist).toBe(false);
    for (const fn of FUNCTION_NAMES) {
      const zip = join(freshDir, ".serverless", `${fn}.zip`);
      const entries = zipEntryNames(zip);
      expect(entries, fn).toContain(`dist/${fn}/index.mjs`);
      expect(entries, fn).toContain(`dist/${fn}/index.mjs.map`);
      // The modules a function imports at its first AWS call (the SDK's clients) are chunk files
      // beside index.mjs: every one the build made must be in the zip, or that call fails in Lambda.
      const chunks = readdirSync(join(freshDir, "dist", fn)).filter((file) => /^chunk-.*\.mjs$/.test(file));
      expect(chunks.length, fn).toBeGreaterThan(0);
      for (const chunk of chunks) expect(entries, fn).toContain(`dist/${fn}/${chunk}`);
      // The empty packages were 846 bytes (config/*.json only); a bundle and its map zip to
      // ~100 KB or more (the forwarder's, the smallest, ~98 KB).
      expect(statSync(zip).size, fn).toBeGreaterThan(50_000);
      const run = runFromZip(zip, fn, lambdaEnv(fn), 'if (typeof handler !== "function") throw new Error("no handler export"); console.log("HANDLER_OK");');
      expect(run.stdout + run.stderr, fn).toContain("HANDLER_OK");
      expect(run.status, fn).toBe(0);
    }
  });

  it("leaves zod's classic API out of every bundle: every schema is built with zod/mini (lib/util/zod.ts)", () => {
    // One classic-API schema anywhere in a function's imports brings ~60 KB and the classic
    // module's first-use compile into every cold start (docs/performance.md). zod registers
    // its schema classes by name, so the names survive minification.
    for (const fn of FUNCTION_NAMES) {
      const bundle = readFileSync(join(freshDir, "dist", fn, "index.mjs"), "utf8");
      expect(bundle, fn).toContain('"ZodMiniObject"');
      expect(bundle, fn).not.toContain('"ZodObject"');
    }
  });

  it("yields an intake zip whose handler answers /healthz and a forwarder zip that takes an empty batch", () => {
    const intake = runFromZip(
      join(freshDir, ".serverless", "intake.zip"),
      "intake",
      lambdaEnv("intake"),
      `const result = await handler({ version: "2.0", rawPath: "/healthz", headers: {}, requestContext: { http: { method: "GET" }, requestId: "r-1" }, isBase64Encoded: false }, { awsRequestId: "r-1", functionName: "intake", getRemainingTimeInMillis: () => 15000 });
       console.log("RESULT " + JSON.stringify(result));`,
    );
    const line = intake.stdout.split("\n").find((text) => text.startsWith("RESULT "));
    expect(line, intake.stderr).toBeDefined();
    const result = JSON.parse(line!.slice("RESULT ".length));
    expect(result.statusCode).toBe(200);
    expect(JSON.parse(result.body)).toMatchObject({ status: "ok" });

    const forwarder = runFromZip(
      join(freshDir, ".serverless", "forwarder.zip"),
      "forwarder",
      lambdaEnv("forwarder"),
      `const result = await handler({ Records: [] }, { awsRequestId: "r-2", functionName: "forwarder", getRemainingTimeInMillis: () => 90000 });
       console.log("RESULT " + JSON.stringify(result));`,
    );
    const forwarded = forwarder.stdout.split("\n").find((text) => text.startsWith("RESULT "));
    expect(forwarded, forwarder.stderr).toBe('RESULT {"batchItemFailures":[]}');
  });

  it("refuses, naming the missing bundles, when the build is skipped and dist/ is empty", () => {
    expect(refusal).toBeDefined();
    expect(refusal).toMatch(/no bundle for intake \(dist\/intake\/index\.mjs\)/);
    expect(existsSync(join(scratch, "out-no-bundles", "intake.zip"))).toBe(false);
  });
});

describe.each(VARIANTS.map((variant) => [variant.id, variant] as const))("osls package --stage %s", (id, variant) => {
  const get = (): Packaged => {
    const result = packaged.get(id);
    if (!result) throw new Error(`variant ${id} was not packaged`);
    return result;
  };
  const { stage } = variant;
  const tracing = variant.expect.tracing ?? false;
  const conditions = { HasCurrentsBucket: variant.expect.currents, HasAlarmEmail: Boolean(variant.params.alarmEmail), TracingEnabled: tracing, HasLookupSources: variant.expect.lookup === true };

  it("has every function on nodejs24.x/arm64 with its own role, handler, env and log retention", () => {
    const { template } = get();
    for (const [, fn] of resourcesOfType(template, "AWS::Lambda::Function")) {
      // Includes osls's own custom-resource function when the Currents trigger is on.
      expect(fn.Properties.Runtime).toBe("nodejs24.x");
      expect(fn.Properties.Architectures).toEqual(["arm64"]);
    }
    const knownEnv = new Set([...Object.keys(envSchema.shape), ...Object.keys(cohortSettingsSchema.shape), "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL", "NODE_OPTIONS"]);
    for (const name of FUNCTION_NAMES) {
      const fn = template.Resources[`${LOGICAL_PREFIX[name]}LambdaFunction`];
      expect(fn, name).toBeDefined();
      const props = fn?.Properties;
      expect(props.FunctionName).toBe(`mixpanel-relay-${stage}-${name}`);
      expect(props.Handler).toBe(`dist/${name}/index.handler`);
      expect(props.Role).toEqual(getAtt(ROLE_OF[name]));
      expect(props.MemorySize).toBeGreaterThanOrEqual(512);
      const env = props.Environment.Variables as Record<string, unknown>;
      expect(Object.keys(env).sort(), name).toEqual([...COMMON_ENV, ...FUNCTION_ENV[name]].sort());
      for (const key of Object.keys(env)) expect(knownEnv.has(key), `${name}: ${key} is read by lib/config/env.ts or lib/runtime/cohorts.ts`).toBe(true);
      expect(env.RELAY_STAGE).toBe(stage);
      expect(env.RELAY_CONFIG_FILE).toBe(variant.params.configFile ?? `config/${stage}.json`);
      expect(env.POWERTOOLS_SERVICE_NAME).toBe("mixpanel-relay");
      expect(env.POWERTOOLS_METRICS_NAMESPACE).toBe("MixpanelRelay");
      if ("SQS_MAX_MESSAGE_BYTES" in env) expect(env.SQS_MAX_MESSAGE_BYTES).toBe("262144");
      if ("REJECTED_PREFIX" in env) expect(env.REJECTED_PREFIX).toBe("rejected/");
      if ("MIXPANEL_SECRET_ID" in env) expect(env.MIXPANEL_SECRET_ID).toBe(`mixpanel-relay/${stage}/mixpanel`);
      if ("INTAKE_TOKEN_SECRET_ID" in env) expect(env.INTAKE_TOKEN_SECRET_ID).toBe(`mixpanel-relay/${stage}/intake-tokens`);

      const logGroup = template.Resources[`${LOGICAL_PREFIX[name]}LogGroup`];
      expect(logGroup?.Properties.LogGroupName).toBe(`/aws/lambda/mixpanel-relay-${stage}-${name}`);
      expect(logGroup?.Properties.RetentionInDays).toBe(variant.expect.logRetentionDays);
    }
    // Per-function roles only: osls's shared role would hold the union of all permissions.
    expect(template.Resources.IamRoleLambdaExecution).toBeUndefined();
    expect(template.Resources.IntakeLambdaFunction?.Properties.Timeout).toBeLessThanOrEqual(29);
  });

  it("packages each function from its bundle and the stage config files only", () => {
    const { dir } = get();
    for (const name of FUNCTION_NAMES) {
      const entries = zipEntryNames(join(dir, `${name}.zip`)).filter((entry) => !entry.endsWith("/"));
      expect(entries, name).toContain(`dist/${name}/index.mjs`);
      expect(entries, name).toContain(`config/${stage}.json`);
      for (const entry of entries) expect(entry, name).toMatch(new RegExp(`^(dist/${name}/[^/]+|config/[^/]+\\.json)$`));
      expect(entries, name).not.toContain(`dist/${name}/meta.json`);
    }
  });

  it("wires the HTTP API routes (payload 2.0), the SQS event sources and the schedule", () => {
    const { template } = get();
    const routes = resourcesOfType(template, "AWS::ApiGatewayV2::Route").map(([, route]) => route.Properties.RouteKey).sort();
    // ANY: Mixpanel's own endpoints (issue #11) take GET, POST and the CORS preflight.
    expect(routes).toEqual(["ANY /engage", "ANY /groups", "ANY /import", "ANY /track", "GET /healthz", "POST /v1/adobe/events", "POST /v1/braze/currents", "POST /v1/events", "POST /v1/groups", "POST /v1/profiles"]);
    const integrations = resourcesOfType(template, "AWS::ApiGatewayV2::Integration");
    expect(integrations).toHaveLength(1);
    expect(integrations[0]?.[1].Properties.PayloadFormatVersion).toBe("2.0");
    const stageSettings = template.Resources.HttpApiStage?.Properties;
    expect(stageSettings.AccessLogSettings.DestinationArn).toBeDefined();
    expect(stageSettings.DefaultRouteSettings.ThrottlingRateLimit).toBeGreaterThan(0);

    const mappings = resourcesOfType(template, "AWS::Lambda::EventSourceMapping").map(([, mapping]) => mapping.Properties);
    expect(mappings).toHaveLength(3);
    for (const mapping of mappings) expect(mapping.FunctionResponseTypes).toEqual(["ReportBatchItemFailures"]);
    const forwarder = mappings.find((m) => m.FunctionName["Fn::GetAtt"][0] === "ForwarderLambdaFunction");
    expect(forwarder?.EventSourceArn).toEqual(getAtt("EventsQueue"));
    expect(forwarder?.BatchSize).toBeGreaterThanOrEqual(10);
    expect(forwarder?.MaximumBatchingWindowInSeconds).toBeGreaterThan(0);
    expect(forwarder?.ScalingConfig.MaximumConcurrency).toBe(variant.expect.forwarderMaxConcurrency);
    // Mixpanel recommends 10–20 concurrent clients per project (docs/vendors/mixpanel-api.md §3).
    const importConcurrency = Number(template.Resources.ForwarderLambdaFunction?.Properties.Environment.Variables.IMPORT_CONCURRENCY);
    expect(forwarder!.ScalingConfig.MaximumConcurrency * importConcurrency).toBeLessThanOrEqual(20);
    const delivery = mappings.find((m) => m.FunctionName["Fn::GetAtt"][0] === "WebhookDashdeliveryLambdaFunction");
    expect(delivery?.EventSourceArn).toEqual(getAtt("DeliveriesQueue"));
    expect(delivery?.ScalingConfig.MaximumConcurrency).toBeGreaterThanOrEqual(2);
    const brevo = mappings.find((m) => m.FunctionName["Fn::GetAtt"][0] === "BrevoDashforwarderLambdaFunction");
    expect(brevo?.EventSourceArn).toEqual(getAtt("BrevoQueue"));
    expect(brevo?.ScalingConfig.MaximumConcurrency).toBeGreaterThanOrEqual(2);

    const cohortExport = template.Resources.CohortDashexportLambdaFunction?.Properties;
    expect(cohortExport.ReservedConcurrentExecutions).toBe(stage === "prod" ? 1 : undefined);
    expect(template.Resources.CohortDashexportLambdaEvConf?.Properties.MaximumRetryAttempts).toBe(0);

    const rules = resourcesOfType(template, "AWS::Events::Rule").map(([, rule]) => rule.Properties);
    expect(rules).toHaveLength(1);
    expect(rules[0]?.ScheduleExpression).toBe(variant.expect.schedule);
    expect(rules[0]?.Targets[0].Arn).toEqual(getAtt("CohortDashexportLambdaFunction"));

    const s3Triggers = resourcesOfType(template, "Custom::S3");
    const currentsTrigger = s3Triggers.filter(([, trigger]) => trigger.Properties.FunctionName === `mixpanel-relay-${stage}-currents-reader`);
    const lookupTriggers = s3Triggers.filter(([, trigger]) => trigger.Properties.FunctionName === `mixpanel-relay-${stage}-cohort-export`);
    expect(currentsTrigger.length + lookupTriggers.length).toBe(s3Triggers.length);
    if (variant.expect.lookup) {
      // Only the on_upload table's object, by its whole key; the scheduled table gets no trigger.
      expect(lookupTriggers).toHaveLength(1);
      const config = lookupTriggers[0]?.[1].Properties;
      expect(config.BucketName).toBe("acme-catalog");
      expect(config.BucketConfigs).toHaveLength(1);
      expect(config.BucketConfigs[0].Event).toBe("s3:ObjectCreated:*");
      expect(config.BucketConfigs[0].Rules).toEqual([{ Prefix: "catalog/stores.csv.gz" }, { Suffix: "catalog/stores.csv.gz" }]);
    } else {
      expect(lookupTriggers).toHaveLength(0);
    }
    if (variant.expect.currents) {
      expect(currentsTrigger).toHaveLength(1);
      const config = currentsTrigger[0]?.[1].Properties;
      expect(config.FunctionName).toBe(`mixpanel-relay-${stage}-currents-reader`);
      expect(config.BucketName).toBe(CURRENTS_BUCKET);
      expect(config.BucketConfigs[0].Event).toBe("s3:ObjectCreated:*");
      expect(config.BucketConfigs[0].Rules).toEqual([{ Prefix: "currents/" }, { Suffix: ".avro" }]);
    } else {
      expect(currentsTrigger).toHaveLength(0);
    }
    const asyncConfig = template.Resources.CurrentsDashreaderLambdaEvConf?.Properties;
    expect(asyncConfig.DestinationConfig.OnFailure.Destination).toEqual(getAtt("CurrentsReaderFailuresQueue"));
  });

  it("updates the envelope v2 writers only after the forwarder that reads v2", () => {
    const { template } = get();
    for (const writer of ["IntakeLambdaFunction", "CurrentsDashreaderLambdaFunction"]) {
      expect([template.Resources[writer]?.DependsOn].flat()).toContain("ForwarderLambdaFunction");
    }
  });

  it("pairs each queue with a DLQ, sizes messages at 256 KiB and sets visibility ≥ 6× the consumer timeout", () => {
    const { template } = get();
    for (const [logicalId, queue] of resourcesOfType(template, "AWS::SQS::Queue")) {
      expect(queue.Properties.MaximumMessageSize, logicalId).toBe(262144);
      expect(queue.Properties.SqsManagedSseEnabled, logicalId).toBe(true);
    }
    const pairs = [
      { queue: "EventsQueue", dlq: "EventsDeadLetterQueue", consumer: "ForwarderLambdaFunction", name: "events" },
      { queue: "DeliveriesQueue", dlq: "DeliveriesDeadLetterQueue", consumer: "WebhookDashdeliveryLambdaFunction", name: "deliveries" },
      { queue: "BrevoQueue", dlq: "BrevoDeadLetterQueue", consumer: "BrevoDashforwarderLambdaFunction", name: "brevo" },
    ];
    const mappings = resourcesOfType(template, "AWS::Lambda::EventSourceMapping").map(([, mapping]) => mapping.Properties);
    for (const pair of pairs) {
      const queue = template.Resources[pair.queue]?.Properties;
      const dlq = template.Resources[pair.dlq]?.Properties;
      expect(queue.QueueName).toBe(`mixpanel-relay-${stage}-${pair.name}`);
      expect(dlq.QueueName).toBe(`mixpanel-relay-${stage}-${pair.name}-dlq`);
      expect(queue.RedrivePolicy.deadLetterTargetArn).toEqual(getAtt(pair.dlq));
      // AWS: ≥ 5 so throttled receives alone do not dead-letter messages.
      expect(queue.RedrivePolicy.maxReceiveCount).toBeGreaterThanOrEqual(5);
      const timeout = template.Resources[pair.consumer]?.Properties.Timeout as number;
      const window = (mappings.find((m) => m.EventSourceArn["Fn::GetAtt"][0] === pair.queue)?.MaximumBatchingWindowInSeconds as number | undefined) ?? 0;
      expect(queue.VisibilityTimeout, pair.queue).toBeGreaterThanOrEqual(6 * timeout + window);
      // A message's age counts from its first enqueue: the DLQ must keep it longer.
      expect(dlq.MessageRetentionPeriod).toBeGreaterThan(queue.MessageRetentionPeriod);
    }
  });

  it("has the alarms on queues, DLQs, rejected-record and intake 5xx rates, 401 spikes, API 5xx, cohort health and function errors", () => {
    const { template } = get();
    const alarms = Object.fromEntries(resourcesOfType(template, "AWS::CloudWatch::Alarm").map(([id, alarm]) => [id, alarm.Properties]));
    const relay = (metric: string) => ({ namespace: "MixpanelRelay", metric, dimension: "mixpanel-relay" });
    const sqs = (metric: string, queue: string) => ({ namespace: "AWS/SQS", metric, dimension: getAtt(queue, "QueueName") });
    const lambda = (metric: string, fn: FunctionName) => ({ namespace: "AWS/Lambda", metric, dimension: `mixpanel-relay-${stage}-${fn}` });
    /** One metric alarms. */
    const single: Record<string, { namespace: string; metric: string; dimension: unknown }> = {
      EventsDeadLetterQueueDepthAlarm: sqs("ApproximateNumberOfMessagesVisible", "EventsDeadLetterQueue"),
      DeliveriesDeadLetterQueueDepthAlarm: sqs("ApproximateNumberOfMessagesVisible", "DeliveriesDeadLetterQueue"),
      CurrentsReaderFailuresAlarm: sqs("ApproximateNumberOfMessagesVisible", "CurrentsReaderFailuresQueue"),
      EventsQueueOldestMessageAgeAlarm: sqs("ApproximateAgeOfOldestMessage", "EventsQueue"),
      DeliveriesQueueOldestMessageAgeAlarm: sqs("ApproximateAgeOfOldestMessage", "DeliveriesQueue"),
      MixpanelCredentialsAlarm: relay("RecordsBlockedByConfig"),
      IntakeUnauthorizedAlarm: relay("IntakeUnauthorized"),
      WebhookDeliveryFailuresAlarm: relay("CohortPagesFailed"),
      ForwarderErrorsAlarm: lambda("Errors", "forwarder"),
      ForwarderThrottlesAlarm: lambda("Throttles", "forwarder"),
      IntakeErrorsAlarm: lambda("Errors", "intake"),
      CohortExportErrorsAlarm: lambda("Errors", "cohort-export"),
      WebhookDeliveryErrorsAlarm: lambda("Errors", "webhook-delivery"),
      BrevoDeadLetterQueueDepthAlarm: sqs("ApproximateNumberOfMessagesVisible", "BrevoDeadLetterQueue"),
      BrevoCredentialsAlarm: relay("BrevoRecordsBlockedByConfig"),
      BrevoForwarderErrorsAlarm: lambda("Errors", "brevo-forwarder"),
    };
    /** Rate alarms: a share of two metrics, only past a minimum volume. */
    const rates: Record<string, { part: string; whole: string[]; namespace: string }> = {
      EventsRejectedAlarm: { part: "EventsRejected", whole: ["EventsAccepted", "EventsRejected"], namespace: "MixpanelRelay" },
      Intake5xxRateAlarm: { part: "Intake5xx", whole: ["IntakeRequests"], namespace: "MixpanelRelay" },
      ApiGateway5xxRateAlarm: { part: "5xx", whole: ["Count"], namespace: "AWS/ApiGateway" },
    };
    expect(Object.keys(alarms).sort()).toEqual([...Object.keys(single), ...Object.keys(rates), "CohortSyncUnhealthyAlarm"].sort());
    for (const [id, alarm] of Object.entries(alarms)) {
      expect(alarm.AlarmActions, id).toEqual([{ Ref: "AlarmTopic" }]);
      expect(alarm.TreatMissingData, id).toBe("notBreaching");
      expect(alarm.AlarmName, id).toMatch(new RegExp(`^mixpanel-relay-${stage}-`));
      expect(typeof alarm.Threshold, id).toBe("number");
    }
    // EMF metrics carry service and stage (lib/observability/telemetry.ts); both must match.
    const relayDimensions = [
      { Name: "service", Value: "mixpanel-relay" },
      { Name: "stage", Value: stage },
    ];
    for (const [id, want] of Object.entries(single)) {
      const alarm = alarms[id];
      expect(alarm.Namespace, id).toBe(want.namespace);
      expect(alarm.MetricName, id).toBe(want.metric);
      expect(alarm.Dimensions[0].Value, id).toEqual(want.dimension);
      if (want.namespace === "MixpanelRelay") expect(alarm.Dimensions, id).toEqual(relayDimensions);
    }
    for (const [id, want] of Object.entries(rates)) {
      const metrics = alarms[id].Metrics as any[];
      const returned = metrics.filter((m) => m.ReturnData);
      expect(returned, id).toHaveLength(1);
      // A percentage, gated on volume so one odd record or request cannot fire it.
      expect(returned[0].Expression, id).toMatch(/^IF\(.+>= \d+, 100 \* .+ \/ .+, 0\)$/);
      const stats = metrics.filter((m) => m.MetricStat).map((m) => m.MetricStat);
      expect(stats.map((stat) => stat.Metric.MetricName).sort(), id).toEqual([...new Set([want.part, ...want.whole])].sort());
      for (const stat of stats) {
        expect(stat.Metric.Namespace, id).toBe(want.namespace);
        expect(stat.Stat, id).toBe("Sum");
        if (want.namespace === "MixpanelRelay") expect(stat.Metric.Dimensions, id).toEqual(relayDimensions);
        else expect(stat.Metric.Dimensions, id).toEqual([{ Name: "ApiId", Value: { Ref: "HttpApi" } }, { Name: "Stage", Value: "$default" }]);
      }
      expect(alarms[id].Threshold, id).toBeGreaterThan(0);
      expect(alarms[id].Threshold, id).toBeLessThan(100);
    }
    // Per stage: prod is stricter than dev.
    expect(alarms.EventsRejectedAlarm.Threshold).toBe(stage === "prod" ? 1 : 20);
    expect(alarms.Intake5xxRateAlarm.Threshold).toBe(stage === "prod" ? 2 : 20);
    expect(alarms.IntakeUnauthorizedAlarm.Threshold).toBe(stage === "prod" ? 10 : 50);
    expect(alarms.CohortSyncUnhealthyAlarm.Metrics[0].Expression).toBe(
      `SELECT SUM(CohortSyncUnhealthy) FROM SCHEMA(MixpanelRelay, service, stage, syncId) WHERE stage = '${stage}'`,
    );
    const subscription = template.Resources.AlarmEmailSubscription;
    expect(subscription?.Condition).toBe("HasAlarmEmail");
    expect(subscription?.Properties.Endpoint).toBe(variant.params.alarmEmail ?? "");
  });

  it("encrypts the alarm topic with a key CloudWatch may use, and allows only TLS on it", () => {
    const { template } = get();
    const topic = template.Resources.AlarmTopic?.Properties;
    // Not alias/aws/sns: CloudWatch alarms cannot publish to a topic under the AWS-managed key.
    expect(topic.KmsMasterKeyId).toEqual({ Ref: "AlarmTopicKey" });
    const key = template.Resources.AlarmTopicKey?.Properties;
    expect(key.EnableKeyRotation).toBe(true);
    const keyStatements = key.KeyPolicy.Statement as any[];
    expect(keyStatements.map((s) => s.Principal)).toEqual([
      { AWS: sub("arn:${AWS::Partition}:iam::${AWS::AccountId}:root") },
      { Service: "cloudwatch.amazonaws.com" },
    ]);
    expect(keyStatements[1].Action).toEqual(["kms:Decrypt", "kms:GenerateDataKey*"]);
    const policies = resourcesOfType(template, "AWS::SNS::TopicPolicy").map(([, policy]) => policy.Properties);
    expect(policies).toHaveLength(1);
    expect(policies[0].Topics).toEqual([{ Ref: "AlarmTopic" }]);
    const [publish, deny] = policies[0].PolicyDocument.Statement as any[];
    expect(publish).toMatchObject({ Effect: "Allow", Principal: { Service: "cloudwatch.amazonaws.com" }, Action: "sns:Publish" });
    expect(deny).toMatchObject({ Effect: "Deny", Principal: "*", Condition: { Bool: { "aws:SecureTransport": "false" } } });
  });

  it("keeps the dead-letter queues and their messages when the stack is removed or a queue replaced", () => {
    const { template } = get();
    for (const id of ["EventsDeadLetterQueue", "DeliveriesDeadLetterQueue", "BrevoDeadLetterQueue", "CurrentsReaderFailuresQueue"]) {
      expect(template.Resources[id]?.DeletionPolicy, id).toBe("Retain");
      expect((template.Resources[id] as { UpdateReplacePolicy?: string }).UpdateReplacePolicy, id).toBe("Retain");
    }
  });

  it("has a dashboard whose widgets read metrics the code emits and every queue and DLQ of the stage, its URL an output", () => {
    const { template } = get();
    const dashboard = template.Resources.OperationsDashboard;
    expect(dashboard?.Type).toBe("AWS::CloudWatch::Dashboard");
    expect(dashboard?.Properties.DashboardName).toBe(`mixpanel-relay-${stage}`);
    const sub = dashboard?.Properties.DashboardBody["Fn::Sub"];
    expect(typeof sub).toBe("string");
    // CloudFormation substitutes ${Resource.Attr} and ${AWS::Region}; the rest must already be JSON.
    const references = [...(sub as string).matchAll(/\$\{([^}]+)\}/g)].map((match) => match[1] as string);
    for (const reference of references) {
      const [logicalId] = reference.split(".");
      if (logicalId?.startsWith("AWS::")) continue;
      expect(template.Resources[logicalId as string], `dashboard references ${reference}`).toBeDefined();
    }
    const body = JSON.parse((sub as string).replace(/\$\{[^}]+\}/g, "X")) as { widgets: { type: string; properties: { metrics?: unknown[][] } }[] };
    const emitted = new Set<string>();
    for (const file of sourceFiles(join(repoRoot, "lib")).concat(sourceFiles(join(repoRoot, "functions")))) {
      for (const match of readFileSync(file, "utf8").matchAll(/(?:\b(?:count|metric|syncMetric)\(\s*|_METRIC = )"([A-Za-z0-9]+)"/g)) emitted.add(match[1] as string);
    }
    // A row's "." repeats the row above's value in that position (CloudWatch's dashboard shorthand).
    const relayMetrics = body.widgets.flatMap((widget) => {
      let namespace = "";
      return (widget.properties.metrics ?? []).flatMap((row) => {
        if (typeof row[0] !== "string" || row[0] === "...") return [];
        if (row[0] !== ".") namespace = row[0];
        return namespace === "MixpanelRelay" ? [row[1] as string] : [];
      });
    });
    expect(relayMetrics.length).toBeGreaterThan(10);
    for (const name of relayMetrics) expect(emitted.has(name), `${name} is emitted by lib/ or functions/`).toBe(true);
    for (const queue of ["EventsQueue", "DeliveriesQueue", "BrevoQueue", "EventsDeadLetterQueue", "DeliveriesDeadLetterQueue", "BrevoDeadLetterQueue", "CurrentsReaderFailuresQueue"]) {
      expect(references, queue).toContain(`${queue}.QueueName`);
    }
    expect(JSON.stringify(template.Outputs?.DashboardUrl)).toContain("OperationsDashboard");
  });

  it("turns X-Ray tracing on only where the stage asks for it", () => {
    const { template } = get();
    for (const name of FUNCTION_NAMES) {
      const config = template.Resources[`${LOGICAL_PREFIX[name]}LambdaFunction`]?.Properties.TracingConfig;
      expect(config, name).toEqual(tracing ? { Mode: "Active" } : undefined);
    }
    // The param is substituted before CloudFormation sees it: a YAML boolean or a --param string.
    const [value, wanted] = (template.Conditions?.TracingEnabled as { "Fn::Equals": unknown[] })["Fn::Equals"];
    expect([String(value), wanted]).toEqual([String(tracing), "true"]);
  });

  it("gives each function exactly its own IAM statements", () => {
    const { template } = get();
    const expected = expectedStatements(stage, variant.expect.currents, tracing, variant.expect.lookup === true);
    for (const [role, statements] of Object.entries(expected)) {
      const actual = roleStatements(template, role, conditions);
      expect(actual.every((statement) => statement.Effect === "Allow"), role).toBe(true);
      const normalise = (list: { Sid: string; Action: unknown; Resource: unknown }[]) =>
        list.map((s) => ({ Sid: s.Sid, Action: (asList(s.Action) as string[]).sort(), Resource: s.Resource })).sort((a, b) => a.Sid.localeCompare(b.Sid));
      expect(normalise(actual), role).toEqual(normalise(statements));
      const trust = template.Resources[role]?.Properties.AssumeRolePolicyDocument.Statement;
      expect(trust, role).toEqual([{ Effect: "Allow", Principal: { Service: "lambda.amazonaws.com" }, Action: "sts:AssumeRole" }]);
      expect(template.Resources[role]?.Properties.ManagedPolicyArns, role).toBeUndefined();
    }
  });

  it("has no wildcard resource or action in any Allow statement", () => {
    const { template } = get();
    const statements = allPolicyStatements(template);
    expect(statements.length).toBeGreaterThan(20);
    for (const { owner, statement } of statements) {
      const where = `${owner} ${statement.Sid ?? ""}`;
      if (statement.Effect === "Deny") continue; // TLS-only bucket/queue/topic policies: Principal "*" on purpose.
      // A key policy's Resource "*" means the key itself; its statements are checked in the alarm test.
      if (template.Resources[owner]?.Type === "AWS::KMS::Key") continue;
      // X-Ray has no resource-level permissions; only these two actions, and only with params.tracing.
      if (statement.Sid === "SendTraces") {
        expect(asList(statement.Action).sort(), where).toEqual(["xray:PutTelemetryRecords", "xray:PutTraceSegments"]);
        continue;
      }
      if (statement.Resource === undefined) {
        // A trust policy: only Lambda may assume the role.
        expect(statement.Principal, where).toEqual({ Service: expect.anything() });
        expect(asList(statement.Action), where).toEqual(["sts:AssumeRole"]);
        continue;
      }
      for (const resource of asList(statement.Resource)) {
        expect(resource, where).not.toBe("*");
        const text = JSON.stringify(resource);
        expect(text, where).not.toMatch(/(function|secret|log-group):\*"/);
      }
      for (const action of asList(statement.Action)) expect(String(action), where).not.toMatch(/^\*$|:\*$/);
    }
  });

  it("contains no secret values, only secret names", () => {
    const { template, dir } = get();
    const texts = [JSON.stringify(template), ...readdirSync(join(repoRoot, "config")).map((file) => readFileSync(join(repoRoot, "config", file), "utf8"))];
    const forbidden = [
      /xkeysib-/, // Brevo API keys
      /AKIA[0-9A-Z]{16}/, // AWS access keys
      /"SecretString"/,
      /"GenerateSecretString"/,
      /service_account_secret"\s*:\s*"/,
      /project_token"\s*:\s*"/,
      /Bearer [A-Za-z0-9]/,
      /-----BEGIN [A-Z ]*PRIVATE KEY-----/,
    ];
    for (const text of texts) for (const pattern of forbidden) expect(text).not.toMatch(pattern);
    expect(resourcesOfType(template, "AWS::SecretsManager::Secret")).toHaveLength(0);
    // The local-only credentials the functions fall back to must never be set in AWS.
    for (const [, fn] of resourcesOfType(template, "AWS::Lambda::Function")) {
      const env = Object.keys(fn.Properties.Environment?.Variables ?? {});
      for (const local of ["INTAKE_TOKEN", "MIXPANEL_PROJECT_TOKEN", "MIXPANEL_SERVICE_ACCOUNT_SECRET", "MIXPANEL_SERVICE_ACCOUNT_USERNAME", "AWS_ENDPOINT_URL"]) {
        expect(env).not.toContain(local);
      }
    }
    expect(statSync(dir).isDirectory()).toBe(true);
  });

  it("encrypts every bucket, blocks public access, enforces TLS and expires data by lifecycle", () => {
    const { template } = get();
    const buckets = resourcesOfType(template, "AWS::S3::Bucket");
    expect(buckets.map(([id]) => id).sort()).toEqual(["CohortSnapshotBucket", "RejectedEventsBucket", "ServerlessDeploymentBucket"]);
    for (const [id, bucket] of buckets) {
      const rule = bucket.Properties.BucketEncryption.ServerSideEncryptionConfiguration[0].ServerSideEncryptionByDefault;
      expect(["AES256", "aws:kms"], id).toContain(rule.SSEAlgorithm);
      expect(bucket.Properties.PublicAccessBlockConfiguration, id).toEqual({
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      });
    }
    for (const id of ["RejectedEventsBucket", "CohortSnapshotBucket"]) {
      const props = template.Resources[id]?.Properties;
      expect(props.LifecycleConfiguration.Rules.length, id).toBeGreaterThan(0);
      expect(props.OwnershipControls.Rules[0].ObjectOwnership, id).toBe("BucketOwnerEnforced");
      expect(template.Resources[id]?.DeletionPolicy, id).toBe(stage === "prod" ? "Retain" : "Delete");
      const policy = Object.values(template.Resources).find((r) => r.Type === "AWS::S3::BucketPolicy" && r.Properties.Bucket.Ref === id);
      expect(policy?.Properties.PolicyDocument.Statement[0].Condition, id).toEqual({ Bool: { "aws:SecureTransport": "false" } });
    }
    const rejectedRules = template.Resources.RejectedEventsBucket?.Properties.LifecycleConfiguration.Rules as any[];
    expect(rejectedRules.find((r) => r.Prefix === "rejected/")?.ExpirationInDays).toBeGreaterThan(0);
    expect(template.Resources.CohortSnapshotBucket?.Properties.VersioningConfiguration.Status).toBe("Enabled");
    const cohortRules = template.Resources.CohortSnapshotBucket?.Properties.LifecycleConfiguration.Rules as any[];
    expect(cohortRules.find((r) => r.Prefix === "cohort-runs/")?.ExpirationInDays).toBe(7);
    // The live snapshots and state under cohorts/ must never expire by age.
    expect(cohortRules.some((r) => typeof r.Prefix === "string" && "cohorts/".startsWith(r.Prefix) && r.ExpirationInDays)).toBe(false);
  });
});

describe("stage config files", () => {
  it("name destination secrets only under the prefix webhook-delivery may read", () => {
    for (const file of readdirSync(join(repoRoot, "config")).filter((name) => name.endsWith(".json"))) {
      const stage = file.replace(/\.json$/, "");
      const names: string[] = [];
      const visit = (node: unknown, key = ""): void => {
        if (Array.isArray(node)) node.forEach((child) => visit(child));
        else if (node && typeof node === "object") Object.entries(node).forEach(([k, v]) => visit(v, k));
        else if (typeof node === "string" && key.endsWith("_secret")) names.push(node);
      };
      visit(JSON.parse(readFileSync(join(repoRoot, "config", file), "utf8")));
      if (stage === "local") continue; // the local stack serves secrets itself
      for (const name of names) expect(name, file).toMatch(new RegExp(`^mixpanel-relay/${stage}/destinations/`));
    }
  });
});
