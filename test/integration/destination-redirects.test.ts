import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { keys } from "../../lib/cohorts/store.js";
import { UpstreamRejectedError } from "../../lib/util/errors.js";
import { fetchText, throwForStatus } from "../../lib/http/fetch.js";
import { createQueryBudget, createQueryClient } from "../../lib/mixpanel/query.js";
import { type Harness, startHarness } from "../unit/cohorts/harness.js";

/**
 * Redirects are refusals on every outbound call that carries data or
 * credentials: a 301/302 must not become a body-less GET counted as delivered,
 * a 307/308 must not re-post members or an api-key to another host.
 */
interface Hit {
  method: string;
  headers: IncomingMessage["headers"];
  body: string;
}

async function listen(handler: (req: IncomingMessage, body: string) => { status: number; headers?: Record<string, string>; body?: string }) {
  const hits: Hit[] = [];
  const server: Server = createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString()));
    req.on("end", () => {
      hits.push({ method: req.method ?? "", headers: req.headers, body });
      const answer = handler(req, body);
      res.writeHead(answer.status, { "content-type": "application/json", ...answer.headers });
      res.end(answer.body ?? "{}");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, hits, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

async function redirectPair(status: number) {
  const target = await listen(() => ({ status: 200, body: JSON.stringify({ status: "success" }) }));
  const origin = await listen(() => ({ status, headers: { location: `${target.url}/elsewhere` } }));
  closers.push(target.close, origin.close);
  return { target, origin };
}

describe("redirects are never followed", () => {
  it.each([301, 302, 303, 307, 308])("fetchText + throwForStatus: a %i is a permanent refusal naming Location", async (status) => {
    const { target, origin } = await redirectPair(status);
    const result = await fetchText(fetch, `${origin.url}/hook`, { method: "POST", body: "{}", headers: { authorization: "Basic c2VjcmV0" } }, 5_000);
    expect(result.status).toBe(status);
    let error: unknown;
    try {
      throwForStatus(result, "vendor", Date.now());
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(UpstreamRejectedError);
    expect(String(error)).toContain(`${target.url}/elsewhere`);
    expect(target.hits).toEqual([]);
  });

  it("the Mixpanel Query API client refuses a 307 and never sends the service account elsewhere", async () => {
    const { target, origin } = await redirectPair(307);
    const client = createQueryClient({
      baseUrl: `${origin.url}/api/query`,
      credentials: { projectId: "1", username: "sa", secret: "sa-secret" },
      fetch,
      timeoutMs: 5_000,
      retryDeps: { sleep: async () => {}, random: () => 0.5, remainingMs: () => 600_000 },
      budget: createQueryBudget(5, 1),
      now: Date.now,
    });
    await expect(client.listCohorts()).rejects.toThrow(/redirect \(307\)/);
    expect(origin.hits).toHaveLength(1); // not retried
    expect(target.hits).toEqual([]);
  });
});

describe("cohort destinations answering a redirect", () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  it("a 302 webhook is never counted delivered: failed ledger with the Location, unhealthy, snapshot kept", async () => {
    const { target, origin } = await redirectPair(302);
    h = await startHarness({
      cohorts: [{ id: 5, name: "C", where: (p) => p.in === true }],
      syncs: [{ id: "hook", cohort_id: 5, destination: { type: "webhook", url: `${origin.url}/hook`, signing_secret: "s/hook" } }],
    });
    h.secrets.setSecret("s/hook", { secret: "whsec-0123456789abcdef" });
    for (let i = 0; i < 3; i++) h.profiles.set(`u${i}`, { in: true, $email: `u${i}@example.com` });
    await h.runExport();
    const [message] = await h.takeMessages();
    const dead: string[] = [];
    expect(await h.deliver(message ?? "", { deadLetter: async (record) => void dead.push(record) })).toBe("dead_lettered");
    expect(dead[0]).toContain("/elsewhere");
    expect(origin.hits).toHaveLength(1);
    expect(origin.hits[0]?.method).toBe("POST");
    expect(target.hits).toEqual([]);
    const runId = (await h.store.readState("hook")).delivery?.run_id ?? "";
    expect(await h.store.isDelivered("hook", runId, "members", 1)).toBe(false);
    const failure = await h.store.readFailure(keys.failed("hook", runId, "members", 1));
    expect(failure?.status).toBe(302);
    expect(failure?.error).toContain(`${target.url}/elsewhere`);
    h.clock.advance(60_000);
    const settle = await h.runExport();
    expect(settle.syncs.hook?.outcome).toBe("failed");
    const state = await h.store.readState("hook");
    expect(state.healthy).toBe(false);
    expect(state.snapshot).toBeUndefined();
  });

  it("a 307 from Brevo does not forward the api-key (or the members) to the Location", async () => {
    const { target, origin } = await redirectPair(307);
    h = await startHarness({
      cohorts: [{ id: 5, name: "C", where: (p) => p.in === true }],
      syncs: [{ id: "brevo", cohort_id: 5, destination: { type: "brevo", list_id: 3, base_url: `${origin.url}/v3`, api_key_secret: "s/brevo" } }],
    });
    h.secrets.setSecret("s/brevo", { api_key: "xkeysib-secret" });
    h.profiles.set("u1", { in: true, $email: "u1@example.com" });
    await h.runExport();
    const [message] = await h.takeMessages();
    await expect(h.deliver(message ?? "")).rejects.toThrow(/redirect \(307\)/);
    expect(origin.hits[0]?.headers["api-key"]).toBe("xkeysib-secret");
    expect(target.hits).toEqual([]);
  });
});
