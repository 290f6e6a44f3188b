import { beforeEach, describe, expect, it } from "vitest";
import { brevoConfigSchema } from "../../lib/config/brevo.js";
import type { BrevoServer } from "../../infra/local/peers/brevo-server.js";
import { localBrevoClient, localBrevoSend, localBrevos } from "../support/local-brevo.js";

/**
 * Company lookups against a local Brevo that, like a real server may, ignores the filter on a
 * custom attribute (Brevo documents filters on name and owner only): the relay acts on a company
 * only when its returned attribute equals the group marker.
 */
const API_KEY = "xkeysib-companies";
const config = brevoConfigSchema.parse({
  api_key_secret: "s",
  sync: { profiles: true, groups: true },
  identifiers: { ext_id: "distinct_id" },
  property_mapping: { $first_name: "FIRSTNAME" },
  companies: { property_mapping: { domain: "domain" }, group_keys: ["company_id"] },
});
const startBrevo = localBrevos();
let brevo: BrevoServer;
beforeEach(async () => {
  brevo = await startBrevo({ apiKey: API_KEY });
});

const send = () => localBrevoSend(localBrevoClient(brevo, API_KEY), config, { companyIds: new Map() });

const group = (id: string, update: Record<string, unknown>) => JSON.stringify({ $group_key: "company_id", $group_id: id, ...update });
const company = (id: string, marker: string | undefined, domain: string) =>
  brevo.companies.set(id, { id, name: id, attributes: { domain, ...(marker !== undefined ? { mixpanel_group: marker } : {}) }, linkedContactsIds: [] });

describe("Brevo company lookup", () => {
  it("an update for a group whose company is not among the answered ones touches no other company: with every company seen, it is created", async () => {
    company("c-acme", "company_id:acme", "acme.io");
    const outcomes = await send()("group", [group("globex", { $set: { domain: "globex.io" } }), group("globex", { $delete: "" })]);
    expect(outcomes).toEqual([{ status: "sent" }, { status: "sent" }]);
    expect(brevo.companies.get("c-acme")?.attributes).toEqual({ domain: "acme.io", mixpanel_group: "company_id:acme" });
    expect([...brevo.companies.keys()]).toEqual(["c-acme"]); // globex created, then deleted; acme untouched
  });

  it("a full page of companies none of which carries the marker is a refusal: the company may be on a later page", async () => {
    for (let i = 0; i < 60; i++) company(`c${i}`, `company_id:other-${i}`, `o${i}.io`);
    const outcomes = await send()("group", [group("globex", { $set: { domain: "globex.io" } }), group("globex", { $delete: "" })]);
    expect(outcomes[0]).toMatchObject({ status: "rejected", reason: expect.stringMatching(/none with mixpanel_group=company_id:globex.*not guessing/) });
    expect(outcomes[1]).toMatchObject({ status: "rejected" });
    expect(brevo.companies.size).toBe(60);
    expect(brevo.companies.get("c0")?.attributes.domain).toBe("o0.io");
  });

  it("finds the company whose attribute equals the marker among the answered ones", async () => {
    company("c-other", "company_id:other", "other.io");
    company("c-acme", "company_id:acme", "acme.io");
    const outcomes = await send()("group", [group("acme", { $set: { domain: "acme.com" } })]);
    expect(outcomes).toEqual([{ status: "sent" }]);
    expect(brevo.companies.get("c-acme")?.attributes.domain).toBe("acme.com");
    expect(brevo.companies.get("c-other")?.attributes.domain).toBe("other.io");
  });

  it("two companies carrying the same marker is an ambiguity: refused, neither touched", async () => {
    company("c1", "company_id:acme", "one.io");
    company("c2", "company_id:acme", "two.io");
    const [outcome] = await send()("group", [group("acme", { $set: { domain: "acme.com" } })]);
    expect(outcome).toMatchObject({ status: "rejected", reason: expect.stringMatching(/2 Brevo companies \(c1, c2\) carry mixpanel_group=company_id:acme/) });
    expect([brevo.companies.get("c1")?.attributes.domain, brevo.companies.get("c2")?.attributes.domain]).toEqual(["one.io", "two.io"]);
  });

  it("a contact is never linked to a company that does not carry its group's marker", async () => {
    company("c-acme", "company_id:acme", "acme.io");
    const [outcome] = await send()("profile", [JSON.stringify({ $distinct_id: "u1", $set: { $first_name: "Ada", company_id: "globex" } })]);
    expect(outcome).toEqual({ status: "sent" }); // globex does not exist yet: nothing to link
    expect(brevo.companies.get("c-acme")?.linkedContactsIds).toEqual([]);
    for (let i = 0; i < 60; i++) company(`c${i}`, `company_id:other-${i}`, `o${i}.io`);
    const [again] = await send()("profile", [JSON.stringify({ $distinct_id: "u1", $set: { $first_name: "Ada", company_id: "globex" } })]);
    expect(again).toMatchObject({ status: "rejected", reason: expect.stringMatching(/contact upserted; company lookup for company_id:globex/) });
    expect([...brevo.companies.values()].every((c) => c.linkedContactsIds.length === 0)).toBe(true);
  });

  it("with no company in Brevo, a $set creates one carrying the marker", async () => {
    expect(await send()("group", [group("acme", { $set: { $name: "Acme", domain: "acme.io" } })])).toEqual([{ status: "sent" }]);
    expect([...brevo.companies.values()].map((c) => [c.name, c.attributes])).toEqual([["Acme", { domain: "acme.io", mixpanel_group: "company_id:acme" }]]);
  });
});
