/**
 * Operator CLI for cohort syncs.
 *
 *   npm run cohorts:list -- --stage <stage>            # id, name, member count, description of every cohort
 *   npm run cohorts:list -- --stage <stage> --json     # the raw /cohorts/list answer
 *   npm run cohorts:export -- --stage <stage> --sync <id> [--full]
 *
 * `list` uses the same settings as the functions: the stage's config file
 * (config/<stage>.json, or RELAY_CONFIG_FILE) for the residency, MIXPANEL_QUERY_URL
 * (override), and the Mixpanel service account from MIXPANEL_SECRET_ID (Secrets
 * Manager, SECRETS_ENDPOINT_URL locally) or MIXPANEL_PROJECT_ID +
 * MIXPANEL_SERVICE_ACCOUNT_USERNAME + MIXPANEL_SERVICE_ACCOUNT_SECRET. One Query API call.
 *
 * `export` triggers a run of one sync now (even a disabled one or a `"once"`
 * sync that already ran) and follows it tick by tick until its pages are
 * delivered or it fails, printing progress. `--full` forces a full `members`
 * sync (and releases a mass-removal hold). On `--stage local` it calls the
 * running `npm start` (LOCAL_STACK_URL, default http://127.0.0.1:$PORT or 3000);
 * on a deployed stage it invokes the stage's cohort-export function with
 * `osls invoke` (AWS credentials of the shell).
 */
import { spawnSync } from "node:child_process";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import * as z from "zod";
import { readEnv } from "../lib/config/env.js";
import { LOCAL_STAGE, loadStageConfig, stageConfigPath } from "../lib/config/stage.js";
import { describeError } from "../lib/util/errors.js";
import { realRetryDeps } from "../lib/http/retry.js";
import { mixpanelCredentialsSource } from "../lib/mixpanel/credentials.js";
import { queryBaseUrl } from "../lib/mixpanel/hosts.js";
import { createQueryBudget, createQueryClient } from "../lib/mixpanel/query.js";
import { createSecretReader } from "../lib/secrets/secrets.js";
import { LOCAL_COHORT_EXPORT_PATH } from "./local/cohorts.js";
import { UsageError, parseArgs } from "./cli-args.js";
import { parseJsonWith } from "../lib/util/json.js";

const syncReportSchema = z.object({
  outcome: z.string(),
  pagesFetched: z.number(),
  pagesEnqueued: z.number(),
  detail: z.string().optional(),
});
export const exportReportSchema = z.object({
  queries: z.number(),
  budgetLeft: z.number(),
  syncs: z.record(z.string(), syncReportSchema),
});
export type CliExportReport = z.infer<typeof exportReportSchema>;

export interface ExportInput {
  force?: string[];
  full?: boolean;
  include?: string[];
}

/** One cohort-export invocation (local stack or deployed function). */
export type Invoke = (input: ExportInput) => Promise<CliExportReport>;

/** The run has not started yet (a previous run still out, or /cohorts/list unavailable this tick). */
const NOT_STARTED = new Set(["waiting_for_delivery", "not_due"]);
const SETTLED = new Set(["advanced", "failed", "held"]);

/**
 * Forces a run of `syncId` (until it starts), then ticks without forcing a new
 * run until it settles: advanced (delivered), failed or held. Bounded by
 * `maxTicks`; prints one line per tick.
 */
export async function followExport(
  invoke: Invoke,
  options: { syncId: string; full: boolean; maxTicks: number; pauseMs: number; print: (line: string) => void; sleep?: (ms: number) => Promise<void> },
): Promise<{ outcome: string; ticks: number }> {
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const forcing: ExportInput = { force: [options.syncId], include: [options.syncId], ...(options.full ? { full: true } : {}) };
  let started = false;
  let outcome = "unknown";
  for (let tick = 1; tick <= options.maxTicks; tick++) {
    const report = await invoke(started ? { include: [options.syncId] } : forcing);
    const entry = report.syncs[options.syncId];
    if (!entry) throw new UsageError(`sync "${options.syncId}" is not in the stage's config`);
    outcome = entry.outcome;
    options.print(
      `tick ${tick}: ${entry.outcome}; ${entry.pagesFetched} page(s) fetched, ${entry.pagesEnqueued} enqueued; Query API calls ${report.queries} (${report.budgetLeft} left this tick)${entry.detail ? `; ${entry.detail}` : ""}`,
    );
    if (!started && NOT_STARTED.has(outcome)) {
      options.print("  the run has not started yet (a previous run is still out, or /cohorts/list was unavailable)");
    } else {
      started = true;
      if (SETTLED.has(outcome)) return { outcome, ticks: tick };
    }
    await sleep(options.pauseMs);
  }
  return { outcome, ticks: options.maxTicks };
}

function localInvoke(baseUrl: string): Invoke {
  return async (input) => {
    const url = `${baseUrl.replace(/\/+$/, "")}${LOCAL_COHORT_EXPORT_PATH}`;
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(input),
      redirect: "manual",
    }).catch((error: unknown) => {
      throw new Error(`cannot reach the local stack at ${url} (is \`npm start\` running? set LOCAL_STACK_URL or PORT): ${describeError(error)}`);
    });
    const text = await response.text();
    if (response.status !== 200) throw new Error(`local stack answered ${response.status}: ${text.slice(0, 300)}`);
    const parsed = parseJsonWith(exportReportSchema, text);
    if (!parsed.success) throw new Error(`local stack is busy or answered an unexpected report: ${text.slice(0, 300)}`);
    return parsed.data;
  };
}

function deployedInvoke(stage: string): Invoke {
  return async (input) => {
    const result = spawnSync("npx", ["osls", "invoke", "-f", "cohort-export", "--stage", stage, "--data", JSON.stringify(input)], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"],
    });
    if (result.status !== 0) throw new Error(`osls invoke failed (exit ${result.status ?? "?"})`);
    const start = result.stdout.indexOf("{");
    const parsed = parseJsonWith(exportReportSchema, result.stdout.slice(start));
    if (!parsed.success) throw new Error(`cohort-export returned an unexpected report: ${result.stdout.slice(0, 300)}`);
    return parsed.data;
  };
}

async function list(stage: string, json: boolean): Promise<number> {
  const env = readEnv({ ...process.env, RELAY_STAGE: stage });
  const config = loadStageConfig(stageConfigPath(stage, env.RELAY_CONFIG_FILE), stage);
  const secrets = createSecretReader({
    region: env.AWS_REGION,
    ttlSeconds: env.SECRETS_TTL_SECONDS,
    ...(env.SECRETS_ENDPOINT_URL ? { endpoint: env.SECRETS_ENDPOINT_URL } : {}),
  });
  const creds = await mixpanelCredentialsSource(env, secrets)();
  if (!creds.project_id || !creds.service_account_username || !creds.service_account_secret) {
    process.stderr.write("a Mixpanel service account is required (project_id, username, secret)\n");
    return 2;
  }
  const baseUrl = queryBaseUrl(config.residency, env.MIXPANEL_QUERY_URL);
  const client = createQueryClient({
    baseUrl,
    credentials: { projectId: creds.project_id, username: creds.service_account_username, secret: creds.service_account_secret },
    fetch,
    timeoutMs: env.HTTP_TIMEOUT_MS,
    retryDeps: realRetryDeps(() => 120_000),
    budget: createQueryBudget(3, 1),
    now: Date.now,
  });
  const cohorts = await client.listCohorts();
  if (json) {
    process.stdout.write(`${JSON.stringify(cohorts, null, 2)}\n`);
    return 0;
  }
  const synced = new Map(config.cohort_syncs.map((s) => [s.cohort_id, s.id]));
  process.stdout.write(`${baseUrl} (project ${creds.project_id}, stage ${stage})\n`);
  process.stdout.write(`${"id".padEnd(10)} ${"members".padStart(9)}  ${"name".padEnd(40)} synced by / description\n`);
  for (const c of [...cohorts].sort((a, b) => a.name.localeCompare(b.name))) {
    const note = synced.has(c.id) ? `[sync ${synced.get(c.id)}] ` : "";
    process.stdout.write(
      `${String(c.id).padEnd(10)} ${String(c.count ?? "?").padStart(9)}  ${c.name.slice(0, 40).padEnd(40)} ${note}${c.description ?? ""}\n`,
    );
  }
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [command = "list", ...rest] = argv;
  const { values } = parseArgs({
    args: rest,
    options: {
      stage: { type: "string", short: "s" },
      sync: { type: "string" },
      full: { type: "boolean" },
      json: { type: "boolean" },
      "max-ticks": { type: "string" },
    },
    strict: true,
  });
  const stage = values.stage ?? process.env.RELAY_STAGE;
  if (!stage) throw new UsageError("--stage is required");
  if (command === "list") return list(stage, values.json === true);
  if (command !== "export") throw new UsageError(`unknown command "${command}"; usage: cohorts-cli list|export --stage <stage> [--sync <id> --full]`);
  if (!values.sync) throw new UsageError("--sync <id> is required");
  const local = stage === LOCAL_STAGE;
  const invoke = local
    ? localInvoke(process.env.LOCAL_STACK_URL ?? `http://127.0.0.1:${process.env.PORT ?? "3000"}`)
    : deployedInvoke(stage);
  const maxTicks = Number(values["max-ticks"] ?? (local ? 120 : 60));
  const { outcome, ticks } = await followExport(invoke, {
    syncId: values.sync,
    full: values.full === true,
    maxTicks,
    // A deployed tick is a whole Lambda invocation; locally a second is plenty.
    pauseMs: local ? 1_000 : 5_000,
    print: (line) => process.stdout.write(`${line}\n`),
  });
  process.stdout.write(`sync ${values.sync}: ${outcome} after ${ticks} tick(s)\n`);
  return outcome === "advanced" ? 0 : 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`cohorts-cli: ${describeError(error)}\n`);
      process.exit(error instanceof UsageError ? 2 : 1);
    },
  );
}
