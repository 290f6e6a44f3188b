import { startLocalStack } from "./stack.js";

/**
 * `npm start`: the whole pipeline locally with embedded defaults. Nothing to
 * install or start by hand; everything binds to 127.0.0.1.
 * Env: PORT (intake, default 3000), MIXPANEL_API_URL (send to a real Mixpanel
 * instead of the local sandbox; then also set the MIXPANEL_* credentials),
 * INTAKE_TOKEN (default below), RELAY_STAGE / RELAY_CONFIG_FILE.
 */
/** A positive integer from the environment, or the default. */
function envCount(name: string, fallback: number): number {
  const value = Number(process.env[name] ?? fallback);
  return Number.isSafeInteger(value) && value > 0 ? value : fallback;
}
const retention = {
  maxRejectedObjects: envCount("LOCAL_MAX_REJECTED_OBJECTS", 1000),
  maxCurrentsObjects: envCount("LOCAL_MAX_CURRENTS_OBJECTS", 500),
  cohortRunMaxAgeMs: envCount("LOCAL_COHORT_RUN_MAX_AGE_S", 3600) * 1000,
  maxSandboxEvents: envCount("LOCAL_MAX_SANDBOX_EVENTS", 10_000),
  intervalMs: 30_000,
};

const timestamp = () => new Date().toISOString().slice(11, 19);
const log = (line: string) => console.log(`${timestamp()}  ${line}`);

const stack = await startLocalStack({
  intakePort: Number(process.env.PORT ?? 3000),
  mixpanelPort: Number(process.env.MIXPANEL_SANDBOX_PORT ?? 3001),
  ...(process.env.MIXPANEL_API_URL ? { mixpanelApiUrl: process.env.MIXPANEL_API_URL } : {}),
  ...(process.env.INTAKE_TOKEN ? { intakeToken: process.env.INTAKE_TOKEN } : {}),
  ...(process.env.RELAY_CONFIG_FILE ? { configFile: process.env.RELAY_CONFIG_FILE } : {}),
  stage: process.env.RELAY_STAGE ?? "local",
  cohorts: {
    webhookPort: Number(process.env.WEBHOOK_RECEIVER_PORT ?? 3002),
    tickMs: Number(process.env.COHORT_TICK_MS ?? 10_000),
  },
  retention,
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

Everything lives in this process's memory: stopping it (Ctrl-C, a crash) loses what is still
queued, the DLQ, the rejected store and the cohort state. To stay bounded in a long session it
keeps only the newest ${retention.maxRejectedObjects} rejected batches (LOCAL_MAX_REJECTED_OBJECTS), the newest ${retention.maxCurrentsObjects} Currents
files (LOCAL_MAX_CURRENTS_OBJECTS), cohort runs for ${retention.cohortRunMaxAgeMs / 1000} s (LOCAL_COHORT_RUN_MAX_AGE_S) and the
newest ${retention.maxSandboxEvents} events in the sandbox (LOCAL_MAX_SANDBOX_EVENTS). Queues drain as the forwarder runs.

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
