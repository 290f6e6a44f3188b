import { createHmac } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { WebhookReceiver } from "../../../infra/local/peers/webhook-server.js";

/**
 * The local webhook receiver against the published contracts: the signature scheme receivers
 * are told to verify (docs/cohorts.md), computed here with node:crypto
 * alone, and Mixpanel's rule that total_pages counts the messages of one session.
 */
const SECRET = "receiver-test-secret-0123";
const NOW_S = 1_800_000_000;
let receiver: WebhookReceiver | undefined;
afterEach(async () => {
  await receiver?.close();
  receiver = undefined;
});

async function start(): Promise<string> {
  receiver = new WebhookReceiver({ signingSecret: SECRET, now: () => NOW_S * 1000 });
  return receiver.start();
}

const sign = (timestamp: number, body: string, secret = SECRET) =>
  `v1=${createHmac("sha256", secret).update(`${timestamp}.${body}`).digest("hex")}`;

function payload(action: string, session: string, page: number, total: number, members: unknown[] = []) {
  return JSON.stringify({
    action,
    parameters: {
      mixpanel_project_id: "1",
      mixpanel_cohort_id: "9",
      mixpanel_cohort_name: "C",
      mixpanel_cohort_description: "",
      mixpanel_session_id: session,
      page_info: { total_pages: total, page_count: page },
      members,
    },
  });
}

async function send(url: string, body: string, headers: Record<string, string> = {}) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", "x-relay-timestamp": String(NOW_S), "x-relay-signature": sign(NOW_S, body), ...headers },
    body,
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

describe("local webhook receiver: signatures", () => {
  it("accepts the documented HMAC over <timestamp>.<raw body> and answers Mixpanel's success reply", async () => {
    const url = await start();
    const body = payload("members", "s1", 1, 1, [{ email: "a@x", mixpanel_distinct_id: "a", first_name: "", last_name: "" }]);
    expect(await send(url, body)).toEqual({ status: 200, body: { action: "members", status: "success" } });
    expect([...(receiver?.members(9).keys() ?? [])]).toEqual(["a"]);
  });

  it.each([
    ["a wrong secret", (body: string) => ({ "x-relay-signature": sign(NOW_S, body, "another-secret-456789") }), "signature mismatch"],
    ["a tampered body", (body: string) => ({ "x-relay-signature": sign(NOW_S, body.replace('"9"', '"8"')) }), "signature mismatch"],
    ["a stale timestamp", (body: string) => ({ "x-relay-timestamp": String(NOW_S - 301), "x-relay-signature": sign(NOW_S - 301, body) }), "timestamp outside tolerance"],
    ["no signature", () => ({ "x-relay-signature": "" }), "missing signature"],
    ["no timestamp", () => ({ "x-relay-timestamp": "" }), "missing or bad timestamp"],
    ["a signature without v1=", (body: string) => ({ "x-relay-signature": sign(NOW_S, body).slice(3) }), "missing signature"],
  ])("refuses %s with 401 and Mixpanel's failure reply", async (_name, headers, reason) => {
    const url = await start();
    const body = payload("members", "s1", 1, 1);
    const answer = await send(url, body, headers(body));
    expect(answer.status).toBe(401);
    expect(answer.body).toMatchObject({ status: "failure", error: { message: `signature: ${reason}`, code: 401 } });
  });

  it("the signature covers the raw bytes: a body with non-ASCII text verifies as sent", async () => {
    const url = await start();
    const body = payload("add_members", "s2", 1, 1, [{ email: "", mixpanel_distinct_id: "🌳-ü", first_name: "Zoë", last_name: "" }]);
    expect((await send(url, body)).status).toBe(200);
  });
});

describe("local webhook receiver: its page", () => {
  it("names who each page listed, added and removed, and each cohort's copy", async () => {
    const url = await start();
    const member = (id: string) => ({ email: `${id}@x`, mixpanel_distinct_id: id, first_name: "", last_name: "" });
    expect((await send(url, payload("members", "full", 1, 1, []))).status).toBe(200);
    expect((await send(url, payload("add_members", "diff-1", 1, 1, [member("ada"), member("bob")]))).status).toBe(200);
    expect((await send(url, payload("remove_members", "diff-2", 1, 2, [member("bob")]))).status).toBe(200);
    expect((await send(url, payload("add_members", "diff-2", 2, 2, [member("cy")]))).status).toBe(200);
    const page = (await (await fetch(url.replace(/\/hook$/, "/"))).json()) as { pages: Record<string, unknown>[]; cohorts: Record<string, string[]> };
    expect(page.pages.map(({ at: _at, session: _session, ...rest }) => rest)).toEqual([
      { action: "members", cohort: "9", page: "1/1", members: [] },
      { action: "add_members", cohort: "9", page: "1/1", added: ["ada", "bob"] },
      { action: "remove_members", cohort: "9", page: "1/2", removed: ["bob"] },
      { action: "add_members", cohort: "9", page: "2/2", added: ["cy"] },
    ]);
    expect(page.cohorts).toEqual({ "9": ["ada", "cy"] });
  });
});

describe("local webhook receiver: total_pages is the number of messages of its session", () => {
  it("refuses a second action that reuses a session of total_pages 1", async () => {
    const url = await start();
    expect((await send(url, payload("add_members", "run-1", 1, 1))).status).toBe(200);
    const second = await send(url, payload("remove_members", "run-1", 1, 1));
    expect(second.status).toBe(400);
    expect(String((second.body.error as { message: string }).message)).toMatch(/total_pages is 1/);
  });

  it("refuses pages of one session that disagree on total_pages; accepts a redelivered page", async () => {
    const url = await start();
    expect((await send(url, payload("members", "run-2", 1, 2))).status).toBe(200);
    expect((await send(url, payload("members", "run-2", 1, 2))).status).toBe(200);
    expect((await send(url, payload("members", "run-2", 2, 3))).status).toBe(400);
    expect((await send(url, payload("members", "run-2", 2, 2))).status).toBe(200);
  });

  it("one session per action is accepted", async () => {
    const url = await start();
    expect((await send(url, payload("add_members", "run-3.add_members", 1, 1))).status).toBe(200);
    expect((await send(url, payload("remove_members", "run-3.remove_members", 1, 1))).status).toBe(200);
  });
});

describe("local webhook receiver: hostile input", () => {
  it("answers 4xx JSON for anything a sender can send", async () => {
    const url = await start();
    for (const body of ["", "{", "[]", "null", '{"action":"members"}', payload("members", "", 1, 1), payload("members", "s", 2, 1), payload("other", "s", 1, 1)]) {
      const answer = await send(url, body);
      expect(answer.status, body).toBeGreaterThanOrEqual(400);
      expect(answer.status, body).toBeLessThan(500);
      expect(answer.body.status).toBe("failure");
    }
  });
});
