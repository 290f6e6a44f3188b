import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ValidationError } from "../../../lib/util/errors.js";
import { createGuardedFetch, type Resolver } from "../../../lib/http/guarded-fetch.js";

/**
 * Send-time address checks: the host is resolved by the guard, every answer is
 * checked, and the socket connects to the answer that was checked (here a
 * 127.0.0.1 receiver standing in for "the address DNS gave"). Names are
 * resolved by a scripted resolver: no traffic leaves loopback.
 */
const hits: { host: string | undefined; url: string | undefined }[] = [];
const server = createServer((req: IncomingMessage, res) => {
  hits.push({ host: req.headers.host, url: req.url });
  res.writeHead(200, { "content-type": "application/json" });
  res.end('{"ok":true}');
});
let port = 0;
beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

const scripted = (answers: Record<string, string[]>): Resolver & { calls: string[] } => {
  const calls: string[] = [];
  const resolve = async (host: string) => {
    calls.push(host);
    return (answers[host] ?? []).map((address) => ({ address, family: address.includes(":") ? 6 : 4 }));
  };
  return Object.assign(resolve, { calls });
};

describe("guarded fetch", () => {
  it.each([
    ["hooks.example.com", ["127.0.0.1"]],
    ["hooks.example.com", ["10.1.2.3"]],
    ["hooks.example.com", ["169.254.169.254"]],
    ["hooks.example.com", ["93.184.216.34", "192.168.0.7"]], // one private answer among public ones
    ["hooks.example.com", ["::ffff:127.0.0.1"]],
  ])("refuses %s resolving to %j before connecting", async (host, answers) => {
    const before = hits.length;
    const guarded = createGuardedFetch({ policy: { allowPrivate: false, localStage: false }, resolve: scripted({ [host]: answers }) });
    await expect(guarded(`http://${host}:${port}/x`, { method: "POST", body: "{}" })).rejects.toBeInstanceOf(ValidationError);
    await expect(guarded(`http://${host}:${port}/x`, { method: "POST", body: "{}" })).rejects.toThrow(/non-public address/);
    expect(hits.length).toBe(before);
  });

  it("refuses an IP literal without resolving it", async () => {
    const resolve = scripted({});
    const guarded = createGuardedFetch({ policy: { allowPrivate: false, localStage: false }, resolve });
    await expect(guarded(`http://127.0.0.1:${port}/x`)).rejects.toThrow(/loopback/);
    await expect(guarded(`http://[::ffff:7f00:1]:${port}/x`)).rejects.toThrow(/IPv4-mapped 127\.0\.0\.1/);
    expect(resolve.calls).toEqual([]);
  });

  it("with allow_private_network connects to the checked address, keeping the host name in Host", async () => {
    const resolve = scripted({ "hooks.internal.example": ["127.0.0.1"] });
    const guarded = createGuardedFetch({ policy: { allowPrivate: true, localStage: false }, resolve });
    const response = await guarded(`http://hooks.internal.example:${port}/in`, { method: "POST", body: '{"a":1}', headers: { "content-type": "application/json" } });
    expect(response.status).toBe(200);
    expect(await response.text()).toBe('{"ok":true}');
    expect(hits.at(-1)).toEqual({ host: `hooks.internal.example:${port}`, url: "/in" });
    expect(resolve.calls).toEqual(["hooks.internal.example"]);
  });

  it("the local stage reaches a loopback receiver and nothing else private", async () => {
    const guarded = createGuardedFetch({
      policy: { allowPrivate: false, localStage: true },
      resolve: scripted({ "receiver.test": ["127.0.0.1"], "lan.test": ["10.0.0.2"] }),
    });
    expect((await guarded(`http://127.0.0.1:${port}/ok`)).status).toBe(200);
    expect((await guarded(`http://receiver.test:${port}/ok`)).status).toBe(200);
    await expect(guarded(`http://lan.test:${port}/x`)).rejects.toThrow(/private/);
  });

  it("never follows a redirect", async () => {
    const redirector = createServer((_req, res) => {
      res.writeHead(302, { location: `http://127.0.0.1:${port}/followed` });
      res.end();
    });
    await new Promise<void>((resolve) => redirector.listen(0, "127.0.0.1", resolve));
    const guarded = createGuardedFetch({ policy: { allowPrivate: false, localStage: true } });
    const before = hits.length;
    const response = await guarded(`http://127.0.0.1:${(redirector.address() as AddressInfo).port}/`, { method: "POST", body: "x" });
    expect(response.status).toBe(302);
    expect(response.headers.get("location")).toContain("/followed");
    expect(hits.length).toBe(before);
    await new Promise<void>((resolve) => redirector.close(() => resolve()));
  });
});
