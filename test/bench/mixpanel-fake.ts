import { createServer } from "node:http";
import { gunzipSync } from "node:zlib";

/**
 * The benchmark's Mixpanel: a loopback /import that answers after BENCH_LATENCY_MS, like
 * Mixpanel's documented success body (docs/vendors/mixpanel-api.md §3). It gunzips and counts
 * lines but does not validate events (the strict sandbox in test/support does that for tests):
 * here it must cost the machine as little CPU as possible, in its own process, so the
 * forwarder's CPU can be measured apart. GET /_count answers how many events arrived.
 */
const latencyMs = Number(process.env.BENCH_LATENCY_MS ?? 0);
let received = 0;
let requests = 0;

const server = createServer((request, response) => {
  const chunks: Buffer[] = [];
  request.on("data", (chunk: Buffer) => chunks.push(chunk));
  request.on("end", () => {
    if (request.method === "GET" && request.url === "/_count") {
      response.writeHead(200, { "content-type": "application/json" });
      response.end(JSON.stringify({ received, requests }));
      return;
    }
    if (request.method === "POST" && request.url?.startsWith("/_latency/")) {
      // Lets the orchestrator change the latency between runs without a restart.
      latencyOverride = Number(request.url.slice("/_latency/".length));
      response.end("{}");
      return;
    }
    const raw = Buffer.concat(chunks);
    const body = request.headers["content-encoding"] === "gzip" ? gunzipSync(raw) : raw;
    let lines = 0;
    // /import takes NDJSON (the relay) or a JSON array (mixpanel-import); count records either way.
    if (body[0] === 0x5b) lines = (JSON.parse(body.toString("utf8")) as unknown[]).length;
    else for (let at = body.indexOf(10); at !== -1; at = body.indexOf(10, at + 1)) lines++;
    received += lines;
    requests++;
    const answer = () => {
      response.writeHead(200, { "content-type": "application/json" });
      response.end(JSON.stringify({ code: 200, num_records_imported: lines, status: "OK" }));
    };
    const delay = latencyOverride ?? latencyMs;
    if (delay > 0) setTimeout(answer, delay);
    else answer();
  });
});
let latencyOverride: number | undefined;

server.listen(0, "127.0.0.1", () => {
  const address = server.address();
  if (address && typeof address === "object") process.stdout.write(`LISTENING ${address.port}\n`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
