import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { RetryableError } from "../../../lib/util/errors.js";
import { type ExportLine, createExportClient, createExportPace } from "../../../lib/mixpanel/export.js";

/** The raw export reader against a loopback server that writes its answer in awkward pieces. */
let server: Server | undefined;
afterEach(async () => {
  await new Promise((done) => (server ? server.close(done) : done(undefined)));
  server = undefined;
});

async function serve(handler: (request: IncomingMessage, response: ServerResponse) => void): Promise<string> {
  server = createServer(handler);
  await new Promise<void>((done) => server?.listen(0, "127.0.0.1", done));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  return `http://127.0.0.1:${address.port}/api/2.0`;
}

const noPace = { take: async () => undefined };
const slept: number[] = [];
const retryDeps = { sleep: async (ms: number) => void slept.push(ms), random: () => 0, remainingMs: () => Number.POSITIVE_INFINITY };

function client(baseUrl: string, extra: Partial<Parameters<typeof createExportClient>[0]> = {}) {
  return createExportClient({
    baseUrl,
    credentials: { projectId: "7", username: "sa", secret: "pw" },
    fetch: globalThis.fetch,
    timeoutMs: 5_000,
    idleTimeoutMs: 5_000,
    pace: noPace,
    retryDeps,
    now: Date.now,
    ...extra,
  });
}

async function collect(lines: AsyncIterable<ExportLine>): Promise<ExportLine[]> {
  const all: ExportLine[] = [];
  for await (const line of lines) all.push(line);
  return all;
}

describe("Mixpanel raw export reader", () => {
  it("asks for one day with the service account, ms times and the event filter, and yields each line whole however the bytes are cut", async () => {
    let seen: { url: string; authorization: string | undefined } | undefined;
    const body = `${JSON.stringify({ event: "é", properties: { n: 1 } })}\r\n\n${JSON.stringify({ event: "b", properties: { n: 2 } })}\n${JSON.stringify({ event: "c", properties: {} })}`;
    const bytes = Buffer.from(body);
    const url = await serve((request, response) => {
      seen = { url: request.url ?? "", authorization: request.headers.authorization };
      response.writeHead(200, { "content-type": "text/plain" });
      // Three bytes at a time: lines and the two-byte "é" are split across pieces.
      let at = 0;
      const next = () => {
        if (at >= bytes.length) return response.end();
        response.write(bytes.subarray(at, at + 3));
        at += 3;
        setImmediate(next);
      };
      next();
    });
    const lines = await collect(client(url).day({ day: "2026-03-01", events: ["b", "c"] }));
    expect(lines).toEqual([
      { kind: "line", text: JSON.stringify({ event: "é", properties: { n: 1 } }) },
      { kind: "line", text: JSON.stringify({ event: "b", properties: { n: 2 } }) },
      { kind: "line", text: JSON.stringify({ event: "c", properties: {} }) },
    ]);
    const asked = new URL(seen?.url ?? "", "http://x");
    expect(asked.pathname).toBe("/api/2.0/export");
    expect(Object.fromEntries(asked.searchParams)).toEqual({ project_id: "7", from_date: "2026-03-01", to_date: "2026-03-01", time_in_ms: "true", event: '["b","c"]' });
    expect(seen?.authorization).toBe(`Basic ${Buffer.from("sa:pw").toString("base64")}`);
  });

  it("skips a line longer than the cap without keeping it, and goes on with the next", async () => {
    const url = await serve((_request, response) => {
      response.writeHead(200);
      response.write(`{"event":"a","properties":{}}\n${"x".repeat(300)}`);
      response.end(`${"y".repeat(300)}\n{"event":"b","properties":{}}\n`);
    });
    const lines = await collect(client(url, { maxLineChars: 100 }).day({ day: "2026-03-01" }));
    expect(lines).toEqual([
      { kind: "line", text: '{"event":"a","properties":{}}' },
      { kind: "too_long", chars: 600 },
      { kind: "line", text: '{"event":"b","properties":{}}' },
    ]);
  });

  it("retries a 429 before the answer starts, after the wait Mixpanel names, and takes a pace slot per try", async () => {
    let calls = 0;
    let taken = 0;
    slept.length = 0;
    const url = await serve((_request, response) => {
      calls += 1;
      if (calls === 1) {
        response.writeHead(429, { "retry-after": "30" });
        return response.end('{"error":"rate limit"}');
      }
      response.writeHead(200);
      response.end('{"event":"a","properties":{}}\n');
    });
    const lines = await collect(client(url, { pace: { take: async () => void (taken += 1) } }).day({ day: "2026-03-01" }));
    expect(lines).toHaveLength(1);
    expect(calls).toBe(2);
    expect(taken).toBe(2);
    expect(slept[0]).toBeGreaterThanOrEqual(30_000);
  });

  it("does not retry refused credentials, and a cut-off answer throws instead of ending quietly", async () => {
    const refused = await serve((_request, response) => {
      response.writeHead(401);
      response.end('{"error":"Invalid credentials"}');
    });
    await expect(collect(client(refused).day({ day: "2026-03-01" }))).rejects.toThrow(/refused the credentials \(401\)/);
    await new Promise((done) => server?.close(done));
    const cut = await serve((_request, response) => {
      response.writeHead(200, { "content-length": "1000" });
      response.write('{"event":"a","properties":{}}\n{"event":"b"');
      setTimeout(() => response.socket?.destroy(), 20);
    });
    const seen: ExportLine[] = [];
    const reading = (async () => {
      for await (const line of client(cut).day({ day: "2026-03-01" })) seen.push(line);
    })();
    await expect(reading).rejects.toBeInstanceOf(RetryableError);
    expect(seen).toHaveLength(1);
  });
});

describe("export pace", () => {
  it("lets at most perHour requests start in any hour and perSecond in any second", async () => {
    let clock = 0;
    const waits: number[] = [];
    const pace = createExportPace({ perHour: 5, perSecond: 3, now: () => clock, sleep: async (ms) => void (waits.push(ms), (clock += ms)) });
    const starts: number[] = [];
    for (let i = 0; i < 7; i++) {
      await pace.take();
      starts.push(clock);
    }
    // Each window is kept a little longer than Mixpanel's (1.25 s, 1 h 5 s), for the time a request takes to arrive.
    expect(starts.slice(0, 3)).toEqual([0, 0, 0]);
    expect(starts[3]).toBe(1_250);
    expect(starts[4]).toBe(1_250);
    // The sixth waits for the first to leave the hour.
    expect(starts[5]).toBe(3_605_000);
    for (let i = 0; i < starts.length; i++) {
      const inHour = starts.filter((at) => at <= (starts[i] ?? 0) && (starts[i] ?? 0) - at < 3_600_000);
      expect(inHour.length).toBeLessThanOrEqual(5);
      const inSecond = starts.filter((at) => at <= (starts[i] ?? 0) && (starts[i] ?? 0) - at < 1_000);
      expect(inSecond.length).toBeLessThanOrEqual(3);
    }
  });
});
