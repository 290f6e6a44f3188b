import { readFileSync } from "node:fs";
import fc from "fast-check";
import { DEFAULT_LOCAL_INTAKE_TOKEN, LOCAL_MIXPANEL_CREDENTIALS } from "../../infra/local/stack.js";
import { localStackFilePath, readLocalStackFile } from "../../infra/local/stack-file.js";
import { COMPAT_PATHS, type CompatFuzzRequest, compatAnswerProblem, compatRequest } from "./compat-corpus.js";
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
 * The Mixpanel-compatible routes get a share of the requests in every encoding
 * (test/fuzz/compat-corpus.ts), counted per route and form. At the end it prints the stack's
 * resident memory at the start and its peak (VmHWM), read from /proc/<pid>/status of the stack's
 * process: FUZZ_STACK_PID, else the pid `npm start` wrote to .local/stack.json.
 *
 * Env: FUZZ_REQUESTS (50000), FUZZ_SEED, FUZZ_CONCURRENCY (8), INTAKE_URL (http://127.0.0.1:$PORT,
 * PORT default 3000; loopback only), INTAKE_TOKEN (the local stack's default), FUZZ_BODY_CAP (the
 * stack's INTAKE_MAX_BODY_BYTES, default 5000000), FUZZ_COMPAT_SHARE (percent of requests on the
 * compat routes, default 30), FUZZ_PROJECT_TOKEN (the stack's Mixpanel project token).
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
const COMPAT_SHARE = Math.min(100, positive("FUZZ_COMPAT_SHARE", 30));
const PROJECT_TOKEN = process.env.FUZZ_PROJECT_TOKEN ?? LOCAL_MIXPANEL_CREDENTIALS.projectToken;

/** The stack's process id, for its memory figures; undefined when it cannot be known. */
function stackPid(): number | undefined {
  if (process.env.FUZZ_STACK_PID) return positive("FUZZ_STACK_PID", 0);
  try {
    return readLocalStackFile(localStackFilePath(process.env))?.pid;
  } catch {
    return undefined;
  }
}

/** VmRSS / VmHWM of `pid` in bytes (proc(5)), undefined when unreadable. */
function memoryOf(pid: number | undefined, field: "VmRSS" | "VmHWM"): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((entry) => entry.startsWith(`${field}:`));
    const kb = /(\d+)\s*kB/.exec(line ?? "")?.[1];
    return kb === undefined ? undefined : Number(kb) * 1024;
  } catch {
    return undefined;
  }
}

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
const v1Arbitrary: fc.Arbitrary<FuzzRequest> = fc.constantFrom(...ROUTES).chain((route) =>
  fc.oneof(
    { weight: 750, arbitrary: mixedBatch(route, options) },
    { weight: 249, arbitrary: hostileBody(route, options).map(({ body }): FuzzRequest => ({ route, body })) },
    { weight: 1, arbitrary: nearCapBody(route, options, BODY_CAP) },
  ),
);

const compatArbitrary = compatRequest({ projectToken: PROJECT_TOKEN, intakeToken: TOKEN });
type AnyRequest = { readonly v1: FuzzRequest } | { readonly compat: CompatFuzzRequest };
const requestArbitrary: fc.Arbitrary<AnyRequest> = fc.oneof(
  { weight: 100 - COMPAT_SHARE, arbitrary: v1Arbitrary.map((v1): AnyRequest => ({ v1 })) },
  { weight: COMPAT_SHARE, arbitrary: compatArbitrary.map((compat): AnyRequest => ({ compat })) },
);

const counts = new Map<string, Map<string, number>>();
let reconnects = 0;

/**
 * fetch, sent again once when the stack closed an idle keep-alive connection just as it was
 * reused (undici's "other side closed" with nothing read): Node's server drops connections idle
 * for 5 s, and drawing the next chunk of requests can take that long. Anything else is reported.
 */
async function send(url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (error) {
    const cause = (error as { cause?: { code?: string; socket?: { bytesRead?: number } } }).cause;
    if (cause?.code !== "UND_ERR_SOCKET" || (cause.socket?.bytesRead ?? 0) > 0) throw error;
    reconnects++;
    return fetch(url, init);
  }
}
const problems: string[] = [];
let serverErrors = 0;
let sent = 0;

function tally(route: string, status: string): void {
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

async function fireCompat(request: CompatFuzzRequest): Promise<void> {
  const label = `${request.path} (${request.form})`;
  let status: number;
  let text: string;
  try {
    const response = await send(`${INTAKE_URL}${request.path}?${request.query}`, {
      method: request.method,
      headers: request.headers,
      ...(request.body !== undefined ? { body: new Uint8Array(request.body) } : {}),
      signal: AbortSignal.timeout(60_000),
    });
    status = response.status;
    text = await response.text();
  } catch (error) {
    tally(label, "no answer");
    compatProblem(label, request, `no answer: ${String(error)} ${String((error as { cause?: unknown }).cause ?? "")}`);
    return;
  }
  tally(label, String(status));
  if (status >= 500) serverErrors++;
  const found = compatAnswerProblem(request, status, text);
  if (found) compatProblem(label, request, found);
}

function compatProblem(label: string, request: CompatFuzzRequest, message: string): void {
  const line = `${label}: ${message}\n    body ${describeBody(request.body ?? Buffer.alloc(0)).slice(0, 300)}`;
  if (problems.length < 20) process.stderr.write(`fuzz problem: ${line}\n`);
  problems.push(problems.length < 20 ? line : "");
}

async function fire(request: FuzzRequest): Promise<void> {
  let status: number;
  let json: unknown;
  try {
    const response = await send(`${INTAKE_URL}${request.route}`, {
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
    problem(request, `no answer: ${String(error)} ${String((error as { cause?: unknown }).cause ?? "")}`);
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

const pid = stackPid();
const rssAtStart = memoryOf(pid, "VmRSS");
const started = Date.now();
const ticker = setInterval(() => process.stderr.write(`fuzz: ${sent}/${REQUESTS} requests, ${serverErrors} 5xx, ${problems.length} problems\n`), 5_000);

for (let chunk = 0; sent < REQUESTS; chunk++) {
  const batch = fc.sample(requestArbitrary, { seed: SEED + chunk, numRuns: Math.min(CHUNK, REQUESTS - sent) });
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let request = batch[next++]; request !== undefined; request = batch[next++]) {
        await ("v1" in request ? fire(request.v1) : fireCompat(request.compat));
        sent++;
      }
    }),
  );
}
clearInterval(ticker);

const statuses = [...new Set([...counts.values()].flatMap((byStatus) => [...byStatus.keys()]))].sort();
console.log(`fuzz: ${sent} requests to ${INTAKE_URL} in ${((Date.now() - started) / 1000).toFixed(0)} s (seed ${SEED})`);
const WIDTH = 34;
console.log(["route".padEnd(WIDTH), ...statuses.map((status) => status.padStart(9))].join(""));
const compatLabels = [...counts.keys()].filter((label) => COMPAT_PATHS.some((path) => label.startsWith(`${path} (`))).sort();
for (const route of [...ROUTES, ...compatLabels]) {
  const byStatus = counts.get(route) ?? new Map<string, number>();
  console.log([route.padEnd(WIDTH), ...statuses.map((status) => String(byStatus.get(status) ?? 0).padStart(9))].join(""));
}
const mb = (bytes: number | undefined) => (bytes === undefined ? "unknown" : `${(bytes / 1024 / 1024).toFixed(0)} MB`);
console.log(
  pid === undefined
    ? "fuzz: stack memory unknown (set FUZZ_STACK_PID, or run against `npm start`, which writes .local/stack.json)"
    : `fuzz: stack pid ${pid}: RSS ${mb(rssAtStart)} at start, ${mb(memoryOf(pid, "VmRSS"))} at the end, peak (VmHWM) ${mb(memoryOf(pid, "VmHWM"))}`,
);
for (const found of problems.filter((line) => line !== "")) console.log(`problem: ${found}`);
console.log(`fuzz: ${serverErrors} 5xx, ${problems.length} problem(s), ${reconnects} request(s) sent again after the stack closed an idle connection`);
process.exit(serverErrors === 0 && problems.length === 0 ? 0 : 1);
