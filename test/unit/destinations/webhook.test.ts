import { describe, expect, it } from "vitest";
import { signBody, verifySignature } from "../../../lib/destinations/signature.js";
import { buildWebhookBody } from "../../../lib/destinations/webhook.js";
import { brazeAttributeObjects } from "../../../lib/destinations/braze.js";
import { brevoAttributes } from "../../../lib/destinations/brevo.js";
import { cohortSyncsSchema } from "../../../lib/cohorts/sync-config.js";
import type { DeliveryPage } from "../../../lib/cohorts/messages.js";
import { webhookPayloadSchema } from "../../support/webhook-server.js";

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
        mixpanel_session_id: "run-1",
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
});
