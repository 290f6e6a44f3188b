import { newBrevoRateGates } from "../../lib/brevo/client.js";
import { describe, expect, it } from "vitest";
import type { DeliveryPage } from "../../lib/cohorts/messages.js";
import { cohortSyncsSchemaFor } from "../../lib/config/cohort-syncs.js";
import { sendBrevoPage } from "../../lib/destinations/brevo.js";
import { type GdprClient, runDeletion } from "../../lib/gdpr/deletion.js";
import { idDigest } from "../../lib/privacy/suppression.js";
import type { BrevoServer } from "../../infra/local/peers/brevo-server.js";
import { localSecrets, sendersOnTestTime } from "../support/destination-senders.js";
import { localBrevoClient, localBrevos } from "../support/local-brevo.js";

/**
 * GDPR erasure in Brevo: contacts the relay created by ext_id, by email (cohort list imports) or by
 * phone are all deleted, each identifier reported; a cohort list import never re-creates an erased person.
 */
const API_KEY = "xkeysib-gdpr";
let brevo: BrevoServer;
const secretsEndpoint = localSecrets({ "relay/brevo": { api_key: API_KEY } });
const startBrevo = localBrevos();

async function start() {
  brevo = await startBrevo({ apiKey: API_KEY, listIds: [12] });
  return localBrevoClient(brevo, API_KEY);
}

const mixpanel: GdprClient = { fileDeletion: async () => "task-1", taskStatus: async () => "PENDING", cancelTask: async () => "cancelled" };

async function contact(body: Record<string, unknown>) {
  const response = await fetch(`${brevo.url}/contacts`, { method: "POST", headers: { "api-key": API_KEY, "content-type": "application/json" }, body: JSON.stringify({ updateEnabled: true, ...body }) });
  expect(response.status).toBe(201);
}

describe("GDPR erasure in Brevo", () => {
  it("deletes by every identifier the relay used (ext_id, email, phone, and the email the ext_id contact holds) and reports each", async () => {
    const client = await start();
    await contact({ email: "ann@example.com", attributes: { FIRSTNAME: "Ann" } }); // a cohort import: by email only
    await contact({ ext_id: "u2", email: "bob@example.com" });
    await contact({ attributes: { SMS: "+33600000001" } }); // the connector with a phone identifier
    await contact({ ext_id: "keep", email: "keep@example.com" });
    const derived: string[] = [];
    const record = await runDeletion(
      ["u1", "u2"],
      "GDPR",
      {
        gdpr: mixpanel,
        brevo: client,
        brevoIdentity: { ext_id: "distinct_id", email_id: "$email", phone_id: "$phone" },
        onDerivedIdentifiers: async (values) => void derived.push(...values),
        stage: "test",
        now: () => new Date(0),
        pause: async () => {},
      },
      { emails: ["Ann@Example.com"], phones: ["+33600000001"] },
    );
    expect([...brevo.contacts.keys()]).toEqual(["keep@example.com"]);
    expect(record.brevo).toMatchObject({ deleted: 3, absent: 2, failed: 0 });
    expect(record.brevo.identifiers).toEqual([
      { type: "ext_id", digest: idDigest("u1"), outcome: "absent", source: "request" },
      { type: "ext_id", digest: idDigest("u2"), outcome: "deleted", source: "request" },
      { type: "email_id", digest: idDigest("bob@example.com"), outcome: "absent", source: "contact" },
      { type: "email_id", digest: idDigest("Ann@Example.com"), outcome: "deleted", source: "request" },
      { type: "phone_id", digest: idDigest("+33600000001"), outcome: "deleted", source: "request" },
    ]);
    expect(derived).toEqual(["bob@example.com"]);
    expect(JSON.stringify(record)).not.toMatch(/ann@|bob@|\+336|"u2"/i);
  });

  it("the cohort Brevo list import skips members on the erased-ids list (by distinct id or email)", async () => {
    await start();
    const [sync] = cohortSyncsSchemaFor({ localStage: true }).parse([
      { id: "b", cohort_id: 1, destination: { type: "brevo", list_id: 12, base_url: brevo.url, api_key_secret: "relay/brevo", attributes: {} } },
    ]);
    if (sync?.destination.type !== "brevo") throw new Error("config");
    const page: DeliveryPage = {
      v: 1,
      sync_id: "b",
      run_id: "r",
      project_id: "1",
      cohort: { id: 1, name: "C", description: "" },
      action: "add_members",
      page: 1,
      total_pages: 1,
      members: [
        { id: "erased-by-id", props: { $email: "one@example.com" } },
        { id: "x2", props: { $email: "Erased@Example.com" } },
        { id: "x3", props: { $email: "kept@example.com" } },
      ],
    };
    // Real time; a retry's wait is not slept.
    const deps = sendersOnTestTime({ now: Date.now, advance: () => {} }, [], () => 60_000, secretsEndpoint());
    const erased = new Set([idDigest("erased-by-id"), idDigest("erased@example.com")]);
    await sendBrevoPage(page, sync.destination, deps, newBrevoRateGates(), undefined, async () => erased);
    expect([...brevo.contacts.keys()]).toEqual(["kept@example.com"]);
  });
});
