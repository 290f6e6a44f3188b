import { describe, expect, it } from "vitest";
import { planPages } from "../../../lib/cohorts/plan.js";
import { cohortSyncsSchema } from "../../../lib/config/cohort-syncs.js";

describe("page plan", () => {
  const webhook = cohortSyncsSchema.parse([
    { id: "w", cohort_id: 1, destination: { type: "webhook", url: "https://h.example/x", signing_secret: "s" } },
  ])[0]!.destination;
  const brevo = cohortSyncsSchema.parse([
    { id: "b", cohort_id: 1, destination: { type: "brevo", list_id: 2, api_key_secret: "k" } },
  ])[0]!.destination;
  it("webhooks: full = members only (≥1 page); diff sends empty add/remove calls", () => {
    expect(planPages(webhook, true, 2500, 7).expected).toEqual({ members: 3, add_members: 0, remove_members: 0 });
    expect(planPages(webhook, true, 0, 0).expected).toEqual({ members: 1, add_members: 0, remove_members: 0 });
    expect(planPages(webhook, false, 0, 0).expected).toEqual({ members: 0, add_members: 1, remove_members: 1 });
    expect(planPages(webhook, false, 1001, 1000).expected).toEqual({ members: 0, add_members: 2, remove_members: 1 });
  });
  it("Brevo/Braze: full also removes leavers; nothing when nothing changed", () => {
    expect(planPages(brevo, true, 10, 3).expected).toEqual({ members: 1, add_members: 0, remove_members: 1 });
    expect(planPages(brevo, false, 0, 0).expected).toEqual({ members: 0, add_members: 0, remove_members: 0 });
  });
});
