import { afterEach, describe, expect, it } from "vitest";
import { type Harness, startHarness } from "../unit/cohorts/harness.js";
import { BrevoServer } from "../../infra/local/peers/brevo-server.js";
import { WebhookReceiver } from "../../infra/local/peers/webhook-server.js";

/** One export, many destinations: the cohort is queried once per run, each destination has its own ledger and health. */
const MIN = 60_000;
const SIGNING = "whsec-0123456789abcdef";

describe("fan-out: one sync, several destinations", () => {
  let h: Harness;
  let receiver: WebhookReceiver;
  let brevo: BrevoServer;
  afterEach(async () => {
    await receiver?.close();
    await brevo?.close();
    await h?.close();
  });

  it("queries once, delivers to every destination, and keeps health per destination", async () => {
    receiver = new WebhookReceiver({ signingSecret: SIGNING, now: () => h.clock.now() });
    brevo = new BrevoServer({ apiKey: "xkeysib-test", listIds: [12], limit: 100, windowMs: 1000, now: () => h.clock.now() });
    const hookUrl = await receiver.start();
    const brevoUrl = await brevo.start();
    h = await startHarness({
      cohorts: [{ id: 9, name: "Fans", where: (p) => p.fan === true }],
      syncs: [
        {
          id: "fans",
          cohort_id: 9,
          properties: ["plan"],
          destinations: [
            { id: "hook", type: "webhook", url: hookUrl, signing_secret: "s/hook", member_properties: { plan: "tier" } },
            { id: "crm", type: "brevo", list_id: 12, base_url: brevoUrl, api_key_secret: "s/brevo", attributes: { $first_name: "FIRSTNAME", nickname: "NICKNAME" } },
          ],
        },
      ],
    });
    h.secrets.setSecret("s/hook", { secret: SIGNING });
    h.secrets.setSecret("s/brevo", { api_key: "xkeysib-test" });
    for (let i = 1; i <= 5; i++) h.profiles.set(`f${i}`, { fan: true, $email: `f${i}@example.com`, $first_name: `F${i}`, nickname: `n${i}`, plan: "pro" });
    expect(h.syncs.map((s) => s.id)).toEqual(["fans.hook", "fans.crm"]);

    const first = await h.runExport();
    expect(first.syncs["fans.hook"]?.outcome).toBe("enqueued");
    expect(first.syncs["fans.crm"]?.outcome).toBe("enqueued");
    // One /cohorts/list and one /engage for both destinations, asking for the union of their properties.
    expect(h.query.queries.map((q) => q.path)).toEqual(["/cohorts/list", "/engage"]);
    expect(JSON.parse(h.query.queries[1]?.form.output_properties ?? "[]")).toEqual(expect.arrayContaining(["plan", "nickname", "$first_name"]));
    expect((await h.drain()).sort()).toEqual(["delivered", "delivered"]);
    expect(receiver.members(9).get("f1")).toMatchObject({ email: "f1@example.com", tier: "pro" });
    expect(brevo.contacts.get("f1@example.com")).toEqual({ FIRSTNAME: "F1", NICKNAME: "n1" });
    expect(brevo.lists.get(12)?.size).toBe(5);

    // Brevo refuses the import: only that destination turns unhealthy; the webhook advances.
    h.clock.advance(MIN);
    await h.runExport();
    h.profiles.set("f6", { fan: true, $email: "f6@example.com", plan: "pro" });
    brevo.failNext({ status: 400, path: "/v3/contacts/import", body: JSON.stringify({ code: "invalid_parameter", message: "attribute NICKNAME does not exist" }) });
    h.clock.advance(30 * MIN);
    const second = await h.runExport();
    expect(h.query.queries.filter((q) => q.path === "/engage")).toHaveLength(2);
    expect(second.syncs["fans.crm"]?.outcome).toBe("enqueued");
    const outcomes = await h.drain();
    expect(outcomes).toContain("UpstreamRejectedError");
    h.clock.advance(MIN);
    const settle = await h.runExport();
    expect(settle.syncs["fans.hook"]?.outcome).toBe("advanced");
    expect(settle.syncs["fans.crm"]?.outcome).toBe("failed");
    expect((await h.store.readState("fans.hook")).healthy).toBe(true);
    expect((await h.store.readState("fans.crm")).healthy).toBe(false);
    expect(receiver.members(9).has("f6")).toBe(true);
  });

  it("config: destinations need ids, and exactly one of destination / destinations", async () => {
    const { parseStageConfig } = await import("../../lib/config/stage.js");
    const hook = { type: "webhook", url: "https://hooks.example.com/x", signing_secret: "s" };
    expect(() => parseStageConfig({ cohort_syncs: [{ id: "a", cohort_id: 1, destinations: [hook] }] }, "t")).toThrow("cohort_syncs.0.destinations.0.id");
    expect(() => parseStageConfig({ cohort_syncs: [{ id: "a", cohort_id: 1, destinations: [{ ...hook, id: "x" }, { ...hook, id: "x" }] }] }, "t")).toThrow(/duplicate destination id/);
    expect(() => parseStageConfig({ cohort_syncs: [{ id: "a", cohort_id: 1 }] }, "t")).toThrow(/either destination or destinations/);
  });
});
