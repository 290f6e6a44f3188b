import { newBrevoRateGates } from "../../../lib/brevo/client.js";
import { beforeEach, describe, expect, it } from "vitest";
import type { DeliveryPage, PageMember, SyncAction } from "../../../lib/cohorts/messages.js";
import { cohortSyncsSchemaFor, type BrevoDestination } from "../../../lib/config/cohort-syncs.js";
import { BREVO_IMPORT_MAX_BYTES, type RateGate, brevoImportRequests, sendBrevoPage } from "../../../lib/destinations/brevo.js";
import type { SenderDeps } from "../../../lib/destinations/http.js";
import { RetryableError } from "../../../lib/util/errors.js";
import { type BrevoServer, MAX_IMPORT_BYTES } from "../../../infra/local/peers/brevo-server.js";
import { Clock } from "../cohorts/harness.js";
import { localSecrets, sendersOnTestTime } from "../../support/destination-senders.js";
import { localBrevos } from "../../support/local-brevo.js";

/** sendBrevoPage against the strict local Brevo; time is a settable clock, sleeps advance it. */
const secretsEndpoint = localSecrets({ "relay/brevo": { api_key: "xkeysib-test" } });
const startLocalBrevo = localBrevos();
let brevo: BrevoServer;
let clock: Clock;
let sleeps: number[];
let remaining: number;


async function startBrevo(limit: number, windowMs: number): Promise<BrevoDestination> {
  brevo = await startLocalBrevo({ apiKey: "xkeysib-test", listIds: [12], limit, windowMs, now: () => clock.now() });
  const base = brevo.url;
  const [sync] = cohortSyncsSchemaFor({ localStage: true }).parse([
    { id: "b", cohort_id: 1, destination: { type: "brevo", list_id: 12, base_url: base, api_key_secret: "relay/brevo", attributes: { $first_name: "FIRSTNAME" } } },
  ]);
  if (sync?.destination.type !== "brevo") throw new Error("config");
  return sync.destination;
}

beforeEach(() => {
  clock = new Clock();
  sleeps = [];
  remaining = 600_000;
});

const deps = (): SenderDeps => sendersOnTestTime(clock, sleeps, () => remaining, secretsEndpoint());

const members = (n: number, from = 0, name = (i: number) => `F${i}`): PageMember[] =>
  Array.from({ length: n }, (_, k) => ({ id: `u${from + k}`, props: { $email: `u${from + k}@example.com`, $first_name: name(from + k) } }));

const page = (action: SyncAction, list: PageMember[], n = 1): DeliveryPage => ({
  v: 1,
  sync_id: "b",
  run_id: "run-1",
  project_id: "1",
  cohort: { id: 1, name: "C", description: "" },
  action,
  page: n,
  total_pages: 9,
  members: list,
});

describe("Brevo sender: a page always fits in one invocation", () => {
  it("a 1000-member page is one /contacts/import (upsert + list membership); a 1000-member removal is 7 calls of ≤150", async () => {
    const destination = await startBrevo(10, 1000);
    const gate: RateGate = newBrevoRateGates();
    await sendBrevoPage(page("add_members", members(1000)), destination, deps(), gate);
    const imports = brevo.calls.filter((c) => c.path === "/v3/contacts/import");
    expect(imports).toHaveLength(1);
    expect(imports[0]?.status).toBe(202);
    expect(imports[0]?.body).toMatchObject({ listIds: [12], updateExistingContacts: true });
    expect(brevo.imports[0]).toMatchObject({ contacts: 1000, listIds: [12] });
    expect(brevo.lists.get(12)?.size).toBe(1000);
    expect(brevo.contacts.get("u7@example.com")).toEqual({ FIRSTNAME: "F7" });
    expect(brevo.calls.some((c) => c.path === "/v3/contacts" || c.path.endsWith("/contacts/add"))).toBe(false);
    expect(sleeps).toEqual([]);

    // Redelivery of the same page: an idempotent re-import, attributes updated, list unchanged.
    await sendBrevoPage(page("add_members", members(1000, 0, (i) => `G${i}`)), destination, deps(), gate);
    expect(brevo.contacts.get("u7@example.com")).toEqual({ FIRSTNAME: "G7" });
    expect(brevo.lists.get(12)?.size).toBe(1000);

    await sendBrevoPage(page("remove_members", members(1000)), destination, deps(), gate);
    const removes = brevo.calls.filter((c) => c.path.endsWith("/contacts/remove"));
    expect(removes.map((c) => (c.body as { emails: unknown[] }).emails.length)).toEqual([150, 150, 150, 150, 150, 150, 100]);
    expect(brevo.lists.get(12)?.size).toBe(0);
    expect(brevo.throttled).toBe(0);
    // 2 imports + 7 removes at 10/s: at most one wait for the window, never a 429.
    expect(sleeps.every((ms) => ms <= 1000)).toBe(true);
  });

  it("splits an import whose body would pass 8 MB; the strict server accepts every part (≤ 10 MB)", async () => {
    const destination = await startBrevo(10, 1000);
    const big = members(1000, 0, (i) => `${i}-${"x".repeat(12_000)}`); // ≈ 12 MB of JSON in one page
    await sendBrevoPage(page("members", big), destination, deps());
    expect(brevo.imports.length).toBeGreaterThanOrEqual(2);
    expect(brevo.imports.every((i) => i.bytes <= BREVO_IMPORT_MAX_BYTES && i.bytes <= MAX_IMPORT_BYTES)).toBe(true);
    expect(brevo.imports.reduce((n, i) => n + i.contacts, 0)).toBe(1000);
    expect(brevo.lists.get(12)?.size).toBe(1000);
    expect(brevo.calls.every((c) => c.status === 202)).toBe(true);
  });

  it("a long x-sib-ratelimit-reset with little time left throws RetryableError at once instead of sleeping", async () => {
    const destination = await startBrevo(1, 3_600_000); // hourly limit of 1 call
    const gate: RateGate = newBrevoRateGates();
    await sendBrevoPage(page("add_members", members(3)), destination, deps(), gate);
    expect(gate.contacts - clock.now()).toBe(3_600_000); // remaining 0, reset 3600 s

    remaining = 120_000;
    const error = await sendBrevoPage(page("add_members", members(3, 3), 2), destination, deps(), gate).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RetryableError);
    expect(String(error)).toMatch(/resets in 3600 s/);
    expect(sleeps).toEqual([]);
    expect(brevo.calls).toHaveLength(1); // no call made against a closed gate
  });

  it("a 429 whose reset does not fit in the time left is handed back to SQS without a backoff sleep", async () => {
    const destination = await startBrevo(1, 3_600_000);
    await sendBrevoPage(page("add_members", members(1)), destination, deps(), newBrevoRateGates());
    remaining = 120_000;
    // A fresh gate (another container): the call is made and answered 429 with a 3600 s reset.
    const error = await sendBrevoPage(page("remove_members", members(1)), destination, deps(), newBrevoRateGates()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RetryableError);
    expect(brevo.throttled).toBe(1);
    expect(sleeps).toEqual([]);
  });

  it("no call starts when the invocation has no time left for it", async () => {
    const destination = await startBrevo(10, 1000);
    remaining = 0;
    await expect(sendBrevoPage(page("add_members", members(2)), destination, deps())).rejects.toBeInstanceOf(RetryableError);
    expect(brevo.calls).toEqual([]);
  });

  it("import bodies stay under the byte cap and keep every contact", () => {
    const contacts = Array.from({ length: 50 }, (_, i) => ({ email: `c${i}@x.io`, attributes: { FIRSTNAME: "é".repeat(100) } }));
    const bodies = brevoImportRequests(contacts, 12, 3_000).map((request) => JSON.stringify(request));
    expect(bodies.length).toBeGreaterThan(1);
    expect(bodies.every((b) => Buffer.byteLength(b) <= 3_000)).toBe(true);
    const parsed = bodies.map((b) => JSON.parse(b) as { jsonBody: unknown[]; listIds: number[] });
    expect(parsed.flatMap((p) => p.jsonBody)).toEqual(contacts);
    expect(parsed.every((p) => p.listIds[0] === 12)).toBe(true);
  });
});
