import { afterEach, describe, expect, it } from "vitest";
import { keys } from "../../lib/cohorts/store.js";
import { type Harness, startHarness } from "../unit/cohorts/harness.js";
import { BrevoServer } from "../../infra/local/peers/brevo-server.js";
import { BrazeServer } from "../../infra/local/peers/braze-server.js";

const MIN = 60_000;

describe("cohort export → Brevo list (strict local Brevo)", () => {
  let h: Harness;
  let brevo: BrevoServer;
  afterEach(async () => {
    await brevo?.close();
    await h?.close();
  });

  async function setup(members: number, limit = 10) {
    brevo = new BrevoServer({ apiKey: "xkeysib-test", listIds: [12], limit, windowMs: 1000, now: () => h.clock.now() });
    const base = await brevo.start();
    h = await startHarness({
      cohorts: [{ id: 3, name: "Trial", where: (p) => p.trial === true }],
      syncs: [
        {
          id: "trial-brevo",
          cohort_id: 3,
          destination: {
            type: "brevo",
            list_id: 12,
            base_url: base,
            api_key_secret: "relay/brevo",
            attributes: { $first_name: "FIRSTNAME", $last_name: "LASTNAME", $phone: "SMS" },
          },
        },
      ],
    });
    h.secrets.setSecret("relay/brevo", { api_key: "xkeysib-test" });
    for (let i = 0; i < members; i++) {
      h.profiles.set(`b${i}`, {
        trial: true,
        ...(i % 10 === 9 ? {} : { $email: `b${i}@example.com` }),
        $first_name: `F${i}`,
        $last_name: `L${i}`,
      });
    }
  }

  it("imports the page (upsert + list membership in one /contacts/import), skips members without email, removes in chunks of 150", async () => {
    await setup(400);
    await h.runExport();
    expect(await h.drain()).toEqual(["delivered"]);
    // The 202 import is followed up: the page counts as delivered once its process is completed.
    expect(brevo.calls.map((c) => [c.path, c.status])).toEqual([["/v3/contacts/import", 202], ["/v3/processes/1", 200]]);
    expect(brevo.imports[0]).toMatchObject({ contacts: 360, listIds: [12] }); // every 10th member has no email
    expect(brevo.calls[0]?.body).toMatchObject({ updateExistingContacts: true, emptyContactsAttributes: false });
    expect(brevo.lists.get(12)?.size).toBe(360);
    expect(brevo.contacts.get("b1@example.com")).toEqual({ FIRSTNAME: "F1", LASTNAME: "L1" });
    expect(brevo.throttled).toBe(0);
    expect(brevo.calls.some((c) => c.path.includes("/contacts/batch"))).toBe(false);

    // Removal next run: by email kept in the snapshot.
    h.clock.advance(5 * MIN);
    await h.runExport();
    h.profiles.set("b0", { trial: false, $email: "b0@example.com" });
    h.profiles.set("b1", { trial: true, $email: "b1@example.com", $first_name: "Changed", $last_name: "L1" });
    h.clock.advance(30 * MIN);
    await h.runExport();
    await h.drain();
    expect(brevo.lists.get(12)?.has("b0@example.com")).toBe(false);
    expect(brevo.contacts.get("b1@example.com")?.FIRSTNAME).toBe("Changed");
    expect(brevo.lists.get(12)?.size).toBe(359);

    expect(brevo.calls.filter((c) => c.path.endsWith("/contacts/remove")).map((c) => (c.body as { emails: string[] }).emails)).toEqual([["b0@example.com"]]);
    // b2 changes email: the new address is imported and the old one removed from the list.
    h.clock.advance(5 * MIN);
    await h.runExport();
    h.profiles.set("b2", { trial: true, $email: "b2.new@example.com", $first_name: "F2", $last_name: "L2" });
    h.clock.advance(30 * MIN);
    await h.runExport();
    await h.drain();
    expect(brevo.lists.get(12)?.has("b2.new@example.com")).toBe(true);
    expect(brevo.lists.get(12)?.has("b2@example.com")).toBe(false);
    expect(brevo.lists.get(12)?.size).toBe(359);
  });

  it("a 1000-member full sync fits in one call; the 1000-member removal that follows takes 7 calls at 10/s", async () => {
    await setup(1000);
    for (let i = 0; i < 1000; i++) h.profiles.set(`b${i}`, { trial: true, $email: `b${i}@example.com`, $first_name: `F${i}` });
    await h.runExport();
    expect(await h.drain()).toEqual(["delivered"]);
    expect(brevo.calls.map((c) => c.path)).toEqual(["/v3/contacts/import", "/v3/processes/1"]);
    expect(brevo.lists.get(12)?.size).toBe(1000);
    h.clock.advance(5 * MIN);
    await h.runExport();
    for (let i = 0; i < 1000; i++) h.profiles.set(`b${i}`, { trial: false, $email: `b${i}@example.com` });
    h.clock.advance(30 * MIN);
    // Everyone leaving trips the mass-removal guard once; the next run finds the same and confirms it.
    expect((await h.runExport()).syncs["trial-brevo"]?.outcome).toBe("held");
    expect(await h.drain()).toEqual([]);
    expect((await h.store.readState("trial-brevo")).unhealthy_reason).toMatch(/would remove 1000 of 1000 members/);
    h.clock.advance(30 * MIN);
    expect((await h.runExport()).syncs["trial-brevo"]?.outcome).toBe("enqueued");
    expect(await h.drain()).toEqual(["delivered"]);
    expect(brevo.calls.filter((c) => c.path.endsWith("/contacts/remove"))).toHaveLength(7);
    expect(brevo.lists.get(12)?.size).toBe(0);
    expect(brevo.throttled).toBe(0);
  });

  it("a 202 import counts as delivered only once GET /v3/processes/{id} says completed; redeliveries check, never re-import", async () => {
    await setup(5, 100);
    brevo.importProgress = ["queued", "in_process"];
    await h.runExport();
    const [message] = await h.takeMessages();
    const runId = (await h.store.readState("trial-brevo")).delivery?.run_id ?? "";
    await expect(h.deliver(message ?? "", {}, 1)).rejects.toThrow(/process 1 is still queued/);
    expect(await h.store.isDelivered("trial-brevo", runId, "members", 1)).toBe(false);
    await expect(h.deliver(message ?? "", {}, 2)).rejects.toThrow(/still in_process/);
    expect(await h.deliver(message ?? "", {}, 3)).toBe("delivered");
    expect(brevo.imports).toHaveLength(1);
    expect(brevo.calls.map((c) => c.path)).toEqual(["/v3/contacts/import", "/v3/processes/1", "/v3/processes/1", "/v3/processes/1"]);
  });

  it("an import still unfinished on the page's last receive fails the run (deliveries exhausted)", async () => {
    await setup(5, 100);
    brevo.importProgress = Array.from({ length: 20 }, () => "queued");
    await h.runExport();
    const [message] = await h.takeMessages();
    const dead: string[] = [];
    expect(await h.deliver(message ?? "", { maxReceives: 1, deadLetter: async (r) => void dead.push(r) }, 1)).toBe("dead_lettered");
    expect(dead[0]).toMatch(/deliveries exhausted after 1 receive\(s\).*still queued/);
    h.clock.advance(MIN);
    expect((await h.runExport()).syncs["trial-brevo"]?.outcome).toBe("failed");
  });

  it("backs off on a 429 using x-sib-ratelimit-reset, then delivers", async () => {
    await setup(5, 100);
    await h.runExport();
    brevo.failNext({ status: 429, body: JSON.stringify({ code: "too_many_requests", message: "slow down" }), path: "/v3/contacts/import" });
    expect(await h.drain()).toEqual(["delivered"]);
    expect(brevo.calls.filter((c) => c.status === 429)).toHaveLength(1);
    expect(h.sleeps[0]).toBeGreaterThanOrEqual(1000);
    expect(brevo.lists.get(12)?.size).toBe(5);
  });

  it("a 4xx refusal is permanent: ledger record with the response body, unhealthy metric, no retry", async () => {
    await setup(3, 100);
    await h.runExport();
    brevo.failNext({ status: 400, body: JSON.stringify({ code: "invalid_parameter", message: "SMS attribute invalid" }), path: "/v3/contacts/import" });
    const outcomes = await h.drain(3);
    expect(outcomes[0]).toBe("UpstreamRejectedError");
    const state = await h.store.readState("trial-brevo");
    const runId = state.delivery?.run_id ?? "";
    const failure = await h.store.readFailure(keys.failed("trial-brevo", runId, "members", 1));
    expect(failure?.status).toBe(400);
    expect(failure?.body).toContain("SMS attribute invalid");
    expect(h.metrics.filter((m) => m.name === "CohortSyncUnhealthy")).not.toHaveLength(0);
    h.clock.advance(5 * MIN);
    const report = await h.runExport();
    expect(report.syncs["trial-brevo"]?.outcome).toBe("failed");
    expect((await h.store.readState("trial-brevo")).snapshot).toBeUndefined();
  });
});

describe("cohort export → Braze attribute (strict local Braze)", () => {
  let h: Harness;
  let braze: BrazeServer;
  afterEach(async () => {
    await braze?.close();
    await h?.close();
  });

  it("adds the cohort name with 75 attribute objects per call, removes it when a user leaves, sets _update_existing_only", async () => {
    const existing = Array.from({ length: 200 }, (_, i) => `z${i}`);
    braze = new BrazeServer({ apiKey: "braze-key", existing });
    const endpoint = await braze.start();
    h = await startHarness({
      cohorts: [{ id: 5, name: "Churn risk", where: (p) => p.risk === "high" }],
      syncs: [
        {
          id: "churn-braze",
          cohort_id: 5,
          destination: { type: "braze", rest_endpoint: endpoint, api_key_secret: "relay/braze", attribute: "mp_cohorts" },
        },
      ],
    });
    h.secrets.setSecret("relay/braze", { api_key: "braze-key" });
    for (const id of existing) h.profiles.set(id, { risk: "high" });
    h.profiles.set("not-in-braze", { risk: "high" });
    await h.runExport();
    expect(await h.drain()).toEqual(["delivered"]);
    expect(braze.calls.map((c) => c.attributes)).toEqual([75, 75, 51]);
    expect(braze.arrayOf("z0", "mp_cohorts")).toEqual(["Churn risk"]);
    expect(braze.users.has("not-in-braze")).toBe(false); // _update_existing_only: true (default)

    h.clock.advance(5 * MIN);
    await h.runExport();
    h.profiles.set("z7", { risk: "low" });
    h.clock.advance(30 * MIN);
    await h.runExport();
    await h.drain();
    expect(braze.arrayOf("z7", "mp_cohorts")).toEqual([]);
    expect(braze.arrayOf("z8", "mp_cohorts")).toEqual(["Churn risk"]);
    expect(braze.calls.at(-1)?.attributes).toBe(1);
  });
});
