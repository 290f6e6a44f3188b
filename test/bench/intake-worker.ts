import { performance } from "node:perf_hooks";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { adobeBatch, brazeBatch, intakeRequest, nativeEvents, smallNativeEvents } from "./events.js";

/**
 * Intake CPU and handler latency of BENCH_ROOT's code, in its own process: the real
 * handleIntake (auth, body parse, validate, map, $insert_id, pack) with the SQS sender and
 * rejected store replaced by in-memory sinks, so what is timed is the relay's own work and
 * not a queue's round trip (in AWS, add one SQS SendMessageBatch per 10 messages).
 * Prints one RESULT line.
 */
const root = process.env.BENCH_ROOT ?? process.cwd();
const rounds = Number(process.env.BENCH_INTAKE_ROUNDS ?? 1);
const load = async <T>(path: string): Promise<T> => (await import(pathToFileURL(join(root, path)).href)) as T;

interface Response { statusCode: number; body: string }
type Handle = (request: unknown, deps: unknown) => Promise<{ response: Response }>;
const { handleIntake } = await load<{ handleIntake: Handle }>("lib/intake/process.ts");
const { parseStageConfig } = await load<{ parseStageConfig: (raw: unknown, stage: string) => unknown }>("lib/config/stage.ts");

const TOKEN = "bench-intake-token-0123456789";
// BENCH_ERASED_IDS (default 10000): ids on the erased-ids list, none of them a sender's id, so every
// record is checked against a realistic list, built and read by BENCH_ROOT's own code as
// gdpr:delete writes it and the intake reads it; code that predates the list ignores it.
const erasedCount = Number(process.env.BENCH_ERASED_IDS ?? 10_000);
type ListFile = { digests: string[] };
type SuppressionModule = {
  activeDigests?: (file: ListFile, nowMs: number) => ReadonlySet<string>;
  withSuppressedIds?: (file: ListFile, ids: readonly string[]) => ListFile;
};
const suppression = await load<SuppressionModule>("lib/privacy/suppression.ts").catch((): SuppressionModule => ({}));
const erasedIds = Array.from({ length: erasedCount }, (_, i) => `erased-${i}`);
const erased =
  suppression.activeDigests && suppression.withSuppressedIds
    ? suppression.activeDigests(suppression.withSuppressedIds({ digests: [] }, erasedIds), Date.now())
    : new Set<string>();
let queuedBytes = 0;
let queuedMessages = 0;
let nextId = 0;
const deps = {
  config: parseStageConfig({}, "bench"),
  tokens: async () => [TOKEN],
  queue: {
    send: async (_url: string, bodies: readonly string[]) => {
      queuedMessages += bodies.length;
      for (const body of bodies) queuedBytes += body.length;
    },
  },
  queueUrl: "bench",
  rejected: { put: async () => "key" },
  maxMessageBytes: 262_144,
  maxBodyBytes: 5_000_000,
  nowMs: Date.now,
  newCorrelationId: () => `bench-${nextId++}`,
  erasedDigests: async () => erased,
};
const request = (path: string, body: unknown, headers: Record<string, string> = {}) => intakeRequest(TOKEN, path, body, headers);

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

async function run(label: string, requests: ReturnType<typeof request>[], eventsPerRequest: number) {
  // Warm-up (JIT) on the first tenth, not measured.
  for (const r of requests.slice(0, Math.ceil(requests.length / 10))) await handleIntake(r, deps);
  queuedBytes = 0;
  queuedMessages = 0;
  const latencies: number[] = [];
  const cpuStart = process.cpuUsage();
  for (let round = 0; round < rounds; round++) {
    for (const r of requests) {
      const began = performance.now();
      const result = await handleIntake(r, deps);
      latencies.push(performance.now() - began);
      if (result.response.statusCode !== 202) throw new Error(`${label}: ${result.response.statusCode} ${result.response.body.slice(0, 200)}`);
    }
  }
  const cpu = process.cpuUsage(cpuStart);
  const events = requests.length * eventsPerRequest * rounds;
  latencies.sort((a, b) => a - b);
  return {
    label,
    events,
    requests: requests.length * rounds,
    requestBytes: requests.reduce((sum, r) => sum + r.body.length, 0) / requests.length,
    cpuMsPer10k: ((cpu.user + cpu.system) / 1000 / events) * 10_000,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    sqsMessages: queuedMessages,
    sqsBytes: queuedBytes,
  };
}

const nowS = Math.floor(Date.now() / 1000);
const native = Array.from({ length: 25 }, (_, i) => request("/v1/events", nativeEvents(2000, nowS - i)));
const nativeSmall = Array.from({ length: 25 }, (_, i) => request("/v1/events", smallNativeEvents(2000, nowS - i)));
const braze = Array.from({ length: 300 }, (_, i) =>
  request("/v1/braze/currents", brazeBatch(100, i, process.cwd()), { "braze-currents-version": "1" }),
);
const adobe = Array.from({ length: 3000 }, (_, i) => request("/v1/adobe/events", adobeBatch(1, nowS, i)));

const results = [
  await run("native (2000-event requests, ~600 B events)", native, 2000),
  await run("native (2000-event requests, ~300 B events as in the issue)", nativeSmall, 2000),
  await run("braze (100-event requests)", braze, 100), await run("adobe (1-event calls)", adobe, 1)];
process.stdout.write(`RESULT ${JSON.stringify(results)}\n`);
