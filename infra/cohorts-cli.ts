/**
 * Operator CLI for cohort syncs.
 *
 *   npm run cohorts:list                 # id, name, member count, description of every cohort
 *   npm run cohorts:list -- --json       # the raw /cohorts/list answer
 *
 * Uses the same settings as the functions: RELAY_STAGE / RELAY_CONFIG_FILE (residency),
 * MIXPANEL_QUERY_URL (override), and the Mixpanel service account from MIXPANEL_SECRET_ID
 * (Secrets Manager, SECRETS_ENDPOINT_URL locally) or MIXPANEL_PROJECT_ID +
 * MIXPANEL_SERVICE_ACCOUNT_USERNAME + MIXPANEL_SERVICE_ACCOUNT_SECRET. One Query API call.
 */
import { readEnv } from "../lib/config/env.js";
import { loadStageConfig, stageConfigPath } from "../lib/config/stage.js";
import { describeError } from "../lib/errors.js";
import { realRetryDeps } from "../lib/http/retry.js";
import { mixpanelCredentialsSource } from "../lib/mixpanel/credentials.js";
import { queryBaseUrl } from "../lib/mixpanel/hosts.js";
import { createQueryBudget, createQueryClient } from "../lib/mixpanel/query.js";
import { createSecretReader } from "../lib/secrets/secrets.js";

async function main(argv: string[]): Promise<number> {
  const [command = "list", ...flags] = argv;
  if (command !== "list") {
    process.stderr.write(`unknown command "${command}"; usage: cohorts-cli list [--json]\n`);
    return 2;
  }
  const env = readEnv();
  const config = loadStageConfig(stageConfigPath(env.RELAY_STAGE, env.RELAY_CONFIG_FILE), env.RELAY_STAGE);
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
  if (flags.includes("--json")) {
    process.stdout.write(`${JSON.stringify(cohorts, null, 2)}\n`);
    return 0;
  }
  const synced = new Map(config.cohort_syncs.map((s) => [s.cohort_id, s.id]));
  process.stdout.write(`${baseUrl} (project ${creds.project_id}, stage ${env.RELAY_STAGE})\n`);
  process.stdout.write(`${"id".padEnd(10)} ${"members".padStart(9)}  ${"name".padEnd(40)} synced by / description\n`);
  for (const c of [...cohorts].sort((a, b) => a.name.localeCompare(b.name))) {
    const note = synced.has(c.id) ? `[sync ${synced.get(c.id)}] ` : "";
    process.stdout.write(
      `${String(c.id).padEnd(10)} ${String(c.count ?? "?").padStart(9)}  ${c.name.slice(0, 40).padEnd(40)} ${note}${c.description ?? ""}\n`,
    );
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`cohorts-cli: ${describeError(error)}\n`);
    process.exit(1);
  },
);
