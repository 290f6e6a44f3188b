import { beforeEach, describe, expect, it } from "vitest";
import { type BrevoConfig, brevoConfigSchema } from "../../lib/config/brevo.js";
import type { BrevoServer } from "../../infra/local/peers/brevo-server.js";
import { localBrevoClient, localBrevoSend, localBrevos } from "../support/local-brevo.js";

/** Contact attribute clearing against a local Brevo that ignores wrong-typed values (null) as Brevo documents. */
const API_KEY = "xkeysib-contacts";
const base = {
  api_key_secret: "s",
  sync: { profiles: true },
  identifiers: { ext_id: "distinct_id", email_id: "$email" },
  property_mapping: { $email: "email", plan: "PLAN_TYPE", $first_name: "FIRSTNAME" },
};
const startBrevo = localBrevos();
let brevo: BrevoServer;
beforeEach(async () => {
  brevo = await startBrevo({ apiKey: API_KEY, listIds: [15] });
});

const send = (config: BrevoConfig) => localBrevoSend(localBrevoClient(brevo, API_KEY), config);
const profile = (update: Record<string, unknown>) => JSON.stringify({ $distinct_id: "user-1", ...update });

describe("Brevo $unset", () => {
  it("clears the attribute: the value is gone from the contact, other attributes stay", async () => {
    const forward = send(brevoConfigSchema.parse({ ...base, lists: { all_users: 15 } }));
    await forward("profile", [profile({ $set: { $email: "u1@example.com", plan: "pro", $first_name: "Ada" } })]);
    expect(brevo.contacts.get("u1@example.com")).toEqual({ PLAN_TYPE: "pro", FIRSTNAME: "Ada" });
    expect(await forward("profile", [profile({ $unset: ["plan"] })])).toEqual([{ status: "sent" }]);
    expect(brevo.contacts.get("u1@example.com")).toEqual({ FIRSTNAME: "Ada" });
    const read = await fetch(`${brevo.url}/contacts/user-1?identifierType=ext_id`, { headers: { "api-key": API_KEY } });
    expect(((await read.json()) as { attributes: Record<string, unknown> }).attributes).not.toHaveProperty("PLAN_TYPE");
    // Never a null on the wire: Brevo ignores values of the wrong type.
    expect(brevo.calls.filter((c) => c.body !== undefined).map((c) => JSON.stringify(c.body)).join("\n")).not.toContain("null");
  });

  it("a contact Brevo does not have is nothing to clear", async () => {
    const forward = send(brevoConfigSchema.parse({ ...base, lists: { all_users: 15 } }));
    expect(await forward("profile", [profile({ $unset: ["plan"] })])).toEqual([{ status: "sent" }]);
    expect(brevo.imports).toHaveLength(0);
  });

  it("without brevo.lists.all_users the clear is refused with its reason, not reported done", async () => {
    const forward = send(brevoConfigSchema.parse(base));
    await forward("profile", [profile({ $set: { $email: "u1@example.com", plan: "pro" } })]);
    const [outcome] = await forward("profile", [profile({ $unset: ["plan"] })]);
    expect(outcome).toMatchObject({ status: "rejected", reason: expect.stringMatching(/needs brevo.lists.all_users/) });
    expect(brevo.contacts.get("u1@example.com")).toEqual({ PLAN_TYPE: "pro" });
  });

  it("the local Brevo ignores a null attribute value, as Brevo does for wrong-typed values", async () => {
    const forward = send(brevoConfigSchema.parse(base));
    await forward("profile", [profile({ $set: { $email: "u1@example.com", plan: "pro" } })]);
    const put = await fetch(`${brevo.url}/contacts/user-1?identifierType=ext_id`, {
      method: "PUT",
      headers: { "api-key": API_KEY, "content-type": "application/json" },
      body: JSON.stringify({ attributes: { PLAN_TYPE: null } }),
    });
    expect(put.status).toBe(204);
    expect(brevo.contacts.get("u1@example.com")).toEqual({ PLAN_TYPE: "pro" });
  });
});
