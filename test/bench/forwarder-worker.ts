import { performance } from "node:perf_hooks";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import type { Context, SQSBatchResponse, SQSEvent } from "aws-lambda";
import { nativeEvents } from "./events.js";

/**
 * One forwarder run, in its own process (the orchestrator, run.ts, interleaves old and new).
 * It packs BENCH_EVENTS native events the way the intake of BENCH_ROOT does (2000-event
 * intake requests; envelope v1 or v2), then calls BENCH_ROOT's real forwarder Lambda handler
 * invocation by invocation as the SQS event source would: BENCH_MESSAGES_PER_INVOCATION
 * messages per batch, also stopping at Lambda's 6 MB invocation payload. Prints one RESULT line.
 */
const root = process.env.BENCH_ROOT ?? process.cwd();
const envelope = process.env.BENCH_ENVELOPE === "v1" ? "v1" : "v2";
const eventCount = Number(process.env.BENCH_EVENTS ?? 200_000);
const perInvocation = Number(process.env.BENCH_MESSAGES_PER_INVOCATION ?? 20);
const INVOCATION_PAYLOAD_BYTES = 6_291_456;
const INTAKE_BATCH = Number(process.env.BENCH_INTAKE_BATCH ?? 2000);
const MESSAGE_BYTES = 262_144;
const fakeUrl = process.env.MIXPANEL_API_URL ?? "";

const load = async <T>(path: string): Promise<T> => (await import(pathToFileURL(join(root, path)).href)) as T;

type Mapped = { ok: true; line: string } | { ok: false };
const { mapNativeEvents } = await load<{ mapNativeEvents: (body: unknown, ctx: unknown) => Mapped[] }>("lib/sources/native.ts");
const { parseStageConfig } = await load<{ parseStageConfig: (raw: unknown, stage: string) => unknown }>("lib/config/stage.ts");
type Packer = (lines: string[]) => string[];
let pack: Packer;
if (envelope === "v1") {
  const { packEnvelopes } = await load<{ packEnvelopes: (k: string, s: string, c: string, l: string[], m: number) => { bodies: string[] } }>("lib/records/envelope.ts");
  pack = (lines) => packEnvelopes("event", "native", "bench", lines, MESSAGE_BYTES).bodies;
} else {
  const { packEnvelopesV2 } = await load<{ packEnvelopesV2: (k: string, s: string, c: string, l: string[], o: { maxMessageBytes: number }) => { bodies: string[] } }>("lib/records/envelope-v2.ts");
  pack = (lines) => packEnvelopesV2("event", "native", "bench", lines, { maxMessageBytes: MESSAGE_BYTES }).bodies;
}

const nowMs = Date.now();
const config = parseStageConfig({}, "bench");
const input = nativeEvents(eventCount, Math.floor(nowMs / 1000));
const bodies: string[] = [];
let lineBytes = 0;
for (let at = 0; at < input.length; at += INTAKE_BATCH) {
  const lines = mapNativeEvents(input.slice(at, at + INTAKE_BATCH), { nowMs, config }).flatMap((item) => (item.ok ? [item.line] : []));
  for (const line of lines) lineBytes += Buffer.byteLength(line);
  bodies.push(...pack(lines));
}
const invocations: SQSEvent[] = [];
for (let at = 0; at < bodies.length; ) {
  const records: SQSEvent["Records"] = [];
  let bytes = 0;
  while (at < bodies.length && records.length < perInvocation && bytes + Buffer.byteLength(bodies[at] ?? "") <= INVOCATION_PAYLOAD_BYTES) {
    const body = bodies[at] ?? "";
    bytes += Buffer.byteLength(body);
    records.push({ messageId: `m-${at}`, body } as SQSEvent["Records"][number]);
    at++;
  }
  invocations.push({ Records: records });
}

const { handler } = await load<{ handler: (event: SQSEvent, context: Context) => Promise<SQSBatchResponse> }>("functions/forwarder/handler.ts");
const count = async (): Promise<number> => ((await (await fetch(`${fakeUrl}/_count`)).json()) as { received: number }).received;

// Cold start (config, clients, first connection) is not what is measured: warm up on one invocation.
const warm = invocations.shift();
if (warm) await handler(warm, { getRemainingTimeInMillis: () => 90_000 } as Context);
const before = await count();
let failures = 0;
const cpuStart = process.cpuUsage();
const start = performance.now();
for (const event of invocations) {
  const began = performance.now();
  const context = { getRemainingTimeInMillis: () => 90_000 - (performance.now() - began) } as Context;
  const result = await handler(event, context);
  failures += result.batchItemFailures.length;
}
const wallMs = performance.now() - start;
const cpu = process.cpuUsage(cpuStart);
const delivered = (await count()) - before;
const cpuMs = (cpu.user + cpu.system) / 1000;
process.stdout.write(
  `RESULT ${JSON.stringify({
    envelope,
    events: delivered,
    invocations: invocations.length,
    messages: bodies.length,
    eventsPerMessage: eventCount / bodies.length,
    avgEventBytes: lineBytes / eventCount,
    avgMessageBytes: bodies.reduce((sum, body) => sum + body.length, 0) / bodies.length,
    failures,
    wallMs,
    cpuMs,
    eventsPerSecond: (delivered / wallMs) * 1000,
    cpuMsPer10k: (cpuMs / delivered) * 10_000,
  })}\n`,
);
