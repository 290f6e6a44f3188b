/**
 * `npm run lookup:list -- --stage <stage> [--region R] [--endpoint URL]`
 * `npm run lookup:replace -- --stage <stage> --table <table_id> --file <csv[.gz]> [--dry-run] [--bucket B] [--config file]`
 *
 * Mixpanel lookup tables (lib/lookup/, docs/operations.md "Lookup tables"): `list` shows the
 * project's tables (`GET /lookup-tables`); `replace` checks a local CSV the way the scheduled runs do
 * (RFC 4180, ≥ 2 columns, unique non-empty headers, a unique non-empty key column, ≤ 100 MB,
 * < 5 M rows; a refusal names the row and column), with a progress line, then replaces the table
 * within the same 24-hour replace budget the functions keep in the stage's snapshot bucket, and
 * records the file's hash so the next scheduled run of an unchanged file makes no call.
 * `--dry-run` checks and makes no call.
 *
 * Credentials: MIXPANEL_PROJECT_ID + MIXPANEL_SERVICE_ACCOUNT_USERNAME + MIXPANEL_SERVICE_ACCOUNT_SECRET,
 * else the stage's secret `mixpanel-relay/<stage>/mixpanel`. MIXPANEL_API_URL overrides the
 * residency host; `--stage local` uses the running `npm start` sandbox.
 */
import { createReadStream } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { createS3Client } from "./aws/sdk-clients.js";
import { loadStageConfig, stageConfigPath } from "../lib/config/stage.js";
import { readEnv } from "../lib/config/env.js";
import { mixpanelCredentialsSource } from "../lib/mixpanel/credentials.js";
import { ingestionBaseUrl } from "../lib/mixpanel/hosts.js";
import { createLookupTablesClient, type LookupTablesClient } from "../lib/lookup/client.js";
import { refreshLookupTable } from "../lib/lookup/refresh.js";
import { createLookupStore } from "../lib/lookup/store.js";
import { createSecretReader } from "../lib/secrets/secrets.js";
import { readLookupSettings } from "../lib/runtime/lookup.js";
import { UsageError, awsTargetOptions, mixpanelOperatorEnv, parseArgs, resolveAwsTarget } from "./cli-args.js";
import { findSnapshotBucket } from "./gdpr.js";
import { createProgress } from "./progress.js";

const USAGE = [
  "usage: npm run lookup:list -- --stage <stage> [--region R] [--endpoint URL]",
  "       npm run lookup:replace -- --stage <stage> --table <table_id> --file <csv> [--dry-run] [--bucket B] [--config file]",
].join("\n");

export async function main(argv: readonly string[], env: NodeJS.ProcessEnv = process.env, log: (line: string) => void = console.log): Promise<unknown> {
  const [command, ...rest] = argv;
  if (command !== "list" && command !== "replace") throw new UsageError(`unknown command ${command ?? "(none)"}`);
  const { values } = parseArgs({
    args: rest,
    options: {
      ...awsTargetOptions,
      table: { type: "string" },
      file: { type: "string" },
      "dry-run": { type: "boolean" },
      bucket: { type: "string" },
      config: { type: "string" },
    },
    strict: true,
  });
  if (values.help) {
    log(USAGE);
    return undefined;
  }
  const target = resolveAwsTarget(values, env);
  const config = loadStageConfig(values.config ?? stageConfigPath(target.stage), target.stage);
  const relayEnv = readEnv(mixpanelOperatorEnv(target, env).env);
  const secrets = createSecretReader({ region: target.region, ttlSeconds: 300, ...(env.SECRETS_ENDPOINT_URL ? { endpoint: env.SECRETS_ENDPOINT_URL } : {}) });
  const credentials = mixpanelCredentialsSource(relayEnv, secrets);
  const client = async (): Promise<LookupTablesClient> => {
    const creds = await credentials();
    if (!creds.project_id || !creds.service_account_username || !creds.service_account_secret) {
      throw new UsageError("lookup tables need a Mixpanel service account (project_id, service_account_username, service_account_secret)");
    }
    return createLookupTablesClient({
      baseUrl: ingestionBaseUrl(config.residency, relayEnv.MIXPANEL_API_URL),
      credentials: { projectId: creds.project_id, username: creds.service_account_username, secret: creds.service_account_secret },
      fetch: globalThis.fetch,
      timeoutMs: 300_000,
      now: Date.now,
    });
  };

  if (command === "list") {
    const tables = await (await client()).list();
    const configured = new Map(config.lookup_tables.map((table) => [table.table_id, table]));
    for (const table of tables) {
      const entry = configured.get(table.id);
      log(`${table.id}  ${table.name}${entry ? `  (lookup_tables "${entry.id}": s3://${entry.source.bucket}/${entry.source.key}, ${entry.schedule})` : ""}`);
    }
    if (tables.length === 0) log("no lookup tables in this project (create them in Mixpanel: Lexicon → Lookup Tables)");
    return tables;
  }

  if (!values.table || !values.file) throw new UsageError("replace needs --table <table_id> and --file <csv>");
  const file = values.file;
  const entry = config.lookup_tables.find((table) => table.table_id === values.table);
  const table = entry ?? { id: values.table.toLowerCase(), table_id: values.table, source: { type: "s3" as const, bucket: "local-file", key: file }, schedule: "on_upload" };
  const s3 = createS3Client(target.region, target.endpoint);
  const bucket = values.bucket ?? (await findSnapshotBucket(s3, target.stage));
  const progress = createProgress({ unit: "rows" });
  let counted = 0;
  const lines: string[] = [];
  const report = await refreshLookupTable(
    table,
    {
      store: createLookupStore(s3, bucket),
      openSource: async () => createReadStream(file),
      client,
      now: Date.now,
      replacesPerDay: readLookupSettings(env).LOOKUP_REPLACES_PER_DAY,
      log: { info: (m) => lines.push(m), warn: (m) => lines.push(m), error: (m) => lines.push(m) },
      metric: () => undefined,
    },
    {
      ...(values["dry-run"] ? { dryRun: true } : {}),
      onProgress: ({ rows }) => {
        progress.advance(rows - counted);
        counted = rows;
      },
    },
  );
  progress.advance((report.rows ?? counted) - counted);
  log(`checked ${progress.finish()}`);
  log(
    `${table.table_id}: ${report.outcome}${report.rows !== undefined ? ` (${report.rows} rows, ${report.bytes} bytes)` : ""}${report.detail ? `: ${report.detail}` : ""}`,
  );
  if (report.outcome === "refused" || report.outcome === "failed" || report.outcome === "budget_spent") process.exitCode = 1;
  return report;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).then(
    () => process.exit(process.exitCode ?? 0),
    (error: unknown) => {
      console.error(error instanceof UsageError ? `${error.message}\n${USAGE}` : `lookup failed: ${error instanceof Error ? error.message : String(error)}`);
      process.exit(error instanceof UsageError ? 2 : 1);
    },
  );
}
