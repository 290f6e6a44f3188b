import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { BrazeServer } from "../../../infra/local/peers/braze-server.js";

/** The local Braze against Braze's published /users/track contract, spoken to with plain fetch. */
let braze: BrazeServer | undefined;
afterEach(async () => {
  await braze?.close();
  braze = undefined;
});

async function start(options: Partial<ConstructorParameters<typeof BrazeServer>[0]> = {}): Promise<string> {
  braze = new BrazeServer({ apiKey: "k", ...options });
  return `${await braze.start()}/users/track`;
}

const post = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(url, {
    method: "POST",
    headers: { authorization: "Bearer k", "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });

const attribute = (id: string, extra: Record<string, unknown> = {}) => ({ external_id: id, ...extra });

describe("local Braze /users/track", () => {
  it("refuses a wrong key (401) and more than 75 objects across attributes, events and purchases (400)", async () => {
    const url = await start();
    expect((await post(url, { attributes: [attribute("a")] }, { authorization: "Bearer nope" })).status).toBe(401);
    const seventySix = { attributes: Array.from({ length: 50 }, (_, i) => attribute(`u${i}`)), events: Array.from({ length: 26 }, (_, i) => ({ external_id: `e${i}`, name: "x", time: "2026-01-01T00:00:00Z" })) };
    const refused = await post(url, seventySix);
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { message: string }).message).toMatch(/75/);
    expect((await post(url, { attributes: Array.from({ length: 75 }, (_, i) => attribute(`u${i}`)) })).status).toBe(201);
  });

  it("the legacy limit takes 75 of each array", async () => {
    const url = await start({ objectsPerArray: true });
    const body = { attributes: Array.from({ length: 75 }, (_, i) => attribute(`u${i}`)), events: Array.from({ length: 75 }, (_, i) => ({ external_id: `e${i}`, name: "x" })) };
    expect((await post(url, body)).status).toBe(201);
    expect((await post(url, { attributes: Array.from({ length: 76 }, (_, i) => attribute(`u${i}`)) })).status).toBe(400);
  });

  it("an object without exactly one identifier is a non-fatal error; the others are applied", async () => {
    const url = await start();
    const response = await post(url, { attributes: [attribute("a", { plan: "pro" }), { plan: "x" }, { external_id: "b", email: "b@x", plan: "y" }] });
    expect(response.status).toBe(201);
    const reply = (await response.json()) as { message: string; attributes_processed: number; errors: { index: number }[] };
    expect(reply.message).toBe("success");
    expect(reply.attributes_processed).toBe(1);
    expect(reply.errors.map((e) => e.index)).toEqual([1, 2]);
    expect(braze?.users.get("a")).toEqual({ plan: "pro" });
  });

  it("array attributes are sets kept to the workspace's array length; the oldest elements are dropped and counted", async () => {
    const url = await start({ arrayLengthMax: 3 });
    for (const value of ["c1", "c2", "c2", "c3", "c4"]) await post(url, { attributes: [attribute("u", { mixpanel_cohorts: { add: [value] } })] });
    expect(braze?.arrayOf("u", "mixpanel_cohorts")).toEqual(["c2", "c3", "c4"]);
    expect(braze?.truncations).toEqual([{ user: "u", attribute: "mixpanel_cohorts", dropped: ["c1"] }]);
    await post(url, { attributes: [attribute("u", { mixpanel_cohorts: { remove: ["c3"] } })] });
    expect(braze?.arrayOf("u", "mixpanel_cohorts")).toEqual(["c2", "c4"]);
  });

  it("_update_existing_only: true never creates a user", async () => {
    const url = await start({ existing: ["old"] });
    await post(url, { attributes: [attribute("old", { _update_existing_only: true, a: 1 }), attribute("new", { _update_existing_only: true, a: 1 })] });
    expect([...(braze?.users.keys() ?? [])]).toEqual(["old"]);
  });

  it("rate limit: X-RateLimit-* on every answer; past the limit 429 with X-RateLimit-Reset in epoch seconds and no Retry-After", async () => {
    let now = 1_800_000_001_000;
    const url = await start({ rateLimit: { limit: 2, windowMs: 60_000 }, now: () => now });
    const first = await post(url, { attributes: [attribute("a")] });
    expect(first.headers.get("x-ratelimit-limit")).toBe("2");
    expect(first.headers.get("x-ratelimit-remaining")).toBe("1");
    await post(url, { attributes: [attribute("a")] });
    const limited = await post(url, { attributes: [attribute("a")] });
    expect(limited.status).toBe(429);
    expect(limited.headers.get("retry-after")).toBeNull();
    expect(Number(limited.headers.get("x-ratelimit-reset"))).toBe(1_800_000_060);
    now = 1_800_000_060_000;
    expect((await post(url, { attributes: [attribute("a")] })).status).toBe(201);
  });

  it("hostile bodies get a 4xx JSON answer, never a 5xx", async () => {
    const url = await start();
    for (const body of ["", "{", "[]", "null", '{"attributes":{}}', '{"attributes":[1,null,"x"]}', '{"attributes":[{"external_id":{"a":1}}]}']) {
      const response = await post(url, body);
      expect(response.status, body).toBeLessThan(500);
      expect(await response.json()).toBeTypeOf("object");
    }
  });

  it("any JSON body gets a 2xx or 4xx JSON answer, never a 5xx (property-based)", async () => {
    const url = await start();
    const bodies = fc.oneof(
      fc.jsonValue(),
      fc.record({ attributes: fc.array(fc.dictionary(fc.constantFrom("external_id", "email", "user_alias", "mixpanel_cohorts", "_update_existing_only", "x"), fc.jsonValue()), { maxLength: 80 }) }),
    );
    await fc.assert(
      fc.asyncProperty(bodies, async (body) => {
        const response = await post(url, JSON.stringify(body));
        const parsed: unknown = await response.json();
        return response.status < 500 && typeof parsed === "object" && parsed !== null;
      }),
      { seed: 19, numRuns: 150 },
    );
  });
});
