import fc from "fast-check";
import { DEFAULT_LOCAL_INTAKE_TOKEN } from "../../infra/local/stack.js";
import {
  ROUTES,
  type CorpusOptions,
  type FuzzItem,
  type Route,
  accountingProblems,
  describeBody,
  hostileBody,
  mixedBatch,
  nearCapBody,
  readAnswer,
} from "./corpus.js";

/**
 * `npm run fuzz`: the fuzz corpus of `npm test` (test/fuzz/corpus.ts) against a running local
 * stack (`npm start`), for longer. Prints counts by route and status; exits 1 on any 5xx, any
 * request that got no answer, or any answer that does not account for a mixed batch (a good
 * item refused, a bad one queued, counts that do not add up).
 *
 * Env: FUZZ_REQUESTS (50000), FUZZ_SEED, FUZZ_CONCURRENCY (8), INTAKE_URL (http://127.0.0.1:$PORT,
 * PORT default 3000; loopback only), INTAKE_TOKEN (the local stack's default), FUZZ_BODY_CAP (the
 * stack's INTAKE_MAX_BODY_BYTES, default 5000000).
 */
const REQUESTS = positive("FUZZ_REQUESTS", 50_000);
const SEED = positive("FUZZ_SEED", 20_261_127);
const CONCURRENCY = positive("FUZZ_CONCURRENCY", 8);
const BODY_CAP = positive("FUZZ_BODY_CAP", 5_000_000);
const INTAKE_URL = process.env.INTAKE_URL ?? `http://127.0.0.1:${process.env.PORT ?? "3000"}`;
const TOKEN = process.env.INTAKE_TOKEN ?? DEFAULT_LOCAL_INTAKE_TOKEN;
/** Fewer huge strings than in `npm test`: the local stack keeps what it receives in memory. */
const options: CorpusOptions = { hugeMax: 100_000, nowMs: Date.now };
const CHUNK = 500;

function positive(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`${name} must be a positive integer, got ${JSON.stringify(raw)}`);
  return value;
}

const target = new URL(INTAKE_URL);
if (!["127.0.0.1", "localhost", "[::1]"].includes(target.hostname)) {
  console.error(`fuzz: INTAKE_URL must be a loopback address (127.0.0.1), not ${target.hostname}`);
  process.exit(2);
}

interface FuzzRequest {
  readonly route: Route;
  readonly body: Buffer;
  /** Mixed batches: the items, for the accounting check. */
  readonly items?: readonly FuzzItem[];
}

/** 75% mixed batches, 25% bodies of any shape, one in a thousand within 64 bytes of the cap. */
const requestArbitrary: fc.Arbitrary<FuzzRequest> = fc.constantFrom(...ROUTES).chain((route) =>
  fc.oneof(
    { weight: 750, arbitrary: mixedBatch(route, options) },
    { weight: 249, arbitrary: hostileBody(route, options).map(({ body }): FuzzRequest => ({ route, body })) },
    { weight: 1, arbitrary: nearCapBody(route, options, BODY_CAP) },
  ),
);

const counts = new Map<Route, Map<string, number>>();
const problems: string[] = [];
let serverErrors = 0;
let sent = 0;

function tally(route: Route, status: string): void {
  const byStatus = counts.get(route) ?? new Map<string, number>();
  byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
  counts.set(route, byStatus);
}

function problem(request: FuzzRequest, message: string): void {
  const line = `${request.route}: ${message}\n    body ${describeBody(request.body).slice(0, 400)}`;
  // Shown as found (the run is long), and again in the summary.
  if (problems.length < 20) process.stderr.write(`fuzz problem: ${line}\n`);
  problems.push(problems.length < 20 ? line : "");
}

async function fire(request: FuzzRequest): Promise<void> {
  let status: number;
  let json: unknown;
  try {
    const response = await fetch(`${INTAKE_URL}${request.route}`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${TOKEN}` },
      body: new Uint8Array(request.body),
      signal: AbortSignal.timeout(60_000),
    });
    status = response.status;
    const text = await response.text();
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
      problem(request, `status ${status} without a JSON body: ${text.slice(0, 200)}`);
    }
  } catch (error) {
    tally(request.route, "no answer");
    problem(request, `no answer: ${String(error)}`);
    return;
  }
  tally(request.route, String(status));
  if (status >= 500) {
    serverErrors++;
    problem(request, `${status} ${JSON.stringify(json).slice(0, 300)}`);
    return;
  }
  if (![200, 202, 400, 413].includes(status)) problem(request, `unexpected status ${status}`);
  if (request.body.length > BODY_CAP) {
    if (status !== 413) problem(request, `a body of ${request.body.length} bytes over the ${BODY_CAP}-byte cap got ${status}`);
    return;
  }
  if (!request.items) return;
  if (status !== 200 && status !== 202) {
    problem(request, `a mixed batch got ${status} ${JSON.stringify(json).slice(0, 300)}`);
    return;
  }
  const answer = readAnswer(json);
  if (typeof answer === "string") return problem(request, answer);
  for (const found of accountingProblems(request.items, answer)) problem(request, found);
}

const started = Date.now();
const ticker = setInterval(() => process.stderr.write(`fuzz: ${sent}/${REQUESTS} requests, ${serverErrors} 5xx, ${problems.length} problems\n`), 5_000);

for (let chunk = 0; sent < REQUESTS; chunk++) {
  const batch = fc.sample(requestArbitrary, { seed: SEED + chunk, numRuns: Math.min(CHUNK, REQUESTS - sent) });
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let request = batch[next++]; request !== undefined; request = batch[next++]) {
        await fire(request);
        sent++;
      }
    }),
  );
}
clearInterval(ticker);

const statuses = [...new Set([...counts.values()].flatMap((byStatus) => [...byStatus.keys()]))].sort();
console.log(`fuzz: ${sent} requests to ${INTAKE_URL} in ${((Date.now() - started) / 1000).toFixed(0)} s (seed ${SEED})`);
console.log(["route".padEnd(22), ...statuses.map((status) => status.padStart(9))].join(""));
for (const route of ROUTES) {
  const byStatus = counts.get(route) ?? new Map<string, number>();
  console.log([route.padEnd(22), ...statuses.map((status) => String(byStatus.get(status) ?? 0).padStart(9))].join(""));
}
for (const found of problems.filter((line) => line !== "")) console.log(`problem: ${found}`);
console.log(`fuzz: ${serverErrors} 5xx, ${problems.length} problem(s)`);
process.exit(serverErrors === 0 && problems.length === 0 ? 0 : 1);
