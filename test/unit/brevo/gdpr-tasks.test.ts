import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { type AuditRecord, createGdprClient, overallStatus, refreshStatus } from "../../../lib/gdpr/deletion.js";
import { createGdprApi, type GdprApi } from "../../../infra/local/peers/mixpanel-gdpr.js";

/** Mixpanel GDPR task states against the local GDPR API: NOT_FOUND and UNKNOWN are final and reported. */
let server: Server | undefined;
afterEach(() => new Promise<void>((done) => (server ? server.close(() => done()) : done())));

async function start(): Promise<{ api: GdprApi; url: string; calls: () => number }> {
  let now = 0;
  // Each call is a second later, so the API's 1 request/s rule never trips in this test.
  const api = createGdprApi({ oauthToken: "oauth", projectToken: "proj", now: () => (now += 1000) });
  let calls = 0;
  server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      calls++;
      void api.handle(request, response, new URL(request.url ?? "/", "http://localhost"), Buffer.concat(chunks));
    });
  });
  await new Promise<void>((done) => server?.listen(0, "127.0.0.1", done));
  return { api, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/app`, calls: () => calls };
}

function clientFor(url: string) {
  return createGdprClient({
    fetch: globalThis.fetch,
    baseUrl: url,
    projectToken: "proj",
    oauthToken: "oauth",
    timeoutMs: 2000,
    retryDeps: { sleep: async () => {}, random: () => 0, remainingMs: () => 60_000 },
    now: Date.now,
  });
}

const record = (tasks: AuditRecord["mixpanel"]): AuditRecord => ({
  v: 1,
  requestId: "r",
  stage: "test",
  compliance: "GDPR",
  createdAt: "2026-01-01T00:00:00.000Z",
  updatedAt: "2026-01-01T00:00:00.000Z",
  idDigests: [],
  mixpanel: tasks,
  brevo: { deleted: 0, absent: 0, failed: 0, errors: [], skipped: true },
});

describe("Mixpanel GDPR task states", () => {
  it("NOT_FOUND and UNKNOWN are final: polled once, reported, never polled again", async () => {
    const { api, url, calls } = await start();
    const gdpr = clientFor(url);
    const a = await gdpr.fileDeletion(["a"], "GDPR");
    const b = await gdpr.fileDeletion(["b"], "GDPR");
    api.complete(a, "NOT_FOUND");
    api.complete(b, "UNKNOWN");
    const filed = record([
      { taskId: a, ids: 1, status: "PENDING" },
      { taskId: b, ids: 1, status: "PENDING" },
    ]);
    const first = await refreshStatus(filed, gdpr, () => new Date(), async () => {});
    expect(first.mixpanel.map((task) => task.status)).toEqual(["NOT_FOUND", "UNKNOWN"]);
    const before = calls();
    const second = await refreshStatus(first, gdpr, () => new Date(), async () => {});
    expect(calls()).toBe(before);
    expect(second.mixpanel.map((task) => task.status)).toEqual(["NOT_FOUND", "UNKNOWN"]);
  });

  it("NOT_FOUND means nothing to delete (complete); UNKNOWN needs an operator", () => {
    expect(overallStatus(record([{ taskId: "t", ids: 1, status: "NOT_FOUND" }]))).toBe("complete");
    expect(overallStatus(record([{ taskId: "t", ids: 1, status: "SUCCESS" }, { taskId: "u", ids: 1, status: "NOT_FOUND" }]))).toBe("complete");
    expect(overallStatus(record([{ taskId: "t", ids: 1, status: "UNKNOWN" }]))).toBe("needs attention");
    expect(overallStatus(record([{ taskId: "t", ids: 1, status: "PENDING" }]))).toBe("in progress");
  });

  it("an unreadable status answer is not taken for Mixpanel's UNKNOWN: the task stays pending with the reason", async () => {
    const gdpr = clientFor("http://127.0.0.1:1");
    const broken = { ...gdpr, taskStatus: async () => { throw new Error("Mixpanel GDPR status reply has no results.status: <html>"); } };
    const after = await refreshStatus(record([{ taskId: "t", ids: 1, status: "PENDING" }]), broken, () => new Date(), async () => {});
    expect(after.mixpanel[0]).toMatchObject({ status: "PENDING", error: expect.stringMatching(/no results.status/) });
  });
});
