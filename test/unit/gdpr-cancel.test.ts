import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createGdprClient, withCancelledTask } from "../../lib/gdpr/deletion.js";
import { createGdprApi } from "../../infra/local/peers/mixpanel-gdpr.js";
import { suppressionExpiry } from "../../infra/gdpr.js";

/** gdpr:cancel against the local GDPR API: cancellable while PENDING or STAGING, too late once STARTED. */
let server: Server | undefined;
afterEach(() => new Promise<void>((done) => (server ? server.close(() => done()) : done())));

async function start() {
  let now = 0;
  const api = createGdprApi({ oauthToken: "oauth", projectToken: "proj", now: () => (now += 1000) });
  server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => void api.handle(request, response, new URL(request.url ?? "/", "http://localhost"), Buffer.concat(chunks)));
  });
  await new Promise<void>((done) => server?.listen(0, "127.0.0.1", done));
  const gdpr = createGdprClient({
    fetch: globalThis.fetch,
    baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/app`,
    projectToken: "proj",
    oauthToken: "oauth",
    timeoutMs: 2000,
    retryDeps: { sleep: async () => {}, random: () => 0, remainingMs: () => 60_000 },
    now: Date.now,
  });
  return { api, gdpr };
}

describe("gdpr:cancel", () => {
  it("cancels a pending or staging task (REVOKED), refuses a started one, and names an unknown one", async () => {
    const { api, gdpr } = await start();
    const pending = await gdpr.fileDeletion(["a"], "GDPR");
    const staging = await gdpr.fileDeletion(["b"], "GDPR");
    const started = await gdpr.fileDeletion(["c"], "GDPR");
    api.complete(staging, "STAGING");
    api.complete(started, "STARTED");
    expect(await gdpr.cancelTask(pending)).toBe("cancelled");
    expect(await gdpr.taskStatus(pending)).toBe("REVOKED");
    expect(await gdpr.cancelTask(staging)).toBe("cancelled");
    expect(await gdpr.cancelTask(started)).toBe("too_late");
    expect(await gdpr.taskStatus(started)).toBe("STARTED");
    expect(await gdpr.cancelTask("no-such-task")).toBe("not_found");
  });

  it("marks only the cancelled task REVOKED in the audit record", () => {
    const record = {
      v: 1 as const,
      requestId: "r",
      stage: "test",
      compliance: "GDPR" as const,
      createdAt: "2026-01-01T00:00:00.000Z",
      updatedAt: "2026-01-01T00:00:00.000Z",
      idDigests: [],
      mixpanel: [
        { taskId: "t1", ids: 1, status: "PENDING" },
        { taskId: "t2", ids: 1, status: "PENDING" },
      ],
      brevo: { deleted: 0, absent: 0, failed: 0, errors: [], skipped: true },
    };
    const updated = withCancelledTask(record, "t2", () => new Date("2026-02-01T00:00:00.000Z"));
    expect(updated.mixpanel.map((task) => task.status)).toEqual(["PENDING", "REVOKED"]);
    expect(updated.updatedAt).toBe("2026-02-01T00:00:00.000Z");
  });

  it("--suppress-days takes whole days ≥ 1", () => {
    expect(suppressionExpiry(undefined, 0)).toBeUndefined();
    expect(suppressionExpiry("30", 1000)).toBe(1000 + 30 * 86_400_000);
    for (const bad of ["0", "-1", "1.5", "x", ""]) expect(() => suppressionExpiry(bad, 0)).toThrow(/suppress-days/);
  });
});
