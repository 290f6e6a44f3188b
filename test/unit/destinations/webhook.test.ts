import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { signBody, verifySignature } from "../../../lib/destinations/signature.js";
import { buildWebhookBody } from "../../../lib/destinations/webhook.js";
import { brazeAttributeObjects } from "../../../lib/destinations/braze.js";
import { brevoAttributes } from "../../../lib/destinations/brevo.js";
import { cohortSyncsSchema, outputPropertiesFor } from "../../../lib/config/cohort-syncs.js";
import type { DeliveryPage } from "../../../lib/cohorts/messages.js";
import { WebhookReceiver, webhookPayloadSchema } from "../../../infra/local/peers/webhook-server.js";

const [sync] = cohortSyncsSchema.parse([
  { id: "w", cohort_id: 42, properties: ["plan", "$city"], destination: { type: "webhook", url: "https://h.example/x", signing_secret: "s" } },
]);
const page: DeliveryPage = {
  v: 1,
  sync_id: "w",
  run_id: "run-1",
  project_id: "123",
  cohort: { id: 42, name: "VIP", description: "big spenders" },
  action: "add_members",
  page: 2,
  total_pages: 3,
  members: [
    { id: "u1", props: { $email: "a@x", $first_name: "A", $last_name: "B", $phone: "+33", plan: "pro", $city: "Paris" } },
    { id: "u2", props: {} },
  ],
};

describe("webhook payload and signature", () => {
  it("builds Mixpanel's exact cohort-sync JSON", () => {
    const body = buildWebhookBody(page, sync!);
    expect(body).toEqual({
      action: "add_members",
      parameters: {
        mixpanel_project_id: "123",
        mixpanel_cohort_id: "42",
        mixpanel_cohort_name: "VIP",
        mixpanel_cohort_description: "big spenders",
        mixpanel_session_id: "run-1.add_members",
        page_info: { total_pages: 3, page_count: 2 },
        members: [
          { email: "a@x", mixpanel_distinct_id: "u1", first_name: "A", last_name: "B", phone_number: "+33", plan: "pro", $city: "Paris" },
          { email: "", mixpanel_distinct_id: "u2", first_name: "", last_name: "", phone_number: "" },
        ],
      },
    });
    expect(webhookPayloadSchema.safeParse(body).success).toBe(true);
  });

  it("signs timestamp.body with HMAC-SHA256 and verifies; tampering, wrong secret and stale timestamps fail", () => {
    const body = JSON.stringify({ hello: "world" });
    const sig = signBody("topsecret-topsecret", 1_700_000_000, body);
    expect(sig).toMatch(/^v1=[0-9a-f]{64}$/);
    const ok = { secret: "topsecret-topsecret", body, timestamp: "1700000000", signature: sig, nowSeconds: 1_700_000_100 };
    expect(verifySignature(ok)).toEqual({ ok: true });
    expect(verifySignature({ ...ok, body: body.replace("world", "w0rld") }).ok).toBe(false);
    expect(verifySignature({ ...ok, secret: "other-secret-xxxxx" }).ok).toBe(false);
    expect(verifySignature({ ...ok, nowSeconds: 1_700_000_301 })).toEqual({ ok: false, reason: "timestamp outside tolerance" });
  });
});

describe("a non-ASCII signature header is refused, never a crash", () => {
  const secret = "topsecret-topsecret";
  const body = JSON.stringify({ hello: "world" });
  const nowSeconds = Math.floor(Date.now() / 1000);
  // Same string length as "v1=<64 hex>", but 2 bytes per character in UTF-8.
  const nonAscii = `v1=${"é".repeat(64)}`;

  it("verifySignature compares byte lengths", () => {
    expect(nonAscii.length).toBe(signBody(secret, nowSeconds, body).length);
    expect(verifySignature({ secret, body, timestamp: String(nowSeconds), signature: nonAscii, nowSeconds })).toEqual({
      ok: false,
      reason: "signature mismatch",
    });
  });

  it("the documented verification snippet (docs/cohorts.md) returns false instead of throwing", async () => {
    const doc = readFileSync(new URL("../../../docs/cohorts.md", import.meta.url), "utf8");
    const snippet = /```js\n(import \{ createHmac, timingSafeEqual \}[\s\S]*?export function verifyRelaySignature[\s\S]*?)```/.exec(doc)?.[1];
    expect(snippet).toBeDefined();
    const file = join(mkdtempSync(join(tmpdir(), "readme-snippet-")), "verify.mjs");
    writeFileSync(file, snippet ?? "");
    const mod: unknown = await import(pathToFileURL(file).href);
    const verify = (mod as { verifyRelaySignature: (s: string, b: string, h: Record<string, string>) => boolean }).verifyRelaySignature;
    const headers = (signature: string) => ({ "x-relay-timestamp": String(nowSeconds), "x-relay-signature": signature });
    expect(verify(secret, body, headers(signBody(secret, nowSeconds, body)))).toBe(true);
    expect(verify(secret, body, headers(nonAscii))).toBe(false);
  });

  it("the reference receiver answers 401 over HTTP", async () => {
    const receiver = new WebhookReceiver({ signingSecret: secret });
    const url = new URL(await receiver.start());
    try {
      const status = await new Promise<number>((resolve, reject) => {
        const req = request(
          url,
          {
            method: "POST",
            headers: { "content-type": "application/json", "x-relay-timestamp": String(nowSeconds), "x-relay-signature": nonAscii },
          },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        req.on("error", reject);
        req.end(body);
      });
      expect(status).toBe(401);
      expect(receiver.refusals).toEqual([{ status: 401, reason: "signature: signature mismatch" }]);
    } finally {
      await receiver.close();
    }
  });
});

describe("destination builders", () => {
  it("Brevo maps profile properties to UPPERCASE attributes and drops empty ones", () => {
    expect(brevoAttributes({ id: "u", props: { $first_name: "Ann", $last_name: "" } }, { $first_name: "FIRSTNAME", $last_name: "LASTNAME" })).toEqual({ FIRSTNAME: "Ann" });
  });
  it("Braze uses the configured external id property, skips members without one, sets _update_existing_only", () => {
    const [braze] = cohortSyncsSchema.parse([
      { id: "b", cohort_id: 1, destination: { type: "braze", rest_endpoint: "https://rest.example", api_key_secret: "k", external_id_property: "$braze_id", value: "cohort_42", update_existing_only: false } },
    ]);
    if (braze?.destination.type !== "braze") throw new Error("config");
    const objects = brazeAttributeObjects(
      { ...page, action: "remove_members", members: [{ id: "u1", props: { $braze_id: "B1" } }, { id: "u2", props: {} }] },
      braze.destination,
    );
    expect(objects).toEqual([{ external_id: "B1", mixpanel_cohorts: { remove: ["cohort_42"] }, _update_existing_only: false }]);
  });
  it("Braze sends the mapped profile attributes with an add, never with a removal", () => {
    const [braze] = cohortSyncsSchema.parse([
      { id: "b", cohort_id: 1, destination: { type: "braze", rest_endpoint: "https://rest.example", api_key_secret: "k", attributes: { plan: "plan_tier", $city: "home_city" } } },
    ]);
    if (braze?.destination.type !== "braze") throw new Error("config");
    const member = { id: "u1", props: { plan: "pro", $city: "Paris" } };
    expect(brazeAttributeObjects({ ...page, action: "add_members", members: [member] }, braze.destination)).toEqual([
      { external_id: "u1", plan_tier: "pro", home_city: "Paris", mixpanel_cohorts: { add: ["VIP"] }, _update_existing_only: true },
    ]);
    expect(brazeAttributeObjects({ ...page, action: "remove_members", members: [member] }, braze.destination)).toEqual([
      { external_id: "u1", mixpanel_cohorts: { remove: ["VIP"] }, _update_existing_only: true },
    ]);
  });
});

describe("per-destination member properties (webhook)", () => {
  it("renames exported properties as member keys and takes the email from the chosen property", () => {
    const [renamed] = cohortSyncsSchema.parse([
      {
        id: "w",
        cohort_id: 42,
        properties: ["plan", "$city"],
        destination: {
          type: "webhook",
          url: "https://h.example/x",
          signing_secret: "s",
          email_property: "work_email",
          member_properties: { plan: "tier", $city: "city", $phone: "mobile" },
        },
      },
    ]);
    if (!renamed) throw new Error("config");
    const body = buildWebhookBody(
      { ...page, members: [{ id: "u1", props: { $email: "home@x", work_email: "work@x", plan: "pro", $city: "Paris", $phone: "+33" } }] },
      renamed,
    );
    expect(body.parameters.members).toEqual([
      { email: "work@x", mixpanel_distinct_id: "u1", first_name: "", last_name: "", phone_number: "+33", tier: "pro", city: "Paris", mobile: "+33" },
    ]);
    expect(webhookPayloadSchema.safeParse(body).success).toBe(true);
    expect(outputPropertiesFor(renamed)).toEqual(expect.arrayContaining(["work_email", "plan", "$city", "$phone"]));
  });

  it("a rename cannot overwrite one of Mixpanel's member fields", () => {
    const [clash] = cohortSyncsSchema.parse([
      { id: "w", cohort_id: 1, destination: { type: "webhook", url: "https://h.example/x", signing_secret: "s", member_properties: { plan: "email" } } },
    ]);
    if (!clash) throw new Error("config");
    const body = buildWebhookBody({ ...page, members: [{ id: "u1", props: { $email: "a@x", plan: "pro" } }] }, clash);
    expect(body.parameters.members[0]?.email).toBe("a@x");
  });
});
