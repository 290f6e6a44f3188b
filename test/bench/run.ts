import { gzipSync, constants } from "node:zlib";
import { performance } from "node:perf_hooks";
import { mapNativeEvents } from "../../lib/sources/native.js";
import { packEnvelopes, parseEnvelope } from "../../lib/records/envelope.js";
import { createIngestionClient } from "../../lib/mixpanel/ingestion.js";
import { parseStageConfig } from "../../lib/config/stage.js";
import { MixpanelSandbox } from "../support/mixpanel-server.js";

/**
 * `npm run bench`: throughput of the event path's CPU work and of the forwarder's
 * client against the local Mixpanel, on this machine. Figures are printed, not
 * asserted: targets belong here, not in timed unit tests.
 */
const EVENTS = Number(process.env.BENCH_EVENTS ?? 50_000);
const nowMs = Date.now();
const config = parseStageConfig({}, "bench");

const input = Array.from({ length: EVENTS }, (_, i) => ({
  event: `Bench Event ${i % 20}`,
  properties: {
    distinct_id: `user-${i % 5000}`,
    time: Math.floor(nowMs / 1000) - (i % 3600),
    plan: i % 2 === 0 ? "pro" : "free",
    page: `/pages/${i % 300}`,
    amount: i * 1.5,
    tags: ["a", "b", "c"],
    utm_source: "newsletter",
    utm_campaign: "winter-2026",
    $browser: "Firefox",
    $os: "Linux",
  },
}));

function measure<T>(label: string, count: number, run: () => T): T {
  const start = performance.now();
  const value = run();
  const ms = performance.now() - start;
  console.log(`${label.padEnd(46)} ${ms.toFixed(0).padStart(6)} ms  ${Math.round((count / ms) * 1000).toLocaleString("en-US").padStart(10)} events/s`);
  return value;
}

const mapped = measure("intake: validate + map + $insert_id", EVENTS, () => mapNativeEvents(input, { nowMs, config }));
const lines = mapped.flatMap((item) => (item.ok ? [item.line] : []));
const avgBytes = lines.reduce((sum, line) => sum + Buffer.byteLength(line), 0) / lines.length;
console.log(`  ${lines.length} events, ${avgBytes.toFixed(0)} bytes each on average`);
const packed = measure("intake: pack into 256 KiB SQS envelopes", EVENTS, () => packEnvelopes("event", "native", "bench", lines, 262_144));
console.log(`  ${packed.bodies.length} SQS messages (${(EVENTS / packed.bodies.length).toFixed(0)} events per message)`);
const unpacked = measure("forwarder: parse envelopes", EVENTS, () => packed.bodies.flatMap((body) => parseEnvelope(body).records));
measure("forwarder: join + gzip (level 1) per 2000", EVENTS, () => {
  let compressed = 0;
  for (let i = 0; i < unpacked.length; i += 2000) {
    compressed += gzipSync(`${unpacked.slice(i, i + 2000).join("\n")}\n`, { level: constants.Z_BEST_SPEED }).length;
  }
  return compressed;
});

const credentials = { projectId: "1", projectToken: "t", serviceAccountUsername: "u", serviceAccountSecret: "s" };
const sandbox = new MixpanelSandbox({ credentials });
await sandbox.start();
const client = createIngestionClient({
  fetch: globalThis.fetch,
  baseUrl: sandbox.url,
  credentials: async () => ({ project_id: "1", service_account_username: "u", service_account_secret: "s" }),
  importMaxBytes: 10_000_000,
  concurrency: 3,
  timeoutMs: 30_000,
  retryDeps: { sleep: async () => undefined, random: Math.random, remainingMs: () => 600_000 },
  nowMs: Date.now,
});
const start = performance.now();
const outcomes = await client.importEvents(unpacked);
const ms = performance.now() - start;
const imported = outcomes.filter((o) => o.status === "imported").length;
console.log(
  `${"forwarder → local Mixpanel /import (gzip, 3 in flight)".padEnd(46)} ${ms.toFixed(0).padStart(6)} ms  ${Math.round((imported / ms) * 1000).toLocaleString("en-US").padStart(10)} events/s  (${sandbox.requests.length} requests, sandbox parses and validates every event)`,
);
await sandbox.stop();
