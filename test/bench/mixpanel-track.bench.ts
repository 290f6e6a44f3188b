import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { APIGatewayProxyEventV2 } from "aws-lambda";
import { LOCAL_MIXPANEL_CREDENTIALS, startLocalStack } from "../../infra/local/stack.js";
import { parseStageConfig } from "../../lib/config/stage.js";
import { decodeCompatRequest, queryParams } from "../../lib/intake/mixpanel-compat/decode.js";
import { mapCompatRecord } from "../../lib/intake/mixpanel-compat/records.js";

/**
 * `npm run bench:track`: requests/s and latency of Mixpanel-compatible `/track` with 50-event
 * batches (what the Node SDK's track_batch and the browser batcher send: a base64 `data=` form
 * body) through the intake Lambda handler, queueing to a real SQS protocol server (fauxqs) on
 * loopback. Figures are printed, not asserted.
 * Env: BENCH_REQUESTS (default 1000), BENCH_CONCURRENCY (default "1,8").
 */
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 1000);
const CONCURRENCIES = (process.env.BENCH_CONCURRENCY ?? "1,8").split(",").map(Number);
const BATCH = 50;

const dir = mkdtempSync(join(tmpdir(), "relay-bench-track-"));
const configFile = join(dir, "config.json");
writeFileSync(configFile, JSON.stringify({ mixpanel_compat: { project_tokens: [LOCAL_MIXPANEL_CREDENTIALS.projectToken] } }));
const stack = await startLocalStack({ configFile, startPollers: false });
const intake = await import("../../functions/intake/handler.js");

const nowMs = Date.now();
function trackEvent(requestIndex: number): APIGatewayProxyEventV2 {
  const events = Array.from({ length: BATCH }, (_, i) => ({
    event: `Bench Event ${i % 10}`,
    properties: {
      token: LOCAL_MIXPANEL_CREDENTIALS.projectToken,
      distinct_id: `user-${(requestIndex * BATCH + i) % 5000}`,
      time: nowMs - i * 1000,
      mp_lib: "node",
      $lib_version: "0.24.0",
      page: `/pages/${i % 300}`,
      plan: i % 2 === 0 ? "pro" : "free",
      amount: requestIndex * 1.5 + i,
      utm_source: "newsletter",
    },
  }));
  const body = `data=${Buffer.from(JSON.stringify(events)).toString("base64")}`;
  return {
    version: "2.0",
    routeKey: "$default",
    rawPath: "/track",
    rawQueryString: "ip=0&verbose=0",
    headers: { "content-type": "application/x-www-form-urlencoded", host: "127.0.0.1" },
    queryStringParameters: { ip: "0", verbose: "0" },
    requestContext: {
      accountId: "000000000000",
      apiId: "bench",
      domainName: "127.0.0.1",
      domainPrefix: "bench",
      http: { method: "POST", path: "/track", protocol: "HTTP/1.1", sourceIp: "127.0.0.1", userAgent: "bench" },
      requestId: `bench-${requestIndex}`,
      routeKey: "$default",
      stage: "$default",
      time: new Date(nowMs).toUTCString(),
      timeEpoch: nowMs,
    },
    body,
    isBase64Encoded: false,
  };
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;

// Warm-up: cold start (config, clients, first connections) is not what is measured.
for (let i = 0; i < 20; i += 1) await intake.handler(trackEvent(i));

console.log(`/track, ${BATCH}-event base64 form bodies (${Buffer.byteLength(trackEvent(0).body ?? "")} bytes), intake handler → fauxqs SQS on loopback`);
for (const concurrency of CONCURRENCIES) {
  const events = Array.from({ length: REQUESTS }, (_, i) => trackEvent(i + 1000));
  const latencies: number[] = [];
  let next = 0;
  let failures = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < events.length) {
        const event = events[next];
        next += 1;
        if (!event) break;
        const began = performance.now();
        const result = await intake.handler(event);
        latencies.push(performance.now() - began);
        if (result.statusCode !== 200 || result.body !== "1") failures += 1;
      }
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  console.log(
    `  concurrency ${String(concurrency).padStart(2)}: ${REQUESTS} requests in ${seconds.toFixed(2)} s = ${(REQUESTS / seconds).toFixed(0)} req/s (${((REQUESTS * BATCH) / seconds).toFixed(0)} events/s); latency p50 ${percentile(latencies, 50).toFixed(2)} ms, p99 ${percentile(latencies, 99).toFixed(2)} ms; non-"1" answers: ${failures}`,
  );
}

// The relay's own CPU per request, without SQS: decode the form body and map the 50 events.
{
  const config = parseStageConfig({ mixpanel_compat: { project_tokens: [LOCAL_MIXPANEL_CREDENTIALS.projectToken] } }, "bench");
  const ctx = { nowMs: Date.now(), config, projectTokens: new Set([LOCAL_MIXPANEL_CREDENTIALS.projectToken]), clientIp: undefined };
  const bodies = Array.from({ length: REQUESTS }, (_, i) => Buffer.from(trackEvent(i + 5000).body ?? ""));
  const latencies: number[] = [];
  const start = performance.now();
  const query = queryParams("ip=0&verbose=0", {});
  if (!query.ok) throw new Error(query.message);
  for (const body of bodies) {
    const began = performance.now();
    const decoded = decodeCompatRequest({
      headers: { "content-type": "application/x-www-form-urlencoded" },
      query: query.fields,
      body,
      maxBodyBytes: 5_000_000,
      maxDecompressedBytes: 10_000_000,
    });
    if (decoded.ok) decoded.records.forEach((record, index) => mapCompatRecord("track", record, index, ctx));
    latencies.push(performance.now() - began);
  }
  const seconds = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  console.log(
    `  decode + map only (no SQS): ${(REQUESTS / seconds).toFixed(0)} req/s; p50 ${percentile(latencies, 50).toFixed(2)} ms, p99 ${percentile(latencies, 99).toFixed(2)} ms`,
  );
}
await stack.stop();
