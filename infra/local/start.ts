import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { DEFAULT_LOCAL_BRAZE_PORT, DEFAULT_LOCAL_BREVO_PORT, DEFAULT_LOCAL_RECEIVER_PORT, retargetLocalPeers } from "./cohorts.js";
import { LOCAL_MIXPANEL_CREDENTIALS, LOCAL_REGION, startLocalStack } from "./stack.js";
import { generateLocalCertificate } from "./tls.js";
import { localStackFilePath, previousStack, removeLocalStackFileOf, writeLocalStackFile } from "./stack-file.js";
import { isProcessAlive, makeConfigCopyDir, removeOrphanedConfigCopies, watchLaunchChain } from "./lifetime.js";

/**
 * `npm start`: the whole pipeline locally with embedded defaults. Nothing to
 * install or start by hand; everything binds to 127.0.0.1.
 * Env: PORT (intake, default 3000), MIXPANEL_API_URL (send to a real Mixpanel
 * instead of the local sandbox; then also set the MIXPANEL_* credentials),
 * INTAKE_TOKEN (default below), RELAY_STAGE / RELAY_CONFIG_FILE, INTAKE_TLS=1 (serve the
 * intake over https with a self-signed certificate made at start, for the Node SDK's import),
 * BREVO_API_URL (send to a real
 * Brevo instead of the local Brevo sandbox; then also set BREVO_API_KEY), BRAZE_API_KEY (the key
 * served for the config's Braze secrets and taken by the local Braze fake), and the peers' ports
 * WEBHOOK_RECEIVER_PORT, BREVO_SANDBOX_PORT, BRAZE_SANDBOX_PORT (config/local.json follows them).
 *
 * It stops on Ctrl-C, SIGTERM, SIGHUP and when npm (or anything else of the chain that launched
 * it) ends, even by SIGKILL (./lifetime.ts), so no process is left holding the ports; it removes
 * its stack file and config copy on the way out, and a start after a crash reports and replaces
 * the stale stack file and removes the orphaned config copies.
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

const stackFile = localStackFilePath(process.env);
for (const removed of removeOrphanedConfigCopies(tmpdir())) log(`cleanup   removed ${removed} (left by a stack that is no longer running)`);
const previous = previousStack(stackFile, isProcessAlive);
if (previous.kind === "stale") log(`cleanup   ${stackFile} announced pid ${previous.file.pid}, which is no longer running: replacing it`);
if (previous.kind === "unreadable") log(`cleanup   ${stackFile} is unreadable: replacing it`);
if (previous.kind === "running") {
  log(`warning   another local stack (pid ${previous.file.pid}, intake ${previous.file.intakeUrl}) is running; stop it (kill ${previous.file.pid}) if the ports clash`);
}

const webhookPort = Number(process.env.WEBHOOK_RECEIVER_PORT ?? DEFAULT_LOCAL_RECEIVER_PORT);
const brevoPort = Number(process.env.BREVO_SANDBOX_PORT ?? DEFAULT_LOCAL_BREVO_PORT);
const brazePort = Number(process.env.BRAZE_SANDBOX_PORT ?? DEFAULT_LOCAL_BRAZE_PORT);
const stage = process.env.RELAY_STAGE ?? "local";
/** config/local.json names the local peers on their default ports; other *_PORT values move them. */
function localConfigFile(): string | undefined {
  if (process.env.RELAY_CONFIG_FILE) return process.env.RELAY_CONFIG_FILE;
  const path = `config/${stage}.json`;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch {
    return undefined; // the stack reports a missing or broken config itself
  }
  // A port picked at random (0) cannot be written into the config beforehand.
  const ports = {
    ...(webhookPort !== 0 ? { webhook: webhookPort } : {}),
    ...(brevoPort !== 0 && !process.env.BREVO_API_URL ? { brevo: brevoPort } : {}),
    ...(brazePort !== 0 ? { braze: brazePort } : {}),
  };
  const { config, moved } = retargetLocalPeers(raw, ports);
  if (moved.length === 0) return undefined;
  const file = join(makeConfigCopyDir(tmpdir(), process.pid), `${stage}.json`);
  writeFileSync(file, JSON.stringify(config, null, 2));
  log(`config    ${path}: destination(s) moved to the local peers' ports: ${moved.join(", ")}`);
  return file;
}
const configFile = localConfigFile();
/** A copy this script wrote (removed at shutdown), not a RELAY_CONFIG_FILE the user gave. */
const configCopy = configFile !== undefined && configFile !== process.env.RELAY_CONFIG_FILE ? configFile : undefined;

/** What this process leaves on disk, removed however it ends (synchronous: also runs on `exit`). */
function removeOwnFiles(): void {
  removeLocalStackFileOf(stackFile, process.pid);
  if (configCopy) rmSync(dirname(configCopy), { recursive: true, force: true });
}
process.on("exit", removeOwnFiles);

const certificate = process.env.INTAKE_TLS === "1" ? generateLocalCertificate() : undefined;
let stack: Awaited<ReturnType<typeof startLocalStack>>;
try {
  stack = await startLocalStack({
    ...(certificate ? { tls: certificate } : {}),
    intakePort: Number(process.env.PORT ?? 3000),
    mixpanelPort: Number(process.env.MIXPANEL_SANDBOX_PORT ?? 3001),
    ...(process.env.MIXPANEL_API_URL ? { mixpanelApiUrl: process.env.MIXPANEL_API_URL } : {}),
    ...(process.env.BREVO_API_URL ? { brevoApiUrl: process.env.BREVO_API_URL } : {}),
    brevoPort,
    brazePort,
    ...(process.env.INTAKE_TOKEN ? { intakeToken: process.env.INTAKE_TOKEN } : {}),
    ...(configFile ? { configFile } : {}),
    stage,
    cohorts: {
      webhookPort,
      tickMs: Number(process.env.COHORT_TICK_MS ?? 10_000),
    },
    retention,
    log,
  });
} catch (error) {
  const inUse = (error as NodeJS.ErrnoException).code === "EADDRINUSE";
  log(`failed    ${String(error)}${inUse ? " (a port is taken: another npm start? see PORT and the *_PORT variables)" : ""}`);
  process.exit(1);
}

// `npm run status|trace|redrive|replay -- --stage local` find the stack through this file.
writeLocalStackFile(stackFile, { stage: "local", region: LOCAL_REGION, awsEndpoint: stack.awsEndpoint, intakeUrl: stack.intakeUrl, ...(stack.sandbox ? { mixpanelUrl: stack.mixpanelUrl } : {}), ...(stack.brevoSandbox ? { brevoUrl: stack.brevoUrl } : {}), pid: process.pid });

const now = Math.floor(Date.now() / 1000);
const tickSeconds = Number(process.env.COHORT_TICK_MS ?? 10_000) / 1000;
console.log(`
mixpanel-relay local stack is up
  intake            ${stack.intakeUrl}        (POST /v1/events, GET /healthz)
  mixpanel sandbox  ${stack.mixpanelUrl}${stack.sandbox ? "        (GET / shows what arrived; /_sandbox/events, /_sandbox/profiles)" : "  (your MIXPANEL_API_URL)"}
  brevo             ${stack.brevoSandbox ? `${stack.brevoUrl}  (local Brevo sandbox; GET ${stack.brevoUrl.replace(/\/v3$/, "")}/_sandbox/events, /_sandbox/contacts, /_sandbox/companies)` : `${stack.brevoUrl}  (your BREVO_API_URL)`}
  brevo queue       ${stack.brevo.url}
  sqs + s3          ${stack.awsEndpoint}        (fauxqs; GET /_fauxqs/queues)
  events queue      ${stack.events.url}
  events DLQ        ${stack.events.dlqUrl}
  rejected store    s3://${stack.rejectedBucket}/rejected/
  webhook receiver  ${stack.cohorts?.receiver.url ?? "-"}   (GET / lists each page that arrived with who it added and removed)
  braze             ${stack.cohorts?.braze.url ?? "-"}        (local Braze /users/track; GET /_sandbox/users)
  secrets           ${stack.cohorts?.secrets.url ?? "-"}        (local Secrets Manager: every secret config/${stage}.json names)
  cohort export     every ${tickSeconds} s; syncs in config/local.json: cohort 1 "Pro users" (plan "pro") → webhook and Braze, cohort 2 (has $email) → Brevo list 16
  braze currents    s3://${stack.currentsBucket}/  (Avro files put here are read like S3 notifications would)
  intake token      ${stack.intakeToken}
  mixpanel SDKs     ${stack.intakeUrl}/track, /engage, /groups, /import  (project token ${LOCAL_MIXPANEL_CREDENTIALS.projectToken}; README "Point Mixpanel SDKs at the relay")${certificate ? `\n  tls certificate   ${certificate.certPath}  (self-signed; trust it with NODE_EXTRA_CA_CERTS=${certificate.certPath})` : ""}

Try it:
  curl -s -X POST ${stack.intakeUrl}/v1/events \\
    -H 'Authorization: Bearer ${stack.intakeToken}' -H 'Content-Type: application/json' \\
    -d '[{"event":"Signed Up","properties":{"distinct_id":"user-1","time":${now},"plan":"pro"}}]'
  curl -s ${stack.mixpanelUrl}/_sandbox/events

Brevo (config/local.json "brevo"): a Purchase arrives as order_completed, a profile $set as a contact on list 15, a group as a company:
  curl -s -X POST ${stack.intakeUrl}/v1/events -H 'Authorization: Bearer ${stack.intakeToken}' \
    -d '[{"event":"Purchase","properties":{"distinct_id":"user-1","time":${now},"amount":42}}]'
  curl -s -X POST ${stack.intakeUrl}/v1/profiles -H 'Authorization: Bearer ${stack.intakeToken}' \
    -d '[{"$distinct_id":"user-1","$set":{"$email":"user-1@example.com","$first_name":"Ada","plan":"pro"}}]'
  curl -s -X POST ${stack.intakeUrl}/v1/groups -H 'Authorization: Bearer ${stack.intakeToken}' \
    -d '[{"$group_key":"company_id","$group_id":"acme","$set":{"$name":"Acme Inc","domain":"acme.io"}}]'
  curl -s ${stack.brevoUrl.replace(/\/v3$/, "")}/_sandbox/events; curl -s ${stack.brevoUrl.replace(/\/v3$/, "")}/_sandbox/contacts

Cohorts: the first export runs in about ${tickSeconds} s (a "members" page with whoever is pro by then, usually nobody);
each later run, a minute apart, sends add_members / remove_members. Make a profile pro, then watch who was added:
  curl -s -X POST ${stack.intakeUrl}/v1/profiles -H 'Authorization: Bearer ${stack.intakeToken}' \\
    -d '[{"$distinct_id":"ada","$set":{"plan":"pro","$email":"ada@example.com"}}]'
  curl -s ${stack.cohorts?.receiver.url.replace(/\/hook$/, "/") ?? ""}                     # webhook pages: "added": ["ada"], "removed": [...]
  curl -s ${stack.cohorts?.braze.url ?? ""}/_sandbox/users        # Braze: mixpanel_cohorts ["Pro users"]
  curl -s ${stack.brevoUrl.replace(/\/v3$/, "")}/_sandbox/contacts     # Brevo: the contact on list 16

Everything lives in this process's memory: stopping it (Ctrl-C, a crash) loses what is still
queued, the DLQ, the rejected store and the cohort state. To stay bounded in a long session it
keeps only the newest ${retention.maxRejectedObjects} rejected batches (LOCAL_MAX_REJECTED_OBJECTS), the newest ${retention.maxCurrentsObjects} Currents
files (LOCAL_MAX_CURRENTS_OBJECTS), cohort runs for ${retention.cohortRunMaxAgeMs / 1000} s (LOCAL_COHORT_RUN_MAX_AGE_S) and the
newest ${retention.maxSandboxEvents} events in the sandbox (LOCAL_MAX_SANDBOX_EVENTS). Queues drain as the forwarder runs.
Operator commands against this stack: npm run status -- --stage local; npm run trace -- --stage local --correlation-id <id>

Ctrl-C (or kill ${process.pid}, or ending npm) stops everything.
`);

/** Stops everything once; a stop that hangs does not keep the ports: the process exits anyway. */
let stopping = false;
const shutdown = (reason: string, exitCode = 0) => {
  if (stopping) return;
  stopping = true;
  log(`stopping (${reason})…`);
  removeOwnFiles();
  setTimeout(() => process.exit(exitCode), 5_000).unref();
  stack.stop().then(
    () => process.exit(exitCode),
    (error: unknown) => {
      log(`stop failed: ${String(error)}`);
      process.exit(1);
    },
  );
};
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(signal, () => shutdown(signal));
process.on("uncaughtException", (error) => {
  log(`crashed   ${error.stack ?? String(error)}`);
  shutdown("crash", 1);
});
process.on("unhandledRejection", (error) => {
  log(`crashed   ${String(error)}`);
  shutdown("crash", 1);
});
watchLaunchChain({ pid: process.pid, intervalMs: 500, onGone: (gone) => shutdown(`launcher ${gone.join(", ")} ended`) });
