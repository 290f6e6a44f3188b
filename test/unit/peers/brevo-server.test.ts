import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { BrevoServer, MAX_EVENTS_BATCH_BYTES } from "../../../infra/local/peers/brevo-server.js";

/** The local Brevo's own contract (Brevo's published limits and answers), checked with plain HTTP. */
const KEY = "xkeysib-fake";
let now = 0;
let brevo: BrevoServer;
beforeEach(async () => {
  now = Date.UTC(2026, 0, 1);
  brevo = new BrevoServer({ apiKey: KEY, listIds: [7], limit: 1000, windowMs: 1000, otherLimit: 3, otherWindowMs: 60_000, now: () => now });
  await brevo.start();
});
afterEach(() => brevo.close());

async function call(method: string, path: string, body?: unknown) {
  const response = await fetch(`${brevo.url}${path}`, {
    method,
    headers: { "api-key": KEY, ...(body !== undefined ? { "content-type": "application/json" } : {}) },
    ...(body !== undefined ? { body: typeof body === "string" ? body : JSON.stringify(body) } : {}),
  });
  const text = await response.text();
  return { status: response.status, body: text === "" ? undefined : JSON.parse(text), headers: response.headers };
}

const event = (i: number, props: Record<string, unknown> = {}) => ({ event_name: "viewed", identifiers: { ext_id: `u${i}` }, event_properties: { n: i, ...props } });

describe("local Brevo: events batch", () => {
  it("takes 200 events, refuses 201 with a 400 {code, message} naming no event", async () => {
    expect((await call("POST", "/events/batch", { events: Array.from({ length: 200 }, (_, i) => event(i)) })).status).toBe(202);
    const over = await call("POST", "/events/batch", { events: Array.from({ length: 201 }, (_, i) => event(i)) });
    expect(over.status).toBe(400);
    expect(over.body).toEqual({ code: "invalid_parameter", message: expect.stringMatching(/at most 200/) });
    expect(brevo.events).toHaveLength(200);
  });

  it("refuses a body over 512 KB with a 413 and keeps none of its events", async () => {
    const events = Array.from({ length: 12 }, (_, i) => event(i, { blob: "x".repeat(45_000) }));
    const body = JSON.stringify({ events });
    expect(Buffer.byteLength(body)).toBeGreaterThan(MAX_EVENTS_BATCH_BYTES);
    const answer = await call("POST", "/events/batch", body);
    expect(answer.status).toBe(413);
    expect(answer.body).toMatchObject({ code: "payload_too_large" });
    expect(brevo.events).toHaveLength(0);
  });

  it("answers 207 with the failed eventIndexes for a partly valid batch", async () => {
    const answer = await call("POST", "/events/batch", { events: [event(0), { event_name: "bad name", identifiers: { ext_id: "x" } }] });
    expect(answer.status).toBe(207);
    expect(answer.body).toMatchObject({ failed_events: 1, errors: [{ eventIndex: [1] }] });
  });
});

describe("local Brevo: import processes", () => {
  it("answers queued → processing → completed, and the final status stays", async () => {
    brevo.importProgress = ["queued", "processing"];
    const imported = await call("POST", "/contacts/import", { jsonBody: [{ email: "a@example.com" }], listIds: [7] });
    expect(imported.status).toBe(202);
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await call("GET", `/processes/${imported.body.processId}`)).body.status);
    expect(statuses.slice(0, 3)).toEqual(["queued", "processing", "completed"]);
  });

  it("an import with emptyContactsAttributes erases the empty fields; without it they change nothing", async () => {
    await call("POST", "/contacts/import", { jsonBody: [{ email: "a@example.com", attributes: { PLAN: "pro", NAME: "A" } }], listIds: [7] });
    await call("POST", "/contacts/import", { jsonBody: [{ email: "a@example.com", attributes: { PLAN: "" } }], listIds: [7] });
    expect(brevo.contacts.get("a@example.com")).toEqual({ PLAN: "pro", NAME: "A" });
    await call("POST", "/contacts/import", { jsonBody: [{ email: "a@example.com", attributes: { PLAN: "" } }], listIds: [7], emptyContactsAttributes: true });
    expect(brevo.contacts.get("a@example.com")).toEqual({ NAME: "A" });
  });
});

describe("local Brevo: contact attributes", () => {
  it("ignores values of the wrong type (null, objects, mixed arrays)", async () => {
    await call("POST", "/contacts", { email: "b@example.com", attributes: { PLAN: "pro" } });
    expect((await call("PUT", "/contacts/b@example.com?identifierType=email_id", { attributes: { PLAN: null, X: { a: 1 }, Y: [1, "a"], Z: ["a"] } })).status).toBe(204);
    expect(brevo.contacts.get("b@example.com")).toEqual({ PLAN: "pro", Z: ["a"] });
  });
});

describe("local Brevo: companies", () => {
  it("honours the documented name filter, ignores a filter on a custom attribute", async () => {
    await call("POST", "/companies", { name: "Acme", attributes: { mixpanel_group: "company_id:acme" } });
    await call("POST", "/companies", { name: "Globex", attributes: { mixpanel_group: "company_id:globex" } });
    now += 60_000; // a fresh window of the 3-call "all other endpoints" bucket
    const byName = await call("GET", `/companies?${encodeURIComponent("filters[attributes.name]")}=Globex`);
    expect(byName.body.items.map((c: { name: string }) => c.name)).toEqual(["Globex"]);
    const byCustom = await call("GET", `/companies?${encodeURIComponent("filters[attributes.mixpanel_group]")}=company_id:globex`);
    expect(byCustom.body.items.map((c: { name: string }) => c.name)).toEqual(["Acme", "Globex"]);
  });

  it("companies and link-unlink share the 'all other endpoints' bucket, apart from contacts", async () => {
    for (let i = 0; i < 3; i++) expect((await call("GET", "/companies")).status).toBe(200);
    const limited = await call("PATCH", "/companies/link-unlink/c1", { linkContactIds: [1] });
    expect(limited.status).toBe(429);
    expect(limited.headers.get("x-sib-ratelimit-remaining")).toBe("0");
    expect(Number(limited.headers.get("x-sib-ratelimit-reset"))).toBeGreaterThan(0);
    expect((await call("POST", "/contacts", { email: "c@example.com" })).status).toBe(201);
    now += 60_000;
    expect((await call("GET", "/companies")).status).toBe(200);
  });
});
