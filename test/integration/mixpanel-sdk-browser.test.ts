import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type Browser, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LOCAL_MIXPANEL_CREDENTIALS, type LocalStack, startLocalStack } from "../../infra/local/stack.js";
import { closeServer, listenOnLoopback } from "../../infra/local/peers/local-server.js";
import { chromiumExecutable } from "../support/chromium.js";
import { eventually } from "../support/eventually.js";

/**
 * mixpanel-browser, unmodified, in a real headless Chromium (test/support/chromium.ts): a page on
 * 127.0.0.1 loads the SDK bundle from node_modules with `api_host` = the relay (another origin,
 * so CORS with credentials is exercised), batches events over XHR, identifies a user, sets
 * people properties, and flushes with sendBeacon when the page goes away. Everything must
 * arrive in the local Mixpanel through the relay's queue, emoji included (the SDK's default
 * base64 payload writes each half of a surrogate pair as its own 3-byte sequence).
 */
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const RUN = `web-${Date.now().toString(36)}`;
const SDK_BUNDLE = readFileSync(join(repoRoot, "node_modules/mixpanel-browser/dist/mixpanel.umd.js"));
const SDK_VERSION = (JSON.parse(readFileSync(join(repoRoot, "node_modules/mixpanel-browser/package.json"), "utf8")) as { version: string }).version;

let stack: LocalStack;
let pages: Server;
let pageOrigin = "";
let browser: Browser;
/** What reached the relay, seen server-side (Chromium's DevTools protocol does not report beacons). */
const relayRequests: { url: string; method: string; contentType: string; origin: string }[] = [];

function testPage(relay: string): string {
  return `<!doctype html><html><head><meta charset="utf-8"><script src="/mixpanel.umd.js"></script></head><body>
<script>
  const search = new URLSearchParams(location.search);
  const flush = Number(search.get("flush"));
  mixpanel.init(${JSON.stringify(LOCAL_MIXPANEL_CREDENTIALS.projectToken)}, {
    api_host: ${JSON.stringify(relay)},
    batch_requests: search.get("batch") !== "0",
    batch_flush_interval_ms: flush,
    track_pageview: false,
    persistence: "localStorage",
    loaded: () => { window.mixpanelLoaded = true; },
  });
</script></body></html>`;
}


const eventsNamed = (name: string) => stack.sandbox?.events.filter((event) => event.event === name) ?? [];

/** Scratch folder for this file's config (and certificate), removed after. */
let dir = "";

beforeAll(async () => {
  let relay = "";
  pages = createServer((request, response) => {
    const path = new URL(request.url ?? "/", "http://page").pathname;
    if (path === "/mixpanel.umd.js") {
      response.writeHead(200, { "content-type": "text/javascript" });
      response.end(SDK_BUNDLE);
    } else if (path === "/") {
      response.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      response.end(testPage(relay));
    } else {
      // A page without the SDK: leaving the test page for it is the "unload".
      response.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      response.end("<!doctype html><title>bye</title><p>bye</p>");
    }
  });
  const pagePort = await listenOnLoopback(pages);
  pageOrigin = `http://127.0.0.1:${pagePort}`;

  dir = mkdtempSync(join(tmpdir(), "relay-browser-sdk-"));
  const configFile = join(dir, "config.json");
  writeFileSync(
    configFile,
    JSON.stringify({ mixpanel_compat: { project_tokens: [LOCAL_MIXPANEL_CREDENTIALS.projectToken], cors_origins: [pageOrigin] } }),
  );
  stack = await startLocalStack({
    configFile,
    visibilityTimeoutSeconds: 2,
    onIntakeRequest: (request) =>
      relayRequests.push({
        url: request.url ?? "",
        method: request.method ?? "",
        contentType: request.headers["content-type"] ?? "",
        origin: request.headers.origin ?? "",
      }),
  });
  relay = stack.intakeUrl;

  browser = await chromium.launch({
    executablePath: await chromiumExecutable(),
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-quic",
      "--no-first-run",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
  await closeServer(pages);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("mixpanel-browser in headless Chromium against the relay", () => {
  it("batches events over XHR with CORS credentials, identifies the user and sets people properties", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const pageErrors: string[] = [];
    page.on("pageerror", (error) => pageErrors.push(String(error)));
    await page.goto(`${pageOrigin}/?flush=200`);
    await page.waitForFunction(() => "mixpanelLoaded" in window, undefined, { timeout: 10_000 });
    await page.evaluate((user) => {
      const mp = (window as unknown as { mixpanel: { identify(id: string): void; track(name: string, props: object): void; people: { set(props: object): void } } }).mixpanel;
      mp.identify(user);
      mp.people.set({ plan: "pro", $email: "web@example.com" });
      for (let n = 0; n < 5; n += 1) mp.track("Clicked Button", { n, label: "Buy ✓" });
    }, `${RUN}-user`);

    const clicks = await eventually(() => (eventsNamed("Clicked Button").length >= 5 ? eventsNamed("Clicked Button") : undefined));
    expect(new Set(clicks.map((event) => event.properties.n))).toEqual(new Set([0, 1, 2, 3, 4]));
    for (const click of clicks) {
      expect(click.properties).toMatchObject({ distinct_id: `${RUN}-user`, $user_id: `${RUN}-user`, label: "Buy ✓", mp_lib: "web", $lib_version: SDK_VERSION });
      // The SDK asks for ip=1; the relay forwards the browser's address instead of its own.
      expect(click.properties.ip).toBe("127.0.0.1");
      expect(click.properties).not.toHaveProperty("token");
      expect(Number.isInteger(click.properties.time)).toBe(true);
      expect(Math.abs(Number(click.properties.time) - Date.now())).toBeLessThan(120_000);
    }
    const profile = await eventually(() => stack.sandbox?.profiles.get(`${RUN}-user`));
    expect(profile).toMatchObject({ plan: "pro", $email: "web@example.com" });

    const xhrPosts = relayRequests.filter((request) => request.method === "POST" && request.url.startsWith("/track/"));
    expect(xhrPosts.length).toBeGreaterThan(0);
    expect(xhrPosts.every((request) => request.contentType.startsWith("application/x-www-form-urlencoded") && request.origin === pageOrigin)).toBe(true);
    expect(pageErrors).toEqual([]);

    // The page can read the relay's answer to a credentialed request with a custom header
    // (a preflight, like the SDK's xhr_headers): the CORS headers are right, not merely present.
    const reply = await page.evaluate(
      async ({ relay, token }) => {
        const data = JSON.stringify({ event: "Fetched", properties: { token, distinct_id: "fetcher", time: Date.now() } });
        const response = await fetch(`${relay}/track/?verbose=1`, {
          method: "POST",
          credentials: "include",
          headers: { "content-type": "application/x-www-form-urlencoded", "x-requested-by": "relay-test" },
          body: `data=${encodeURIComponent(data)}`,
        });
        return { status: response.status, body: await response.text() };
      },
      { relay: stack.intakeUrl, token: LOCAL_MIXPANEL_CREDENTIALS.projectToken },
    );
    expect(reply).toEqual({ status: 200, body: '{"status":1,"error":null}' });
    expect(relayRequests.some((request) => request.method === "OPTIONS" && request.origin === pageOrigin)).toBe(true);
    await context.close();
  });

  for (const batch of ["1", "0"]) {
    it(`keeps emoji intact with the SDK's default payload, batching ${batch === "1" ? "on" : "off"}`, async () => {
      const context = await browser.newContext();
      const page = await context.newPage();
      await page.goto(`${pageOrigin}/?flush=200&batch=${batch}`);
      await page.waitForFunction(() => "mixpanelLoaded" in window, undefined, { timeout: 10_000 });
      const user = `${RUN}-emoji-${batch} 😀`;
      await page.evaluate((id) => {
        const mp = (window as unknown as { mixpanel: { identify(id: string): void; track(name: string, props: object): void; people: { set(props: object): void } } }).mixpanel;
        mp.identify(id);
        mp.people.set({ mood: "😀 𝄞" });
        mp.track("Launched 🚀", { rocket: "🚀", grin: "😀", clef: "𝄞", mixed: "a🚀b😀c𝄞d" });
      }, user);
      const [launched] = await eventually(() => {
        const found = eventsNamed("Launched 🚀").filter((event) => event.properties.distinct_id === user);
        return found.length > 0 ? found : undefined;
      });
      expect(launched?.properties).toMatchObject({ rocket: "🚀", grin: "😀", clef: "𝄞", mixed: "a🚀b😀c𝄞d" });
      // The SDK's own $set_once of referrers may land first: wait for the update that carries `mood`.
      const profile = await eventually(() => {
        const found = stack.sandbox?.profiles.get(user);
        return found && "mood" in found ? found : undefined;
      });
      expect(profile).toMatchObject({ mood: "😀 𝄞" });
      await context.close();
    });
  }

  it("flushes the queued batch with sendBeacon when the page goes away", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    // A flush interval far beyond the test: only the unload flush can send these.
    await page.goto(`${pageOrigin}/?flush=600000`);
    await page.waitForFunction(() => "mixpanelLoaded" in window, undefined, { timeout: 10_000 });
    await page.evaluate((user) => {
      const mp = (window as unknown as { mixpanel: { identify(id: string): void; track(name: string, props: object): void } }).mixpanel;
      mp.identify(user);
      for (let n = 0; n < 3; n += 1) mp.track("Left Page", { n, rocket: "🚀" });
    }, `${RUN}-leaver`);
    await new Promise((resolveSleep) => setTimeout(resolveSleep, 500));
    expect(eventsNamed("Left Page")).toHaveLength(0);
    await page.goto(`${pageOrigin}/bye`);

    const left = await eventually(() => (eventsNamed("Left Page").length >= 3 ? eventsNamed("Left Page") : undefined));
    expect(new Set(left.map((event) => event.properties.n))).toEqual(new Set([0, 1, 2]));
    expect(left[0]?.properties.distinct_id).toBe(`${RUN}-leaver`);
    expect(left.map((event) => event.properties.rocket)).toEqual(["🚀", "🚀", "🚀"]);
    // sendBeacon posts its string body as text/plain (docs/vendors/mixpanel-wire.md §4.5).
    const beacons = relayRequests.filter((request) => request.url.startsWith("/track/") && request.contentType.startsWith("text/plain"));
    expect(beacons.length).toBeGreaterThan(0);
    await context.close();
  });
});
