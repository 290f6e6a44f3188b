/**
 * Large-cohort diff bench (not a unit test):
 *   npm run bench:cohorts [-- <members=1000000> [both|diff|partitioned]]
 *
 * `diff`: the CPU one export spends per member between the Query API's answer and
 * knowing the adds, removes and updates, through the real code path in one process:
 * the real store (store.ts) over an in-memory S3 bucket (so gzip, JSON and the S3
 * object layout are real; no network), the real export tick (runCohortExport) run
 * unit by unit as invocations would run them. Three fresh processes; medians.
 *
 *   stage   the fetch step's work after the /engage answer is parsed: each page of
 *           1000 members written as its staged object (fetch-pages.ts putStaged);
 *   spill   staged pages split into hash-range partition chunks (emit.ts);
 *   diff    per partition: property hash + identity per member, previous snapshot
 *           decoded, merge diff, pending snapshot encoded and written, outbox of the
 *           members to send/remove written.
 *   "diffed" = stage + spill + diff. Not in it: the Query API call and parsing its
 *   answer (fetch-pages.ts, bounded by Mixpanel's 60 queries/hour anyway) and the
 *   emit step (delivery page objects + SQS messages for the ~2 % that changed),
 *   which is printed beside it.
 *
 * Data: a delivered snapshot of `members` (in the partition layout the run uses,
 * default limits: 500 k members per partition, so 1 M = 2 partitions), then the
 * next export: 1 % left, 1 % joined, 1 % changed. Peak RSS is sampled after the
 * setup was collected, but the in-memory bucket (all staged pages, snapshots and
 * chunks) is part of it. BENCH_PARTITION_MEMBERS=2000000 runs the single-partition
 * emit (emit.ts) instead.
 *
 * `partitioned` runs cohort-partitioned.bench.ts (invocation by invocation, fresh
 * processes, wall and RSS per invocation) for the same size.
 *
 * As a worker (`worker <members>`, or BENCH_COHORT_WORKER=<members>) it prints one
 * `RESULT {json}` line, which is how run.ts (`BENCH_SECTIONS=cohorts npm run bench`) reads it.
 */
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { AwsCallError } from "../../lib/aws/aws-call.js";
import type { S3BucketApi } from "../../lib/aws/s3-bucket.js";
import { runCohortExport } from "../../lib/cohorts/export.js";
import { PAGE_SIZE, type PageMember } from "../../lib/cohorts/messages.js";
import { partitionCount } from "../../lib/cohorts/partition-layout.js";
import { sortedUniqueRows } from "../../lib/cohorts/member-key.js";
import { encodeSnapshot } from "../../lib/cohorts/snapshot-codec.js";
import { encodeSnapshotV2 } from "../../lib/cohorts/snapshot-v2.js";
import { createCohortStore, keys } from "../../lib/cohorts/store.js";
import { identityProperties } from "../../lib/config/cohort-syncs.js";
import { BENCH_SYNC, benchExportDeps, benchLimits, benchMemberId, benchProps, benchSync, membersByPartition, previousSnapshotColumns, stagedRunState } from "./cohort-bench-fixture.js";

const SYNC = BENCH_SYNC;

export interface DiffBenchResult {
  members: number;
  partitions: number;
  /** CPU seconds per step (process CPU, zlib threads included). */
  cpuS: { stage: number; spill: number; diff: number; emit: number; diffed: number };
  wallS: { diffed: number };
  units: number;
  pagesEnqueued: number;
  peakRssMb: number;
  peakHeapMb: number;
}

/** S3 as a Map: the bench measures the relay's CPU, not a server's. Same answers as S3 for what the store asks. */
function memoryBucket(): S3BucketApi {
  const objects = new Map<string, Uint8Array>();
  const get = (key: string): Uint8Array => {
    const body = objects.get(key);
    if (!body) throw new AwsCallError("NoSuchKey", key, 404);
    return body;
  };
  return {
    async putObject(_bucket, key, body) {
      objects.set(key, typeof body === "string" ? Buffer.from(body) : body);
    },
    getObject: async (_bucket, key) => get(key),
    objectExists: async (_bucket, key) => objects.has(key),
    async copyObject(_bucket, from, to) {
      objects.set(to, get(from));
    },
    async deleteObject(_bucket, key) {
      objects.delete(key);
    },
    async listObjectsV2(_bucket, prefix) {
      return { keys: [...objects.keys()].filter((key) => key.startsWith(prefix)).sort() };
    },
  };
}

function collectGarbage(): void {
  setFlagsFromString("--expose-gc");
  const gc: unknown = runInNewContext("gc");
  if (typeof gc === "function") gc();
}

async function worker(members: number): Promise<DiffBenchResult> {
  const limits = benchLimits({
    // One unit (spill chunk, partition diff, partition emit) per tick, so each is measured alone.
    invocationWorkMs: 0,
    ...(process.env.BENCH_PARTITION_MEMBERS ? { partitionMembers: Number(process.env.BENCH_PARTITION_MEMBERS) } : {}),
  });
  const sync = benchSync();
  const syncs = [sync];
  const store = createCohortStore(memoryBucket(), "bench");
  const parts = partitionCount(members, limits);
  const identityKeys = identityProperties(sync.destination);

  // Setup (not measured): the delivered snapshot, partition by partition.
  {
    const byPart = membersByPartition(members, parts);
    for (let part = 0; part < parts; part++) {
      const cols = previousSnapshotColumns(byPart[part] ?? [], identityKeys);
      // As the writer stores it (v3 columns); BENCH_LEGACY_SNAPSHOT=1: as the v2 writer did (gzipped
      // lines with identity_keys), i.e. the first run after the deploy to v3; =v1header: v2 lines without identity_keys.
      const header = {
        v: 2 as const,
        sync_id: SYNC,
        cohort_id: 1,
        run_id: "prev",
        created_at: new Date().toISOString(),
        count: 0,
        partition: part,
        partitions: parts,
        ...(process.env.BENCH_LEGACY_SNAPSHOT === "v1header" ? {} : { identity_keys: identityKeys }),
      };
      const key = parts === 1 ? keys.snapshot(SYNC) : keys.snapshotPart(SYNC, part, parts);
      const legacy = process.env.BENCH_LEGACY_SNAPSHOT !== undefined && process.env.BENCH_LEGACY_SNAPSHOT !== "";
      await store.putBytes(key, await (legacy ? encodeSnapshotV2 : encodeSnapshot)(header, cols, sortedUniqueRows(cols)));
      byPart[part] = [];
    }
  }
  collectGarbage();
  const profiler = await startProfile();

  let peakRss = 0;
  let peakHeap = 0;
  const sample = () => {
    const m = process.memoryUsage();
    peakRss = Math.max(peakRss, m.rss);
    peakHeap = Math.max(peakHeap, m.heapUsed);
  };
  sample();
  const timer = setInterval(sample, 20);
  const cpuS = (from: NodeJS.CpuUsage) => {
    const used = process.cpuUsage(from);
    return (used.user + used.system) / 1e6;
  };
  const cpu = { stage: 0, spill: 0, diff: 0, emit: 0, diffed: 0 };
  const wallStart = performance.now();

  // stage: the next export's pages as the fetch step writes them (1 % left, 1 % joined, 1 % changed).
  let pages = 0;
  {
    const from = Math.floor(members * 0.01);
    let page: PageMember[] = [];
    let stageCpu = 0;
    for (let i = from; i < members + from; i++) {
      page.push({ id: benchMemberId(i), props: benchProps(i, i % 100 === 50) });
      if (page.length === PAGE_SIZE || i === members + from - 1) {
        const start = process.cpuUsage();
        await store.putStaged(SYNC, "next", pages++, { members: page });
        stageCpu += cpuS(start);
        page = [];
      }
    }
    cpu.stage = stageCpu;
  }
  const state = stagedRunState(members, parts, pages);
  await store.writeState(SYNC, state);

  let pagesEnqueued = 0;
  let units = 0;
  let diffedAt = performance.now();
  for (let tick = 0; tick < 1000; tick++) {
    const before = (await store.readState(SYNC)).export?.partitioned;
    const started = Date.now();
    const start = process.cpuUsage();
    const report = await runCohortExport(
      syncs,
      benchExportDeps(store, limits, started, (pages) => {
        pagesEnqueued += pages;
      }),
    );
    // What the unit was, from the checkpoint it moved (a single-partition run diffs and emits in one unit: counted as diff).
    const after = (await store.readState(SYNC)).export?.partitioned;
    const step =
      parts === 1
        ? "diff"
        : (after?.spilled_pages ?? 0) > (before?.spilled_pages ?? 0)
          ? "spill"
          : (after?.parts.length ?? 0) > (before?.parts.length ?? 0) || (before?.step === "diff" && after?.step === "emit")
            ? "diff"
            : "emit";
    cpu[step] += cpuS(start);
    units++;
    if (step !== "emit") diffedAt = performance.now();
    const outcome = report.syncs[SYNC]?.outcome;
    if (outcome !== "fetching") {
      if (outcome !== "enqueued") throw new Error(`export ended ${outcome}: ${report.syncs[SYNC]?.detail}`);
      break;
    }
  }
  clearInterval(timer);
  sample();
  await profiler?.stop();
  cpu.diffed = cpu.stage + cpu.spill + cpu.diff;
  const round = (x: number) => Math.round(x * 1000) / 1000;
  return {
    members,
    partitions: parts,
    cpuS: { stage: round(cpu.stage), spill: round(cpu.spill), diff: round(cpu.diff), emit: round(cpu.emit), diffed: round(cpu.diffed) },
    wallS: { diffed: round((diffedAt - wallStart) / 1000) },
    units,
    pagesEnqueued,
    peakRssMb: Math.round(peakRss / 1048576),
    peakHeapMb: Math.round(peakHeap / 1048576),
  };
}

/** BENCH_PROFILE=<file.cpuprofile>: a CPU profile of the measured work only (the setup left out). */
async function startProfile(): Promise<{ stop(): Promise<void> } | undefined> {
  const file = process.env.BENCH_PROFILE;
  if (!file) return undefined;
  const { Session } = await import("node:inspector/promises");
  const { writeFileSync } = await import("node:fs");
  const session = new Session();
  session.connect();
  await session.post("Profiler.enable");
  await session.post("Profiler.setSamplingInterval", { interval: 500 });
  await session.post("Profiler.start");
  return {
    async stop() {
      const { profile } = await session.post("Profiler.stop");
      writeFileSync(file, JSON.stringify(profile));
      session.disconnect();
    },
  };
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[middle] ?? Number.NaN) : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
};

function driveDiff(members: number, repeats: number): void {
  const self = fileURLToPath(import.meta.url);
  const results: DiffBenchResult[] = [];
  for (let n = 0; n < repeats; n++) {
    const out = execFileSync(process.execPath, ["--import", "tsx", self, "worker", String(members)], {
      encoding: "utf8",
      maxBuffer: 1 << 24,
      stdio: ["ignore", "pipe", "inherit"],
    });
    const line = out.split("\n").find((l) => l.startsWith("RESULT "));
    if (!line) throw new Error("the worker printed no RESULT line");
    const result: DiffBenchResult = JSON.parse(line.slice(7));
    results.push(result);
    const c = result.cpuS;
    console.log(
      `  run ${n + 1}: diffed ${c.diffed.toFixed(2)} s CPU (stage ${c.stage.toFixed(2)}, spill ${c.spill.toFixed(2)}, diff ${c.diff.toFixed(2)}), ${result.wallS.diffed.toFixed(2)} s wall; emit ${c.emit.toFixed(2)} s CPU; peak RSS ${result.peakRssMb} MB, heap ${result.peakHeapMb} MB; ${result.units} units, ${result.pagesEnqueued} pages`,
    );
  }
  const first = results[0];
  console.log(
    `${members.toLocaleString("en-US")} members in ${first?.partitions ?? "?"} partition(s), median of ${repeats}: diffed ${median(results.map((r) => r.cpuS.diffed)).toFixed(2)} s CPU ` +
      `(stage ${median(results.map((r) => r.cpuS.stage)).toFixed(2)}, spill ${median(results.map((r) => r.cpuS.spill)).toFixed(2)}, diff ${median(results.map((r) => r.cpuS.diff)).toFixed(2)}); ` +
      `emit ${median(results.map((r) => r.cpuS.emit)).toFixed(2)} s CPU; peak RSS ${median(results.map((r) => r.peakRssMb))} MB`,
  );
}

const [first, second] = process.argv.slice(2);
if (first === "worker" || process.env.BENCH_COHORT_WORKER) {
  console.log(`RESULT ${JSON.stringify(await worker(Number(first === "worker" ? (second ?? 1_000_000) : process.env.BENCH_COHORT_WORKER)))}`);
} else {
  const members = Number(first ?? 1_000_000);
  const mode = second ?? "both";
  if (mode !== "partitioned") driveDiff(members, Number(process.env.BENCH_REPEATS ?? 3));
  if (mode !== "diff") {
    console.log("");
    execFileSync(process.execPath, ["--import", "tsx", fileURLToPath(new URL("./cohort-partitioned.bench.ts", import.meta.url)), String(members)], { stdio: "inherit" });
  }
}
