import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LOCAL_MIXPANEL_CREDENTIALS, type LocalStack, startLocalStack } from "../../infra/local/stack.js";
import { generateLocalCertificate } from "../../infra/local/tls.js";
import { eventually } from "../support/eventually.js";

/**
 * The official `mixpanel` npm SDK, unmodified, pointed at the local stack served over https
 * (`INTAKE_TLS=1 npm start`): every call's records must arrive in the strict local Mixpanel
 * as the SDK meant them, through intake → SQS → forwarder.
 */
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const OTHER_APP_TOKEN = "other-app-project-token";
const RUN = `node-${Date.now().toString(36)}`;
let stack: LocalStack;
let results: Record<string, string | null>;

function runSdk(phase: 1 | 2, host: string, certPath: string): Promise<Record<string, string | null>> {
  const plan = { phase, host, token: LOCAL_MIXPANEL_CREDENTIALS.projectToken, otherToken: OTHER_APP_TOKEN, secret: stack.intakeToken, runId: RUN, nowMs: Date.now() };
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [join(repoRoot, "test/support/mixpanel-node-sdk-client.cjs"), JSON.stringify(plan)], {
      cwd: repoRoot,
      env: { PATH: process.env.PATH ?? "", NODE_EXTRA_CA_CERTS: certPath },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`SDK client exited ${String(code)}: ${stderr}`));
      resolvePromise(JSON.parse(stdout.trim()) as Record<string, string | null>);
    });
  });
}


const eventsNamed = (name: string) => stack.sandbox?.events.filter((event) => event.event === name) ?? [];

/** Scratch folder for this file's config (and certificate), removed after. */
let dir = "";

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "relay-node-sdk-"));
  const certificate = generateLocalCertificate(dir);
  const configFile = join(dir, "config.json");
  writeFileSync(configFile, JSON.stringify({ mixpanel_compat: { project_tokens: [LOCAL_MIXPANEL_CREDENTIALS.projectToken, OTHER_APP_TOKEN] } }));
  stack = await startLocalStack({ tls: certificate, configFile, visibilityTimeoutSeconds: 2 });
  const host = stack.intakeUrl.replace(/^https:\/\//, "");
  const first = await runSdk(1, host, certificate.certPath);
  // Phase 2 changes what phase 1 set; the queue keeps no order, so wait for phase 1 to land.
  await eventually(() => {
    const ada = stack.sandbox?.profiles.get(`${RUN}-ada`);
    return ada?.tmp === 1 && ada.first_seen === "2026-01-01" && ada.logins === 1 && Array.isArray(ada.tags) && stack.sandbox?.profiles.has(`${RUN}-gone`);
  });
  results = { ...first, ...(await runSdk(2, host, certificate.certPath)) };
}, 90_000);

afterAll(async () => {
  await stack?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("the official mixpanel Node SDK against the relay", () => {
  it("gets the answers it counts as success for every valid call, and errors for a wrong token or secret", () => {
    const expectedFailures = ["trackWrongToken", "importBadSecret"];
    for (const [name, error] of Object.entries(results)) {
      if (expectedFailures.includes(name)) expect(error, name).not.toBeNull();
      else expect(error, name).toBeNull();
    }
    expect(results.trackWrongToken).toBe("Mixpanel Server Error: 0");
    expect(results.importBadSecret).toMatch(/^Mixpanel Server Error: .*intake token/);
  });

  it("track: the event arrives with its properties and the SDK's mp_lib, without the token", async () => {
    const [event] = await eventually(() => (eventsNamed("Signed Up").length > 0 ? eventsNamed("Signed Up") : undefined));
    expect(event?.properties).toMatchObject({ distinct_id: `${RUN}-ada`, plan: "pro", awkward: "a>b?c~d ü 日本 ✓ +&=%", mp_lib: "node", ip: "0" });
    expect(event?.properties.$lib_version).toEqual(expect.any(String));
    expect(event?.properties).not.toHaveProperty("token");
    // No time from the SDK: the relay stamps the receive time, in ms, like Mixpanel's /track.
    expect(Math.abs(Number(event?.properties.time) - Date.now())).toBeLessThan(60_000);
    expect(event?.properties.$insert_id).toMatch(/^[a-f0-9]{36}$/);
  });

  it("track with geolocate: the client's IP is forwarded as ip; another allowed app's token is accepted", async () => {
    const [viewed] = await eventually(() => (eventsNamed("Viewed Page").length > 0 ? eventsNamed("Viewed Page") : undefined));
    expect(viewed?.properties).toMatchObject({ page: "/pricing", ip: "127.0.0.1" });
    await eventually(() => eventsNamed("Opened App").length === 1);
  });

  it("track_batch: 120 events in chunks of 50 (raw base64 form bodies) all arrive, none twice", async () => {
    const batch = await eventually(() => (eventsNamed("Batch Item").length >= 120 ? eventsNamed("Batch Item") : undefined));
    expect(batch).toHaveLength(120);
    expect(new Set(batch.map((event) => event.properties.n)).size).toBe(120);
    for (const event of batch) {
      expect(event.properties.awkward).toBe("a>b?c~d ü 日本 ✓ +&=%");
      expect(event.properties.distinct_id).toBe(`${RUN}-batch-${Number(event.properties.n) % 7}`);
    }
  });

  it("people.*: set, set_once, increment, append, union, unset and delete_user land on the profile as meant", async () => {
    const profile = await eventually(() => {
      const current = stack.sandbox?.profiles.get(`${RUN}-ada`);
      return current && current.tmp === undefined && Array.isArray(current.tags) && current.tags.length === 3 && current.logins === 3
        ? current
        : undefined;
    });
    expect(profile).toEqual({
      $email: "ada@example.com",
      plan: "pro",
      first_seen: "2026-01-01",
      logins: 3,
      visits: ["/home"],
      tags: expect.arrayContaining(["a", "b", "c"]),
    });
    await eventually(() => stack.sandbox?.requests.some((request) => request.path === "/engage") && !stack.sandbox.profiles.has(`${RUN}-gone`));
  });

  it("groups.set: the group profile arrives", async () => {
    const group = await eventually(() => stack.sandbox?.groups.get(`company:${RUN}-acme`));
    expect(group).toEqual({ name: "Acme", seats: 12 });
  });

  it("import and import_batch over TLS with secret = an intake token: old events arrive with their own time", async () => {
    const [purchase] = await eventually(() => (eventsNamed("Old Purchase").length > 0 ? eventsNamed("Old Purchase") : undefined));
    const tenDaysMs = 10 * 24 * 3600 * 1000;
    expect(Math.abs(Date.now() - tenDaysMs - Number(purchase?.properties.time))).toBeLessThan(120_000);
    expect(purchase?.properties).toMatchObject({ distinct_id: `${RUN}-ada`, amount: 42, mp_lib: "node" });
    const visits = await eventually(() => (eventsNamed("Old Visit").length >= 60 ? eventsNamed("Old Visit") : undefined));
    expect(visits).toHaveLength(60);
    expect(eventsNamed("Refused Import")).toHaveLength(0);
    expect(eventsNamed("Should Not Arrive")).toHaveLength(0);
  });
});
