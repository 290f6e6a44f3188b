/**
 * Large-cohort bench of the partitioned export path (not a unit test):
 *   node --import tsx test/bench/cohort-partitioned.bench.ts [members=1000000]
 * (also run by `npm run bench:cohorts -- <members>`).
 *
 * Setup (its own process): a delivered snapshot of `members` in the partition
 * layout the run will use, and the staged /engage pages of the next export
 * (1 % joined, 1 % changed, 1 % left), in a local directory store
 * (cohort-fs-store.ts). Then the real export tick (runCohortExport) runs
 * invocation by invocation, each in a fresh process as Lambda would run it
 * (default limits: 500 k members per partition, 4 minutes of work per
 * invocation), until the run's pages are enqueued. Prints per invocation: wall
 * time, CPU time, peak RSS, outcome; then the maxima. Query API fetching is not
 * part of it (the pages are staged already). `BENCH_UNITS=1` runs one unit per
 * invocation instead, which shows the CPU of each spill, diff and emit unit.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { runCohortExport } from "../../lib/cohorts/export.js";
import { PAGE_SIZE, type PageMember } from "../../lib/cohorts/messages.js";
import { partitionCount } from "../../lib/cohorts/partition-layout.js";
import { sortedUniqueRows } from "../../lib/cohorts/member-key.js";
import { encodeSnapshot } from "../../lib/cohorts/snapshot-codec.js";
import { keys } from "../../lib/cohorts/store.js";
import { BENCH_SYNC, benchExportDeps, benchLimits, benchMemberId, benchProps, benchSync, membersByPartition, previousSnapshotColumns, stagedRunState } from "./cohort-bench-fixture.js";
import { createFsCohortStore } from "./cohort-fs-store.js";

const SYNC = BENCH_SYNC;
// BENCH_UNITS=1: one unit (spill chunk, partition diff, partition emit) per invocation, to see each unit's cost.
const limits = benchLimits(process.env.BENCH_UNITS === "1" ? { invocationWorkMs: 0 } : {});
const syncs = [benchSync()];

async function setup(dir: string, members: number): Promise<void> {
  const store = createFsCohortStore(dir);
  const parts = partitionCount(members, limits);
  // Previous snapshot, partition by partition (never all members at once).
  const byPart = membersByPartition(members, parts);
  for (let part = 0; part < parts; part++) {
    const cols = previousSnapshotColumns(byPart[part] ?? [], ["$email"]);
    const header = { v: 2 as const, sync_id: SYNC, cohort_id: 1, run_id: "prev", created_at: new Date().toISOString(), count: 0, partition: part, partitions: parts };
    const key = parts === 1 ? keys.snapshot(SYNC) : keys.snapshotPart(SYNC, part, parts);
    await store.putBytes(key, await encodeSnapshot(header, cols, sortedUniqueRows(cols)));
    byPart[part] = [];
  }
  // The next export: 1 % left (the first ids), 1 % joined (beyond the end), 1 % changed.
  let page: PageMember[] = [];
  let n = 0;
  const from = Math.floor(members * 0.01);
  for (let i = from; i < members + from; i++) {
    page.push({ id: benchMemberId(i), props: benchProps(i, i % 100 === 50) });
    if (page.length === PAGE_SIZE) {
      await store.putStaged(SYNC, "next", n++, { members: page });
      page = [];
    }
  }
  if (page.length > 0) await store.putStaged(SYNC, "next", n++, { members: page });
  await store.writeState(SYNC, stagedRunState(members, parts, n));
}

async function invoke(dir: string): Promise<void> {
  const store = createFsCohortStore(dir);
  const started = Date.now();
  const cpu = process.cpuUsage();
  let enqueued = 0;
  const deps = benchExportDeps(store, limits, started, (pages) => {
    enqueued += pages;
  });
  const report = await runCohortExport(syncs, deps);
  const used = process.cpuUsage(cpu);
  const entry = report.syncs[SYNC];
  console.log(
    JSON.stringify({
      wallMs: Date.now() - started,
      cpuMs: Math.round((used.user + used.system) / 1000),
      maxRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
      outcome: entry?.outcome,
      detail: entry?.detail,
      enqueued,
    }),
  );
}

interface InvocationResult {
  wallMs: number;
  cpuMs: number;
  maxRssMb: number;
  outcome?: string;
  detail?: string;
  enqueued: number;
}

async function drive(members: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "cohort-bench-"));
  const self = fileURLToPath(import.meta.url);
  const node = (mode: string) =>
    execFileSync(process.execPath, ["--import", "tsx", self, mode, dir, String(members)], { encoding: "utf8", maxBuffer: 1 << 24, stdio: ["ignore", "pipe", "inherit"] });
  try {
    const setupStart = performance.now();
    node("setup");
    console.log(`partitioned path: ${members.toLocaleString()} members in ${partitionCount(members, limits)} partitions (setup ${((performance.now() - setupStart) / 1000).toFixed(1)} s)`);
    const results: InvocationResult[] = [];
    for (let n = 0; n < 500; n++) {
      const line = node("invoke").trim().split("\n").at(-1) ?? "{}";
      const result: InvocationResult = JSON.parse(line);
      results.push(result);
      console.log(
        `  invocation ${String(n + 1).padStart(3)}: ${(result.wallMs / 1000).toFixed(1).padStart(6)} s wall, ${(result.cpuMs / 1000).toFixed(1).padStart(6)} s CPU, peak RSS ${String(result.maxRssMb).padStart(5)} MB, ${result.outcome}${result.detail ? ` (${result.detail})` : ""}`,
      );
      if (result.outcome !== "fetching") break;
    }
    const max = (f: (r: InvocationResult) => number) => Math.max(...results.map(f));
    const sum = (f: (r: InvocationResult) => number) => results.reduce((s, r) => s + f(r), 0);
    console.log(
      `  ${results.length} invocations; max ${(max((r) => r.wallMs) / 1000).toFixed(1)} s wall, max peak RSS ${max((r) => r.maxRssMb)} MB; total CPU ${(sum((r) => r.cpuMs) / 1000).toFixed(1)} s; ${sum((r) => r.enqueued)} pages enqueued; last outcome ${results.at(-1)?.outcome}`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const [mode, dirArg, membersArg] = process.argv.slice(2);
if (mode === "setup" && dirArg) await setup(dirArg, Number(membersArg));
else if (mode === "invoke" && dirArg) await invoke(dirArg);
else await drive(Number(mode ?? 1_000_000));
