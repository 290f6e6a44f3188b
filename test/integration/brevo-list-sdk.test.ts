import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import type { DeliveryPage } from "../../lib/cohorts/messages.js";
import { cohortSyncsSchemaFor, type BrevoDestination } from "../../lib/config/cohort-syncs.js";
import { sendBrevoPage } from "../../lib/destinations/brevo.js";
import { createDestinationNetwork } from "../../lib/destinations/send.js";
import { UpstreamRejectedError, ValidationError } from "../../lib/util/errors.js";
import type { SecretReader } from "../../lib/secrets/secrets.js";
import * as z from "../../lib/util/zod.js";

/**
 * The cohort Brevo list sends through the connector's client, so its requests are the ones
 * Brevo's official SDK (`@getbrevo/brevo` 6.0.3) builds, and the client's rules hold for it:
 * no redirect followed, refusals judged by the destinations' status rule.
 */
interface Seen {
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

type Answer = { status: number; body?: unknown; headers?: Record<string, string> };

/** A loopback server that records every request and answers from `script(path)`. */
async function recorder(script: (path: string) => Answer) {
  const seen: Seen[] = [];
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      const path = request.url ?? "";
      seen.push({ method: request.method ?? "", path, headers: request.headers, body: Buffer.concat(chunks).toString("utf8") });
      const answer = script(path);
      response.writeHead(answer.status, { "content-type": "application/json", ...answer.headers }).end(JSON.stringify(answer.body ?? {}));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  closers.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url, seen };
}

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

beforeAll(() => {
  process.env.AWS_ACCESS_KEY_ID ??= "test";
  process.env.AWS_SECRET_ACCESS_KEY ??= "test";
});

const secrets: SecretReader = { getJson: async (_name, schema) => z.parse(schema, { api_key: "xkeysib-list" }) } as SecretReader;

function destinationAt(baseUrl: string): BrevoDestination {
  const [sync] = cohortSyncsSchemaFor({ localStage: true }).parse([
    { id: "list", cohort_id: 1, destination: { type: "brevo", list_id: 12, base_url: baseUrl, api_key_secret: "relay/brevo", attributes: { $first_name: "FIRSTNAME" } } },
  ]);
  if (sync?.destination.type !== "brevo") throw new Error("config");
  return sync.destination;
}

const deps = () => ({
  network: createDestinationNetwork({ localStage: true }),
  timeoutMs: 5_000,
  retryDeps: { sleep: async () => undefined, random: () => 0, remainingMs: () => 60_000 },
  now: Date.now,
  secrets,
  warn: () => {},
});

const page: DeliveryPage = { v: 1, sync_id: "list", run_id: "run-1", project_id: "1", cohort: { id: 1, name: "C", description: "" }, action: "add_members", page: 1, total_pages: 1,
  members: [{ id: "u1", props: { $email: "u1@example.com", $first_name: "Ada" } }] };

const ledger = () => {
  let kept: number[] | undefined;
  return { read: async () => kept, write: async (ids: number[]) => void (kept = ids) };
};

describe("cohort Brevo list through Brevo's SDK", () => {
  it("the import and its status check are the SDK's requests (its headers, its routes), with the destination's key", async () => {
    const brevo = await recorder((path) =>
      path.startsWith("/v3/contacts/import") ? { status: 202, body: { processId: 41 } } : { status: 200, body: { id: 41, status: "completed", name: "import" } },
    );
    await sendBrevoPage(page, destinationAt(`${brevo.url}/v3`), deps(), undefined, ledger());

    expect(brevo.seen.map((s) => [s.method, s.path])).toEqual([
      ["POST", "/v3/contacts/import"],
      ["GET", "/v3/processes/41"],
    ]);
    for (const request of brevo.seen) {
      expect(request.headers["user-agent"]).toBe("@getbrevo/brevo/6.0.3");
      expect(request.headers["x-fern-sdk-name"]).toBe("@getbrevo/brevo");
      expect(request.headers["api-key"]).toBe("xkeysib-list");
    }
    expect(JSON.parse(brevo.seen[0]?.body ?? "")).toEqual({
      jsonBody: [{ email: "u1@example.com", attributes: { FIRSTNAME: "Ada" } }],
      listIds: [12],
      updateExistingContacts: true,
      emptyContactsAttributes: false,
    });
  });

  it.each([301, 307, 308])("a %i is not followed: a permanent refusal naming the Location, nothing reaches the target", async (status) => {
    const target = await recorder(() => ({ status: 202, body: { processId: 1 } }));
    const origin = await recorder(() => ({ status, headers: { location: `${target.url}/v3/contacts/import` } }));
    const error = await sendBrevoPage(page, destinationAt(`${origin.url}/v3`), deps(), undefined, ledger()).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(UpstreamRejectedError);
    expect((error as UpstreamRejectedError).status).toBe(status);
    expect(String(error)).toContain(`redirect (${status}) to ${target.url}/v3/contacts/import`);
    expect(origin.seen).toHaveLength(1);
    expect(origin.seen[0]?.headers["user-agent"]).toBe("@getbrevo/brevo/6.0.3");
    expect(target.seen).toEqual([]);
  });

  it.each([401, 402, 403])("a %i is the destinations' permanent refusal with Brevo's body (the sync's run fails), not a configuration retry", async (status) => {
    const brevo = await recorder(() => ({ status, body: { code: "unauthorized", message: "Key not found" } }));
    const error = await sendBrevoPage(page, destinationAt(`${brevo.url}/v3`), deps(), undefined, ledger()).catch((e: unknown) => e);

    expect(error).toBeInstanceOf(UpstreamRejectedError);
    expect((error as UpstreamRejectedError).status).toBe(status);
    expect((error as UpstreamRejectedError).body).toContain("Key not found");
    expect(brevo.seen).toHaveLength(1);
  });

  it("a public name that resolves to a private address is refused before any byte leaves, as the destinations' permanent refusal", async () => {
    const [sync] = cohortSyncsSchemaFor({ localStage: false }).parse([
      { id: "list", cohort_id: 1, destination: { type: "brevo", list_id: 12, base_url: "https://brevo.example.com/v3", api_key_secret: "relay/brevo" } },
    ]);
    if (sync?.destination.type !== "brevo") throw new Error("config");
    const network = createDestinationNetwork({ localStage: false, resolve: async () => [{ address: "10.0.0.7", family: 4 }] });
    const error = await sendBrevoPage(page, sync.destination, { ...deps(), network }, undefined, ledger()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect(String(error)).toMatch(/10\.0\.0\.7|private/);
  });
});
