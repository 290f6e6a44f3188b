import { afterEach, describe, expect, it } from "vitest";
import { keys } from "../../lib/cohorts/store.js";
import { type Harness, startHarness } from "../unit/cohorts/harness.js";
import type { BrevoServer } from "../../infra/local/peers/brevo-server.js";
import { localBrevos } from "../support/local-brevo.js";

/** Brevo's import process statuses (get-process reference): only completed, failed and cancelled end a process. */
describe("cohort Brevo list: import process statuses", () => {
  let h: Harness;
  const startBrevo = localBrevos();
  let brevo: BrevoServer;
  afterEach(async () => {
    await h?.close();
  });

  async function setup() {
    brevo = await startBrevo({ apiKey: "xkeysib-test", listIds: [12], limit: 100, windowMs: 1000, now: () => h.clock.now() });
    const base = brevo.url;
    h = await startHarness({
      cohorts: [{ id: 3, name: "Trial", where: (p) => p.trial === true }],
      syncs: [{ id: "trial-brevo", cohort_id: 3, destination: { type: "brevo", list_id: 12, base_url: base, api_key_secret: "relay/brevo", attributes: {} } }],
    });
    h.secrets.setSecret("relay/brevo", { api_key: "xkeysib-test" });
    for (let i = 0; i < 5; i++) h.profiles.set(`b${i}`, { trial: true, $email: `b${i}@example.com` });
  }

  it("queued → processing → completed: processing is still running, the page is delivered once completed", async () => {
    await setup();
    brevo.importProgress = ["queued", "processing", "processing"];
    await h.runExport();
    const [message] = await h.takeMessages();
    const runId = (await h.store.readState("trial-brevo")).delivery?.run_id ?? "";
    await expect(h.deliver(message ?? "", {}, 1)).rejects.toThrow(/process 1 is still queued/);
    await expect(h.deliver(message ?? "", {}, 2)).rejects.toThrow(/still processing/);
    await expect(h.deliver(message ?? "", {}, 3)).rejects.toThrow(/still processing/);
    expect(await h.store.isDelivered("trial-brevo", runId, "members", 1)).toBe(false);
    expect(await h.store.readFailure(keys.failed("trial-brevo", runId, "members", 1))).toBeUndefined();
    expect(await h.deliver(message ?? "", {}, 4)).toBe("delivered");
    expect(brevo.imports).toHaveLength(1);
  });

  it("a status Brevo may add later is taken as still running, not as a failure", async () => {
    await setup();
    brevo.importProgress = ["validating"];
    await h.runExport();
    const [message] = await h.takeMessages();
    await expect(h.deliver(message ?? "", {}, 1)).rejects.toThrow(/still validating/);
    expect(await h.deliver(message ?? "", {}, 2)).toBe("delivered");
  });

  it.each(["failed", "cancelled"] as const)("an import that ends %s is a permanent refusal of the page", async (outcome) => {
    await setup();
    brevo.importOutcome = outcome;
    await h.runExport();
    const [message] = await h.takeMessages();
    const runId = (await h.store.readState("trial-brevo")).delivery?.run_id ?? "";
    await expect(h.deliver(message ?? "", {}, 1)).rejects.toThrow(new RegExp(`ended as "${outcome}"`));
    expect(await h.store.isDelivered("trial-brevo", runId, "members", 1)).toBe(false);
  });
});
