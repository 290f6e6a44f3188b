import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { retargetLocalReceiver } from "./cohorts.js";
import { startLocalStack } from "./stack.js";

/**
 * `npm start`: the whole pipeline locally with embedded defaults. Nothing to
 * install or start by hand; everything binds to 127.0.0.1.
 * Env: PORT (intake, default 3000), MIXPANEL_API_URL (send to a real Mixpanel
 * instead of the local sandbox; then also set the MIXPANEL_* credentials),
 * INTAKE_TOKEN (default below), RELAY_STAGE / RELAY_CONFIG_FILE.
 */
const timestamp = () => new Date().toISOString().slice(11, 19);
const log = (line: string) => console.log(`${timestamp()}  ${line}`);

const webhookPort = Number(process.env.WEBHOOK_RECEIVER_PORT ?? 3002);
const stage = process.env.RELAY_STAGE ?? "local";
/** config/local.json names the receiver on its default port; a different WEBHOOK_RECEIVER_PORT moves it. */
function localConfigFile(): string | undefined {
  if (process.env.RELAY_CONFIG_FILE) return process.env.RELAY_CONFIG_FILE;
  if (webhookPort === 0) return undefined; // a port picked at random cannot be written into the config beforehand
  const path = `config/${stage}.json`;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch {
    return undefined; // the stack reports a missing or broken config itself
  }
  const { config, moved } = retargetLocalReceiver(raw, webhookPort);
  if (moved.length === 0) return undefined;
  const file = join(mkdtempSync(join(tmpdir(), "relay-local-config-")), `${stage}.json`);
  writeFileSync(file, JSON.stringify(config, null, 2));
  log(`config    ${path}: webhook destination(s) moved to WEBHOOK_RECEIVER_PORT ${webhookPort}: ${moved.join(", ")}`);
  return file;
}
const configFile = localConfigFile();

const stack = await startLocalStack({
  intakePort: Number(process.env.PORT ?? 3000),
  mixpanelPort: Number(process.env.MIXPANEL_SANDBOX_PORT ?? 3001),
  ...(process.env.MIXPANEL_API_URL ? { mixpanelApiUrl: process.env.MIXPANEL_API_URL } : {}),
  ...(process.env.INTAKE_TOKEN ? { intakeToken: process.env.INTAKE_TOKEN } : {}),
  ...(configFile ? { configFile } : {}),
  stage,
  cohorts: {
    webhookPort,
    tickMs: Number(process.env.COHORT_TICK_MS ?? 10_000),
  },
  log,
});

const now = Math.floor(Date.now() / 1000);
console.log(`
mixpanel-relay local stack is up
  intake            ${stack.intakeUrl}        (POST /v1/events, GET /healthz)
  mixpanel sandbox  ${stack.mixpanelUrl}${stack.sandbox ? "        (GET / shows what arrived; /_sandbox/events, /_sandbox/profiles)" : "  (your MIXPANEL_API_URL)"}
  sqs + s3          ${stack.awsEndpoint}        (fauxqs; GET /_fauxqs/queues)
  events queue      ${stack.events.url}
  events DLQ        ${stack.events.dlqUrl}
  rejected store    s3://${stack.rejectedBucket}/rejected/
  webhook receiver  ${stack.cohorts?.receiver.url ?? "-"}   (GET shows the cohort pages that arrived)
  cohort export     every ${Number(process.env.COHORT_TICK_MS ?? 10_000) / 1000} s; syncs in config/local.json (cohort 1 "Pro users" = profiles with plan "pro")
  braze currents    s3://${stack.currentsBucket}/  (Avro files put here are read like S3 notifications would)
  intake token      ${stack.intakeToken}

Try it:
  curl -s -X POST ${stack.intakeUrl}/v1/events \\
    -H 'Authorization: Bearer ${stack.intakeToken}' -H 'Content-Type: application/json' \\
    -d '[{"event":"Signed Up","properties":{"distinct_id":"user-1","time":${now},"plan":"pro"}}]'
  curl -s ${stack.mixpanelUrl}/_sandbox/events

Cohorts: make a profile "pro", wait for the export (members), then change it (add/remove_members):
  curl -s -X POST ${stack.intakeUrl}/v1/profiles -H 'Authorization: Bearer ${stack.intakeToken}' \
    -d '[{"$distinct_id":"user-1","$set":{"plan":"pro","$email":"user-1@example.com"}}]'
  curl -s ${stack.cohorts?.receiver.url.replace(/\/hook$/, "/") ?? ""}

Ctrl-C stops everything.
`);

let stopping = false;
const shutdown = async () => {
  if (stopping) return;
  stopping = true;
  log("stopping…");
  await stack.stop();
  process.exit(0);
};
process.on("SIGINT", () => void shutdown());
process.on("SIGTERM", () => void shutdown());
