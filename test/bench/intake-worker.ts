import { performance } from "node:perf_hooks";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { adobeBatch, brazeBatch, intakeRequest, nativeEvents, smallNativeEvents } from "./events.js";

/**
 * Intake CPU and handler latency of several code trees, in one process, taking turns: the real
 * handleIntake of each (auth, body parse, validate, map, $insert_id, pack) with the SQS sender and
 * rejected store replaced by in-memory sinks, so what is timed is the relay's own work and not a
 * queue's round trip (in AWS, add one SQS SendMessageBatch per 10 messages).
 *
 * BENCH_INTAKE_ROOTS is a JSON object {variant: code root}. The requests of each shape are cut into
 * slices, and every slice is handled by each variant in turn (the order rotating from slice to
 * slice), so a busy neighbour slows the variants alike: on a shared machine one process's CPU per
 * event varies by a third from run to run, while two variants measured slice by slice side by side
 * agree within a few per cent. Besides each variant's totals, every row carries each slice's CPU
 * against BENCH_INTAKE_REFERENCE's on the same slice (`sliceRatios`; run.ts reports their median).
 * Prints one RESULT line: {variant: rows}.
 */
const roots = JSON.parse(process.env.BENCH_INTAKE_ROOTS ?? JSON.stringify({ new: process.cwd() })) as Record<string, string>;
const variants = Object.keys(roots);
const reference = process.env.BENCH_INTAKE_REFERENCE ?? variants[0] ?? "new";
const rounds = Number(process.env.BENCH_INTAKE_ROUNDS ?? 3);
const SLICES_PER_ROUND = 5;
const TOKEN = "bench-intake-token-0123456789";
// BENCH_ERASED_IDS (default 10000): ids on the erased-ids list, none of them a sender's id, so every
// record is checked against a realistic list, built and read by each root's own code as
// gdpr:delete writes it and the intake reads it; code that predates the list ignores it.
const erasedCount = Number(process.env.BENCH_ERASED_IDS ?? 10_000);
const erasedIds = Array.from({ length: erasedCount }, (_, i) => `erased-${i}`);

interface Response { statusCode: number; body: string }
type Handle = (request: unknown, deps: unknown) => Promise<{ response: Response }>;
type ListFile = { digests: string[] };
type SuppressionModule = {
  activeDigests?: (file: ListFile, nowMs: number) => ReadonlySet<string>;
  withSuppressedIds?: (file: ListFile, ids: readonly string[]) => ListFile;
};

interface Sink { bytes: number; messages: number }
interface Variant { handle: (request: unknown) => Promise<{ response: Response }>; sink: Sink }

async function loadVariant(root: string): Promise<Variant> {
  const load = async <T>(path: string): Promise<T> => (await import(pathToFileURL(join(root, path)).href)) as T;
  const { handleIntake } = await load<{ handleIntake: Handle }>("lib/intake/process.ts");
  const { parseStageConfig } = await load<{ parseStageConfig: (raw: unknown, stage: string) => unknown }>("lib/config/stage.ts");
  const suppression = await load<SuppressionModule>("lib/privacy/suppression.ts").catch((): SuppressionModule => ({}));
  const erased =
    suppression.activeDigests && suppression.withSuppressedIds
      ? suppression.activeDigests(suppression.withSuppressedIds({ digests: [] }, erasedIds), Date.now())
      : new Set<string>();
  const sink: Sink = { bytes: 0, messages: 0 };
  let nextId = 0;
  const deps = {
    config: parseStageConfig({}, "bench"),
    tokens: async () => [TOKEN],
    queue: {
      send: async (_url: string, bodies: readonly string[]) => {
        sink.messages += bodies.length;
        for (const body of bodies) sink.bytes += body.length;
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
  return { handle: (request) => handleIntake(request, deps), sink };
}

const loaded = new Map<string, Variant>();
for (const variant of variants) loaded.set(variant, await loadVariant(roots[variant] as string));
const variantOf = (name: string): Variant => loaded.get(name) as Variant;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

type Request = ReturnType<typeof intakeRequest>;

/** CPU-ms `variant` spends on `requests`, one after the other; each latency is pushed to `latencies`. */
async function handleAll(label: string, variant: string, requests: readonly Request[], latencies?: number[]): Promise<number> {
  const { handle } = variantOf(variant);
  const cpuStart = process.cpuUsage();
  for (const r of requests) {
    const began = performance.now();
    const result = await handle(r);
    latencies?.push(performance.now() - began);
    if (result.response.statusCode !== 202) throw new Error(`${variant} ${label}: ${result.response.statusCode} ${result.response.body.slice(0, 200)}`);
  }
  const cpu = process.cpuUsage(cpuStart);
  return (cpu.user + cpu.system) / 1000;
}

interface Measured { cpuMs: number; latencies: number[]; sliceCpuMs: number[]; sinkAtStart: Sink }

async function run(label: string, requests: Request[], eventsPerRequest: number) {
  // Warm-up, not measured: one whole pass per variant, so what is measured is the steady cost per
  // event of a warm container, not V8 compiling the code (cold start is its own section).
  for (const variant of variants) await handleAll(label, variant, requests);
  const measured = new Map<string, Measured>(
    variants.map((variant) => [variant, { cpuMs: 0, latencies: [], sliceCpuMs: [], sinkAtStart: { ...variantOf(variant).sink } }]),
  );
  const sliceSize = Math.ceil(requests.length / SLICES_PER_ROUND);
  let turn = 0;
  for (let round = 0; round < rounds; round++) {
    for (let from = 0; from < requests.length; from += sliceSize) {
      const slice = requests.slice(from, from + sliceSize);
      const order = variants.map((_, i) => variants[(i + turn) % variants.length] as string);
      turn++;
      for (const variant of order) {
        const m = measured.get(variant) as Measured;
        const cpuMs = await handleAll(label, variant, slice, m.latencies);
        m.cpuMs += cpuMs;
        m.sliceCpuMs.push(cpuMs);
      }
    }
  }
  const events = requests.length * eventsPerRequest * rounds;
  const referenceSlices = measured.get(reference)?.sliceCpuMs;
  const rowOf = (variant: string) => {
    const m = measured.get(variant) as Measured;
    const { sink } = variantOf(variant);
    m.latencies.sort((a, b) => a - b);
    // Each slice's CPU over the reference variant's on the same slice (none for the reference itself).
    const sliceRatios = variant === reference || !referenceSlices ? undefined : m.sliceCpuMs.map((cpu, i) => cpu / (referenceSlices[i] ?? Number.NaN));
    return {
      label,
      events,
      requests: requests.length * rounds,
      requestBytes: requests.reduce((sum, r) => sum + r.body.length, 0) / requests.length,
      cpuMsPer10k: (m.cpuMs / events) * 10_000,
      p50Ms: percentile(m.latencies, 50),
      p99Ms: percentile(m.latencies, 99),
      sqsMessages: sink.messages - m.sinkAtStart.messages,
      sqsBytes: sink.bytes - m.sinkAtStart.bytes,
      sliceRatios,
    };
  };
  return new Map(variants.map((variant) => [variant, rowOf(variant)]));
}

const nowS = Math.floor(Date.now() / 1000);
const request = (path: string, body: unknown, headers: Record<string, string> = {}) => intakeRequest(TOKEN, path, body, headers);
const native = Array.from({ length: 25 }, (_, i) => request("/v1/events", nativeEvents(2000, nowS - i)));
const nativeSmall = Array.from({ length: 25 }, (_, i) => request("/v1/events", smallNativeEvents(2000, nowS - i)));
const braze = Array.from({ length: 300 }, (_, i) => request("/v1/braze/currents", brazeBatch(100, i, process.cwd()), { "braze-currents-version": "1" }));
const adobe = Array.from({ length: 3000 }, (_, i) => request("/v1/adobe/events", adobeBatch(1, nowS, i)));

const shapes = [
  await run("native (2000-event requests, ~600 B events)", native, 2000),
  await run("native (2000-event requests, ~300 B events as in the issue)", nativeSmall, 2000),
  await run("braze (100-event requests)", braze, 100),
  await run("adobe (1-event calls)", adobe, 1),
];
process.stdout.write(`RESULT ${JSON.stringify(Object.fromEntries(variants.map((variant) => [variant, shapes.map((shape) => shape.get(variant))])))}\n`);
