import { describe, expect, it } from "vitest";
import type { BrevoServer } from "../../infra/local/peers/brevo-server.js";
import { PROFILES_WITH_COMPANIES, localBrevoClient, localBrevoSend, localBrevos, startBrevoWithAcme } from "../support/local-brevo.js";

/**
 * Brevo's rate-limit buckets are separate (docs/api-limits): contacts at 10 RPS, companies and
 * link-unlink under "all other endpoints" at 100 per hour. The local Brevo enforces both, the
 * companies bucket scaled down to a few calls per hour; contacts must keep flowing when it closes.
 */
const API_KEY = "xkeysib-buckets";
const config = PROFILES_WITH_COMPANIES;
const startBrevo = localBrevos();
let brevo: BrevoServer;

async function setup(otherLimit: number) {
  let now = Date.UTC(2026, 0, 1);
  const sleeps: number[] = [];
  brevo = await startBrevoWithAcme(startBrevo, { apiKey: API_KEY, otherLimit, now: () => now });
  const client = localBrevoClient(brevo, API_KEY, {
    // A Lambda invocation: a few minutes left, far less than the hour the companies bucket needs.
    retryDeps: { sleep: async (ms) => { sleeps.push(ms); now += ms; }, random: () => 0, remainingMs: () => 300_000 },
    now: () => now,
  });
  const send = localBrevoSend(client, config, { companyIds: new Map(), pendingLinks: new Map() });
  return { send, sleeps, advance: (ms: number) => void (now += ms) };
}

const profiles = (count: number) =>
  Array.from({ length: count }, (_, i) => JSON.stringify({ $distinct_id: `u${i}`, $set: { $first_name: `F${i}`, company_id: "acme" } }));

describe("Brevo rate-limit buckets", () => {
  it("when the companies bucket closes, every contact still reaches Brevo; only the company links wait (handed back)", async () => {
    const { send, sleeps } = await setup(3);
    const outcomes = await send("profile", profiles(50));
    expect(brevo.contacts.size).toBe(50);
    // Lookup + 2 links fit in the companies bucket's 3 calls; the other links are handed back.
    expect(brevo.companies.get("c-acme")?.linkedContactsIds).toHaveLength(2);
    expect(outcomes.filter((o) => o.status === "sent")).toHaveLength(2);
    const waiting = outcomes.filter((o) => o.status === "retry");
    expect(waiting).toHaveLength(48);
    expect(waiting[0]).toMatchObject({ reason: expect.stringMatching(/contact upserted; company link waits: Brevo other rate limit resets in/) });
    // No call walked into the closed bucket, and nobody slept on it.
    expect(brevo.throttled).toBe(0);
    expect(sleeps).toEqual([]);
    expect(brevo.calls.filter((c) => c.path.startsWith("/v3/companies"))).toHaveLength(3);
  });

  it("the handed-back records link once the companies bucket reopens, without duplicating contacts", async () => {
    const { send, advance } = await setup(3);
    const lines = profiles(6);
    const first = await send("profile", lines);
    const handedBack = lines.filter((_, i) => first[i]?.status === "retry");
    expect(handedBack).toHaveLength(4);
    advance(3_600_000); // the companies bucket's window
    const second = await send("profile", handedBack);
    // The company id is cached: all 3 calls of the new window are links.
    expect(second.map((o) => o.status)).toEqual(["sent", "sent", "sent", "retry"]);
    expect(brevo.contacts.size).toBe(6);
    expect(brevo.companies.get("c-acme")?.linkedContactsIds).toHaveLength(5);
    expect(brevo.throttled).toBe(0);
  });

  it("a handed-back record that comes back while the companies bucket is still closed costs no call at all", async () => {
    const { send } = await setup(3);
    const lines = profiles(20);
    const first = await send("profile", lines);
    const handedBack = lines.filter((_, i) => first[i]?.status === "retry");
    const callsBefore = brevo.calls.length;
    const again = await send("profile", handedBack);
    expect(again.every((o) => o.status === "retry")).toBe(true);
    // Neither the contact upsert nor its read-back is repeated: contacts stay free for new records.
    expect(brevo.calls.length).toBe(callsBefore);
  });
});
