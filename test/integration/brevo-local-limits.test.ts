import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type LocalStack, startLocalStack } from "../../infra/local/stack.js";
import { BrevoServer, MAX_EVENTS_BATCH_BYTES, MAX_EVENTS_PER_BATCH } from "../../infra/local/peers/brevo-server.js";
import { eventually } from "../support/eventually.js";

/**
 * Brevo's published limits on the stack `npm start` runs (config/local.json's brevo block, with
 * groups linked through `companies.group_keys`), against the strict local Brevo:
 *
 * - `POST /v3/events/batch` takes at most 200 events and 512 KB of body
 *   (https://developers.brevo.com/docs/event-endpoints): 450 events of ~3 KB properties arrive
 *   whole, every request within both caps;
 * - the contacts bucket and the "all other endpoints" bucket (companies, link-unlink: 100 per hour
 *   on the General tier, https://developers.brevo.com/docs/api-limits) are gated apart: a
 *   5,000-profile `$set` burst with company links reaches the contacts at the contacts bucket's
 *   rate while the company work waits for its bucket.
 *
 * The sandbox's windows are scaled down (contacts: CONTACTS_PER_SECOND per second; companies:
 * COMPANY_CALLS per COMPANY_WINDOW_MS) so the burst takes seconds, not hours.
 */
const API_KEY = "local-limits-key";
const CONTACTS_PER_SECOND = 50;
const COMPANY_CALLS = 10;
const COMPANY_WINDOW_MS = 20_000;
/** 5,000 in the issue's check (BREVO_BURST_PROFILES=5000); fewer by default to keep the suite short. */
const PROFILES = Number(process.env.BREVO_BURST_PROFILES ?? 1_000);
const PROFILES_PER_REQUEST = 250;
const EVENTS = 450;
const COMPANIES = 5;

let stack: LocalStack;
let brevo: BrevoServer;
/** When each contact first reached the sandbox (ms since the burst was posted). */
const contactSeenAt = new Map<string, number>();
let burstStart = 0;

async function post(path: string, body: unknown): Promise<void> {
  const response = await fetch(`${stack.intakeUrl}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${stack.intakeToken}` },
    body: JSON.stringify(body),
  });
  expect(response.status).toBe(202);
  await response.arrayBuffer();
}

const companyCalls = () => brevo.calls.filter((c) => c.path.startsWith("/v3/companies")).length;
const burstContacts = () => [...contactSeenAt.entries()].filter(([email]) => email.startsWith("burst-"));

async function postAll(path: string, records: readonly unknown[], perRequest: number): Promise<void> {
  for (let i = 0; i < records.length; i += perRequest) await post(path, records.slice(i, i + perRequest));
}

beforeAll(async () => {
  brevo = new BrevoServer({
    apiKey: API_KEY,
    listIds: [15, 16],
    limit: CONTACTS_PER_SECOND,
    windowMs: 1000,
    otherLimit: COMPANY_CALLS,
    otherWindowMs: COMPANY_WINDOW_MS,
    onCall: (call) => {
      if (call.method === "POST" && call.path === "/v3/contacts" && call.status < 300) {
        const email = (call.body as { email?: string }).email ?? "";
        if (!contactSeenAt.has(email)) contactSeenAt.set(email, Date.now() - burstStart);
      }
    },
  });
  const brevoUrl = await brevo.start();
  const local = JSON.parse(readFileSync("config/local.json", "utf8"));
  const configFile = join(mkdtempSync(join(tmpdir(), "brevo-limits-")), "local.json");
  writeFileSync(configFile, JSON.stringify({ ...local, brevo: { ...local.brevo, companies: { ...local.brevo.companies, group_keys: ["company_id"] } } }));
  stack = await startLocalStack({
    configFile,
    brevoApiUrl: brevoUrl,
    callerEnv: { ...process.env, BREVO_API_KEY: API_KEY },
    startPollers: false,
    maxReceiveCount: 100,
    visibilityTimeoutSeconds: 5,
    forwarderTimeoutMs: 60_000,
    // The most the relay may put in one request; Brevo's 200 / 512 KB caps must still hold.
    env: { BREVO_EVENTS_BATCH_SIZE: String(MAX_EVENTS_PER_BATCH), HTTP_TIMEOUT_MS: "5000" },
  });
}, 60_000);
afterAll(async () => {
  await stack?.stop();
  await brevo?.close();
});

describe("Brevo limits on the local stack", () => {
  it(`${EVENTS} events of ~3 KB properties reach Brevo in requests of ≤ 200 events and ≤ 512 KB`, async () => {
    const now = Math.floor(Date.now() / 1000);
    const events = Array.from({ length: EVENTS }, (_, i) => ({
      event: "Purchase",
      properties: { distinct_id: `buyer-${i}`, time: now, $insert_id: `limits-${i}`, amount: i, note: `${i}:${"n".repeat(2_900)}` },
    }));
    // Queued whole before the forwarder runs, so its invocations see the largest batches they can.
    await postAll("/v1/events", events, 50);
    stack.brevoPoller.start();
    await eventually(() => brevo.events.filter((e) => String(e.event_properties?.insert_id ?? "").startsWith("limits-")).length >= EVENTS || undefined, 60_000);

    const ours = brevo.events.filter((e) => String(e.event_properties?.insert_id ?? "").startsWith("limits-"));
    expect(new Set(ours.map((e) => e.event_properties?.insert_id)).size).toBe(EVENTS);
    expect(ours).toHaveLength(EVENTS);
    const batches = brevo.eventBatches;
    console.info(`events: ${batches.length} requests: ${batches.map((b) => `${b.events} events / ${Math.round(b.bytes / 1024)} KB`).join(", ")}`);
    expect(batches.every((b) => b.events <= MAX_EVENTS_PER_BATCH && b.bytes <= MAX_EVENTS_BATCH_BYTES)).toBe(true);
    expect(batches.reduce((n, b) => n + b.events, 0)).toBe(EVENTS);
    // The byte cap, not only the count, shaped the requests: 200 such events would be ≈ 600 KB.
    expect(Math.max(...batches.map((b) => b.events))).toBeLessThan(MAX_EVENTS_PER_BATCH);
    expect(brevo.calls.filter((c) => c.path === "/v3/events/batch" && c.status >= 400)).toEqual([]);
  }, 120_000);

  it(`a ${PROFILES}-profile $set burst with company links reaches the contacts at the contacts limit while company work waits`, async () => {
    stack.brevoPoller.start();
    // The companies exist first (one group record each), so every profile's link is one call on the companies bucket.
    await postAll(
      "/v1/groups",
      Array.from({ length: COMPANIES }, (_, i) => ({ $group_key: "company_id", $group_id: `acme-${i}`, $set: { $name: `Acme ${i}` } })),
      COMPANIES,
    );
    await eventually(() => (brevo.companies.size >= COMPANIES ? true : undefined), 3 * COMPANY_WINDOW_MS);

    const profiles = Array.from({ length: PROFILES }, (_, i) => ({
      $distinct_id: `burst-${i}`,
      $set: { $email: `burst-${i}@example.com`, $first_name: `F${i}`, company_id: `acme-${i % COMPANIES}` },
    }));
    const companyCallsBefore = companyCalls();
    burstStart = Date.now();
    for (let i = 0; i < PROFILES; i += PROFILES_PER_REQUEST) {
      await post("/v1/profiles", profiles.slice(i, i + PROFILES_PER_REQUEST));
      // Group updates arrive among the profiles, as they do from a live project.
      await post("/v1/groups", [{ $group_key: "company_id", $group_id: `acme-${(i / PROFILES_PER_REQUEST) % COMPANIES}`, $set: { $name: `Acme ${i}`, industry: `i${i}` } }]);
    }
    await eventually(() => burstContacts().length >= PROFILES, (PROFILES / CONTACTS_PER_SECOND) * 4_000 + 30_000);

    const times = burstContacts().map(([, at]) => at).sort((a, b) => a - b);
    const first = times[0] ?? 0;
    const last = times.at(-1) ?? 0;
    const seconds = Math.max(1, (last - first) / 1000);
    const longestGap = Math.max(...times.slice(1).map((at, i) => at - (times[i] ?? at)));
    const bySecond = new Array<number>(Math.floor((last - first) / 1000) + 1).fill(0);
    for (const at of times) bySecond[Math.floor((at - first) / 1000)] = (bySecond[Math.floor((at - first) / 1000)] ?? 0) + 1;
    const companyCallsDuringBurst = companyCalls() - companyCallsBefore;
    const linked = [...brevo.companies.values()].reduce((n, c) => n + c.linkedContactsIds.length, 0);
    console.info(
      `profiles: ${PROFILES} contacts in ${seconds.toFixed(1)} s = ${(PROFILES / seconds).toFixed(1)}/s (contacts limit ${CONTACTS_PER_SECOND}/s), longest gap ${longestGap} ms; ` +
        `company calls ${companyCallsDuringBurst} (bucket: ${COMPANY_CALLS} per ${COMPANY_WINDOW_MS / 1000} s), links made ${linked}, links still waiting ${PROFILES - linked}; ` +
        `429s ${brevo.throttled}\ncontacts per second: ${bySecond.join(" ")}`,
    );
    expect(brevo.throttled).toBe(0);
    // The companies bucket was full during the burst, and company work stayed within it (waiting or re-queued) ...
    expect(companyCallsDuringBurst).toBeGreaterThanOrEqual(COMPANY_CALLS);
    expect(companyCallsDuringBurst).toBeLessThanOrEqual((Math.ceil((last - first) / COMPANY_WINDOW_MS) + 1) * COMPANY_CALLS);
    expect(linked).toBeLessThan(PROFILES);
    // ... while the contacts never stopped for it: the only pauses are the contacts bucket's own
    // one-second resets, never a companies window (a group record sleeping on its bucket held the
    // contacts behind it for up to COMPANY_WINDOW_MS).
    expect(longestGap).toBeLessThan(COMPANY_WINDOW_MS / 4);
    expect(PROFILES / seconds).toBeGreaterThan(CONTACTS_PER_SECOND / 2);
  }, 600_000);
});
