import { createHash } from "node:crypto";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { adobeBatch, brazeBatch, intakeRequest, nativeEvents } from "./events.js";

/**
 * What the erased-ids check costs the intake, per route, as a share of the intake's own CPU per
 * event. Two figures from the same process, each the least CPU time of BENCH_ERASED_ROUNDS (9)
 * rounds, so the machine's other load weighs on neither:
 *  - the real handleIntake of BENCH_ROOT's code (default this checkout) with no list;
 *  - the check alone (lib/enqueue/erased.ts) on the records that intake queued, against a list of
 *    BENCH_ERASED_IDS (10,000) ids none of the senders' ids is on: "hinted", the list as gdpr:delete
 *    writes it (digests and hints, lib/privacy/suppression.ts); and a list written before hints
 *    (digests only), "ids seen" with the answers the container already holds (the same users come
 *    back), "ids new" with a fresh list each round (every id hashed, the worst case).
 * Also the intake with the list, end to end, for reference (noisier). Prints one line per route
 * and a RESULT line. `node --import tsx test/bench/erased-check.bench.ts`
 */
const root = process.env.BENCH_ROOT ?? process.cwd();
const rounds = Number(process.env.BENCH_ERASED_ROUNDS ?? 9);
const listSize = Number(process.env.BENCH_ERASED_IDS ?? 10_000);
type Handle = (request: unknown, deps: unknown) => Promise<{ response: { statusCode: number; body: string } }>;
const load = async <T>(path: string): Promise<T> => (await import(pathToFileURL(join(root, path)).href)) as T;
const { handleIntake } = await load<{ handleIntake: Handle }>("lib/intake/process.ts");
const { parseStageConfig } = await load<{ parseStageConfig: (raw: unknown, stage: string) => unknown }>("lib/config/stage.ts");
const { parseQueuedRecords } = await load<{ parseQueuedRecords: (body: string) => { lines(): readonly string[] } }>("lib/records/envelope-v2.ts");
type Matcher = { isErased(json: string): boolean } | undefined;
const { erasedMatcher } = await load<{ erasedMatcher: (digests: ReadonlySet<string>, brevo: undefined) => Matcher }>("lib/enqueue/erased.ts");
type ListFile = { digests: string[] };
const { activeDigests, withSuppressedIds } = await load<{
  activeDigests: (file: ListFile, nowMs: number) => ReadonlySet<string>;
  withSuppressedIds: (file: ListFile, ids: readonly string[]) => ListFile;
}>("lib/privacy/suppression.ts");

const TOKEN = "bench-intake-token-0123456789";
let capture = false;
const captured: string[] = [];
const erasedIds = Array.from({ length: listSize }, (_, i) => `erased-${i}`);
const list = activeDigests(withSuppressedIds({ digests: [] }, erasedIds), Date.now());
const digestsOnly = new Set(erasedIds.map((id) => createHash("sha256").update(id).digest("hex")));
const baseDeps = {
  config: parseStageConfig({}, "bench"),
  tokens: async () => [TOKEN],
  queue: {
    send: async (_url: string, bodies: readonly string[]) => {
      if (capture) for (const body of bodies) captured.push(...parseQueuedRecords(body).lines());
    },
  },
  queueUrl: "bench",
  rejected: { put: async () => "key" },
  maxMessageBytes: 262_144,
  maxBodyBytes: 5_000_000,
  nowMs: Date.now,
  newCorrelationId: () => "bench",
};
const withList = { ...baseDeps, erasedDigests: async () => list };
const request = (path: string, body: unknown, headers: Record<string, string> = {}) => intakeRequest(TOKEN, path, body, headers);

const nowS = Math.floor(Date.now() / 1000);
const routes = [
  { label: "native (2000-event requests)", events: 2000, requests: Array.from({ length: 10 }, (_, i) => request("/v1/events", nativeEvents(2000, nowS - i))) },
  { label: "braze (100-event requests)", events: 100, requests: Array.from({ length: 200 }, (_, i) => request("/v1/braze/currents", brazeBatch(100, i, process.cwd()), { "braze-currents-version": "1" })) },
  { label: "adobe (1-event calls)", events: 1, requests: Array.from({ length: 4000 }, (_, i) => request("/v1/adobe/events", adobeBatch(1, nowS, i))) },
];

async function cpuMsPer10k(requests: readonly unknown[], events: number, deps: unknown): Promise<number> {
  const start = process.cpuUsage();
  for (const r of requests) {
    const { response } = await handleIntake(r, deps);
    if (response.statusCode !== 202) throw new Error(`${response.statusCode} ${response.body.slice(0, 200)}`);
  }
  const cpu = process.cpuUsage(start);
  return ((cpu.user + cpu.system) / 1000 / (requests.length * events)) * 10_000;
}

function cpuUs(work: () => void): number {
  const start = process.cpuUsage();
  work();
  const cpu = process.cpuUsage(start);
  return cpu.user + cpu.system;
}

const results = [];
for (const route of routes) {
  capture = true;
  captured.length = 0;
  await cpuMsPer10k(route.requests, route.events, baseDeps);
  capture = false;
  const lines = [...captured];
  // Warm-up of both paths (JIT), not measured.
  await cpuMsPer10k(route.requests.slice(0, 20), route.events, baseDeps);
  await cpuMsPer10k(route.requests.slice(0, 20), route.events, withList);
  let without = Number.POSITIVE_INFINITY;
  let withErased = Number.POSITIVE_INFINITY;
  let checkHinted = Number.POSITIVE_INFINITY;
  let checkNew = Number.POSITIVE_INFINITY;
  let checkSeen = Number.POSITIVE_INFINITY;
  const hintedMatcher = erasedMatcher(list, undefined);
  const seenMatcher = erasedMatcher(digestsOnly, undefined);
  for (let round = 0; round < rounds; round++) {
    without = Math.min(without, await cpuMsPer10k(route.requests, route.events, baseDeps));
    withErased = Math.min(withErased, await cpuMsPer10k(route.requests, route.events, withList));
    checkHinted = Math.min(checkHinted, cpuUs(() => lines.forEach((line) => hintedMatcher?.isErased(line))));
    const fresh = erasedMatcher(new Set(digestsOnly), undefined);
    checkNew = Math.min(checkNew, cpuUs(() => lines.forEach((line) => fresh?.isErased(line))));
    checkSeen = Math.min(checkSeen, cpuUs(() => lines.forEach((line) => seenMatcher?.isErased(line))));
  }
  const per10k = (us: number) => (us / 1000 / lines.length) * 10_000;
  const row = {
    label: route.label,
    intakeCpuMsPer10k: without,
    checkHintedCpuMsPer10k: per10k(checkHinted),
    hintedPercent: (per10k(checkHinted) / without) * 100,
    checkIdsSeenCpuMsPer10k: per10k(checkSeen),
    checkIdsNewCpuMsPer10k: per10k(checkNew),
    idsSeenPercent: (per10k(checkSeen) / without) * 100,
    idsNewPercent: (per10k(checkNew) / without) * 100,
    endToEndPercent: ((withErased - without) / without) * 100,
  };
  results.push(row);
  process.stdout.write(
    `${route.label}: intake ${without.toFixed(0)} CPU-ms/10k events; check ${row.checkHintedCpuMsPer10k.toFixed(1)} (hinted list, ${row.hintedPercent.toFixed(1)} %); ` +
      `digests-only list ${row.checkIdsSeenCpuMsPer10k.toFixed(1)} (ids seen, ${row.idsSeenPercent.toFixed(1)} %) / ${row.checkIdsNewCpuMsPer10k.toFixed(1)} (ids new, ${row.idsNewPercent.toFixed(1)} %); ` +
      `end to end (hinted) ${row.endToEndPercent >= 0 ? "+" : ""}${row.endToEndPercent.toFixed(1)} %\n`,
  );
}
process.stdout.write(`RESULT ${JSON.stringify(results)}\n`);
