/**
 * `npm run gdpr:delete -- --stage <stage> --distinct-id <id> [--distinct-id <id2>] [--distinct-ids-file f]
 *    [--email <address>]… [--phone <number>]… [--compliance gdpr|ccpa] [--suppress-days N] [--bucket B] [--region R] [--endpoint URL] [--config file]`
 * `npm run gdpr:status -- --stage <stage> [--bucket B] [--region R] [--endpoint URL]`
 * `npm run gdpr:cancel -- --stage <stage> --task <task id> [--bucket B] [--region R] [--endpoint URL]`
 *
 * Erasure across the relay's destinations (lib/gdpr/deletion.ts): files a deletion task with
 * Mixpanel's data-deletion API (≤ 1999 ids per task, 1 request/s), deletes the Brevo contacts
 * (when the stage config has a brevo block) by every identifier the relay may have used for the
 * person: the distinct ids as ext_id (and as email/phone when the connector takes those from the
 * distinct id), the --email and --phone values, and the email and number Brevo holds for a contact
 * found by ext_id; each identifier's outcome is reported. It writes an audit record with SHA-256 digests of
 * the ids (never the ids) to the stage's snapshot bucket under gdpr/. `gdpr:status` polls the
 * tasks not yet final and prints each request's progress.
 *
 * Credentials: MIXPANEL_GDPR_TOKEN (the personal OAuth token Mixpanel issues for this API) and
 * MIXPANEL_PROJECT_TOKEN, else the Secrets Manager secret `mixpanel-relay/<stage>/mixpanel-gdpr`
 * (`{"oauth_token", "project_token"}`, or --gdpr-secret). Brevo: BREVO_API_KEY, else the secret
 * named by brevo.api_key_secret. MIXPANEL_GDPR_URL and BREVO_API_URL override the hosts
 * (the local stack's sandboxes).
 *
 * The ids are added to the erased-ids list (gdpr/suppressed-ids.json, digests only) first, so the
 * edges drop whatever senders still send for them (code `erased`) and the Brevo forwarder does not
 * create the contact again: forever, or for `--suppress-days N` days.
 *
 * `gdpr:cancel` cancels a Mixpanel task while Mixpanel still allows it (PENDING or STAGING) and marks
 * it REVOKED in its audit record. The ids stay on the erased-ids list and Brevo contacts already
 * deleted stay deleted: cancelling only stops Mixpanel's side.
 */
import { createS3Client } from "./aws/sdk-clients.js";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { GetObjectCommand, ListBucketsCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import * as z from "zod";
import type { BrevoClient } from "../lib/brevo/client.js";
import { createBrevoClientFor } from "../lib/runtime/brevo-forwarder.js";
import { loadStageConfig, stageConfigPath } from "../lib/config/stage.js";
import { realRetryDeps } from "../lib/http/retry.js";
import {
  type AuditRecord,
  GDPR_BASES,
  GDPR_PREFIX,
  auditRecordSchema,
  complianceSchema,
  createGdprClient,
  gdprKey,
  withCancelledTask,
  overallStatus,
  refreshStatus,
  runDeletion,
} from "../lib/gdpr/deletion.js";
import { SUPPRESSION_KEY, addSuppressedIds } from "../lib/privacy/suppression.js";
import { createSecretReader, type SecretReader } from "../lib/secrets/secrets.js";
import { UsageError, awsTargetOptions, gdprOperatorEnv, parseArgs, resolveAwsTarget } from "./cli-args.js";
import { SERVICE_NAME } from "./stack-layout.js";
import { parseJsonWith } from "../lib/util/json.js";

const USAGE = [
  "usage: npm run gdpr:delete -- --stage <stage> --distinct-id <id> [--distinct-ids-file f] [--email a@b.c] [--phone +33…] [--compliance gdpr|ccpa] [--bucket B] [--region R] [--endpoint URL]",
  "       npm run gdpr:status -- --stage <stage> [--bucket B] [--region R] [--endpoint URL]",
  "       npm run gdpr:cancel -- --stage <stage> --task <task id> [--bucket B] [--region R] [--endpoint URL]",
  "  --suppress-days N: drop the ids' records at the edges for N days instead of forever",
].join("\n");

const DAY_MS = 86_400_000;

/** `--suppress-days`: a whole number of days ≥ 1, or absent (forever). */
export function suppressionExpiry(value: string | undefined, nowMs: number): number | undefined {
  if (value === undefined) return undefined;
  if (!/^[1-9][0-9]{0,5}$/.test(value.trim())) throw new UsageError(`--suppress-days must be a whole number of days ≥ 1, got "${value}"`);
  return nowMs + Number(value.trim()) * DAY_MS;
}

async function eachAudit(s3: S3Client, bucket: string, visit: (key: string, record: AuditRecord) => Promise<void>): Promise<void> {
  let token: string | undefined;
  do {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: GDPR_PREFIX, ContinuationToken: token }));
    for (const object of page.Contents ?? []) {
      const record = object.Key ? await readAudit(s3, bucket, object.Key) : undefined;
      if (record && object.Key) await visit(object.Key, record);
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
}

const gdprSecretSchema = z.object({ oauth_token: z.string().min(1), project_token: z.string().min(1) });

export async function findSnapshotBucket(s3: S3Client, stage: string): Promise<string> {
  const prefix = `${SERVICE_NAME}-${stage}-snapshots`;
  const listed = await s3.send(new ListBucketsCommand({}));
  const names = (listed.Buckets ?? []).map((bucket) => bucket.Name ?? "").filter((name) => name === prefix || name.startsWith(`${prefix}-`));
  if (names.length !== 1) throw new UsageError(`expected one bucket named ${prefix}-<account>, found ${names.length === 0 ? "none" : names.join(", ")}: pass --bucket`);
  return names[0] ?? "";
}

async function readAudit(s3: S3Client, bucket: string, key: string): Promise<AuditRecord | undefined> {
  const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const parsed = parseJsonWith(auditRecordSchema, (await got.Body?.transformToString()) ?? "");
  return parsed.success ? parsed.data : undefined;
}

async function writeAudit(s3: S3Client, bucket: string, record: AuditRecord): Promise<string> {
  const key = gdprKey(record);
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: JSON.stringify(record, null, 2), ContentType: "application/json" }));
  return key;
}

const pause = () => new Promise<void>((done) => setTimeout(done, 1100));

export async function main(argv: readonly string[], env: NodeJS.ProcessEnv = process.env, log: (line: string) => void = console.log): Promise<AuditRecord[] | undefined> {
  const [command, ...rest] = argv;
  if (command !== "delete" && command !== "status" && command !== "cancel") throw new UsageError(`unknown command ${command ?? "(none)"}`);
  const { values } = parseArgs({
    args: rest,
    options: {
      ...awsTargetOptions,
      "distinct-id": { type: "string", multiple: true },
      "distinct-ids-file": { type: "string" },
      email: { type: "string", multiple: true },
      phone: { type: "string", multiple: true },
      compliance: { type: "string" },
      "suppress-days": { type: "string" },
      task: { type: "string" },
      bucket: { type: "string" },
      config: { type: "string" },
      "gdpr-secret": { type: "string" },
    },
    strict: true,
  });
  if (values.help) {
    log(USAGE);
    return undefined;
  }
  const target = resolveAwsTarget(values, env);
  env = gdprOperatorEnv(target, env);
  const config = loadStageConfig(values.config ?? stageConfigPath(target.stage), target.stage);
  const s3 = createS3Client(target.region, target.endpoint);
  const bucket = values.bucket ?? (await findSnapshotBucket(s3, target.stage));
  const secrets: SecretReader = createSecretReader({
    region: target.region,
    ttlSeconds: 300,
    ...(env.SECRETS_ENDPOINT_URL ? { endpoint: env.SECRETS_ENDPOINT_URL } : {}),
  });
  const gdprCredentials = async () =>
    env.MIXPANEL_GDPR_TOKEN && env.MIXPANEL_PROJECT_TOKEN
      ? { oauth_token: env.MIXPANEL_GDPR_TOKEN, project_token: env.MIXPANEL_PROJECT_TOKEN }
      : secrets.getJson(values["gdpr-secret"] ?? `${SERVICE_NAME}/${target.stage}/mixpanel-gdpr`, gdprSecretSchema);
  const credentials = await gdprCredentials();
  const gdpr = createGdprClient({
    fetch: globalThis.fetch,
    baseUrl: env.MIXPANEL_GDPR_URL ?? GDPR_BASES[config.residency],
    projectToken: credentials.project_token,
    oauthToken: credentials.oauth_token,
    timeoutMs: 15_000,
    retryDeps: realRetryDeps(() => 120_000),
    now: Date.now,
  });

  if (command === "cancel") {
    const taskId = values.task?.trim();
    if (!taskId) throw new UsageError("pass --task <task id> (gdpr:status lists them)");
    const outcome = await gdpr.cancelTask(taskId);
    const records: AuditRecord[] = [];
    if (outcome === "cancelled") {
      await eachAudit(s3, bucket, async (_key, record) => {
        if (!record.mixpanel.some((task) => task.taskId === taskId)) return;
        const updated = withCancelledTask(record, taskId, () => new Date());
        await writeAudit(s3, bucket, updated);
        records.push(updated);
      });
    }
    log(
      outcome === "cancelled"
        ? `Mixpanel task ${taskId} cancelled${records.length > 0 ? ` (request ${records.map((record) => record.requestId).join(", ")} updated)` : " (no audit record names it)"}; the ids stay on the erased-ids list`
        : outcome === "too_late"
          ? `Mixpanel task ${taskId} can no longer be cancelled (the deletion has started or finished)`
          : `Mixpanel knows no task ${taskId}`,
    );
    if (outcome !== "cancelled") throw new Error(`task ${taskId} not cancelled`);
    return records;
  }

  if (command === "status") {
    const records: AuditRecord[] = [];
    let token: string | undefined;
    do {
      const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: GDPR_PREFIX, ContinuationToken: token }));
      for (const object of page.Contents ?? []) {
        const record = object.Key ? await readAudit(s3, bucket, object.Key) : undefined;
        if (!record) continue;
        const updated = await refreshStatus(record, gdpr, () => new Date(), pause);
        await writeAudit(s3, bucket, updated);
        records.push(updated);
        log(
          `${updated.requestId}  ${updated.createdAt}  ${updated.compliance}  ${updated.idDigests.length} id(s)  ${overallStatus(updated)}  ` +
            `mixpanel: ${updated.mixpanel.map((task) => (task.status === "NOT_FOUND" ? "NOT_FOUND (nothing to delete)" : task.status)).join(",")}  brevo: ${updated.brevo.skipped ? "not configured" : `${updated.brevo.deleted} deleted, ${updated.brevo.absent} absent, ${updated.brevo.failed} failed`}`,
        );
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    if (records.length === 0) log(`no GDPR requests under s3://${bucket}/${GDPR_PREFIX}`);
    return records;
  }

  const ids = [...(values["distinct-id"] ?? [])];
  if (values["distinct-ids-file"]) ids.push(...readFileSync(values["distinct-ids-file"], "utf8").split(/\r?\n/));
  if (ids.every((id) => id.trim() === "")) throw new UsageError("pass --distinct-id or --distinct-ids-file");
  const compliance = complianceSchema.safeParse((values.compliance ?? "gdpr").toUpperCase());
  const expiresAtMs = suppressionExpiry(values["suppress-days"], Date.now());
  if (!compliance.success) throw new UsageError(`--compliance must be gdpr or ccpa, got "${values.compliance}"`);

  let brevo: BrevoClient | undefined;
  const brevoConfig = config.brevo;
  if (brevoConfig) {
    brevo = createBrevoClientFor({
      config: brevoConfig,
      stage: target.stage,
      ...(env.BREVO_API_KEY ? { apiKey: env.BREVO_API_KEY } : {}),
      ...(env.BREVO_API_URL ? { apiUrl: env.BREVO_API_URL } : {}),
      secrets,
      timeoutMs: 15_000,
      remainingMs: () => 120_000,
    });
  }
  // Before anything is deleted: the Brevo forwarder stops sending these ids (lib/privacy/suppression.ts).
  const cleanIds = ids.map((id) => id.trim()).filter((id) => id !== "");
  const emails = (values.email ?? []).map((email) => email.trim()).filter((email) => email !== "");
  const phones = (values.phone ?? []).map((phone) => phone.trim()).filter((phone) => phone !== "");
  // Emails twice (as given and lower-cased): Brevo matches emails without regard to case.
  const suppression = { expiresAtMs };
  const listed = await addSuppressedIds(s3, bucket, [...cleanIds, ...emails, ...emails.map((email) => email.toLowerCase()), ...phones], suppression);
  log(
    `erased-ids list s3://${bucket}/${SUPPRESSION_KEY}: ${listed} id(s); these suppressed ${expiresAtMs === undefined ? "forever" : `until ${new Date(expiresAtMs).toISOString()}`}`,
  );
  const record = await runDeletion(
    cleanIds,
    compliance.data,
    {
      gdpr,
      brevo,
      ...(brevoConfig ? { brevoIdentity: brevoConfig.identifiers } : {}),
      onDerivedIdentifiers: async (found) => {
        await addSuppressedIds(s3, bucket, [...found, ...found.map((value) => value.toLowerCase())], suppression);
      },
      stage: target.stage,
      now: () => new Date(),
      pause,
    },
    { emails, phones },
  );
  const key = await writeAudit(s3, bucket, record);
  log(
    `GDPR request ${record.requestId}: ${record.idDigests.length} id(s); mixpanel task(s) ${record.mixpanel.map((task) => `${task.taskId ?? "-"} ${task.status}`).join(", ")}; ` +
      `brevo ${record.brevo.skipped ? "not configured" : `${record.brevo.deleted} deleted, ${record.brevo.absent} absent, ${record.brevo.failed} failed`}; audit s3://${bucket}/${key}`,
  );
  for (const line of record.brevo.identifiers ?? []) {
    log(`  brevo ${line.type} ${line.digest.slice(0, 12)}… (${line.source === "request" ? "from the request" : "read from the contact"}): ${line.outcome}${line.error ? ` (${line.error})` : ""}`);
  }
  return [record];
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(error instanceof UsageError ? `${error.message}\n${USAGE}` : `gdpr failed: ${error instanceof Error ? error.message : String(error)}`);
      process.exit(error instanceof UsageError ? 2 : 1);
    },
  );
}
